// Host mode: the control plane (rendezvous and job stores) served inside this agent, for
// --standalone and for the agent whose address the rendezvous endpoint names. The only part of
// the launcher that links the server (host_mode.cc, target gangway_launcher_host); everything
// else speaks to the control plane as a client.
#pragma once

#include <memory>
#include <string>

#include <absl/status/statusor.h>
#include <absl/time/time.h>

#include "gangway/common/host_port.h"

namespace gangway::launcher {

struct HostModeOptions {
  HostPort listen;  // port 0: any free port
  absl::Duration join_timeout = absl::Seconds(600);
  absl::Duration last_call = absl::Seconds(1);
  absl::Duration heartbeat_timeout = absl::Seconds(3);
  absl::Duration heartbeat_interval = absl::Seconds(1);
  std::string tls_cert_file;  // TLS when both are set
  std::string tls_key_file;
  std::string join_token;  // creating a job needs it (RendezvousSettings.join_token)
  // Another agent may take the port first: gRPC's error lines about the failed bind are then
  // expected, and logged at debug level.
  bool quiet_bind_errors = false;
};

class HostedControlPlane {
 public:
  virtual ~HostedControlPlane() = default;  // stops serving: the rendezvous ends with the agent
  // HOST:PORT with the port actually bound.
  virtual const std::string& address() const = 0;
};

// Starts serving. InvalidArgument names a bad address or TLS file; Unavailable when the address
// cannot be bound.
absl::StatusOr<std::unique_ptr<HostedControlPlane>> hostControlPlane(
    const HostModeOptions& options);

}  // namespace gangway::launcher
