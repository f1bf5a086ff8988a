// Where an agent's rendezvous lives, decided once at start: in this agent (--standalone, or host
// mode: the endpoint is one of this machine's addresses and nobody serves its port yet, or
// --rdzv-conf is_host=true), or at a control plane elsewhere (a `gangway scheduler`, or the agent
// that hosts it). Also: the address this node advertises and the interface that carries it.
#pragma once

#include <memory>
#include <string>

#include <absl/status/statusor.h>

#include "gangway/launcher/run_options.h"

#include "host_mode.h"

namespace gangway::launcher {

struct RendezvousPlace {
  std::string endpoint;                        // HOST:PORT every agent of the job uses
  std::string address;                         // this node's address, as the other nodes reach it
  std::string socket_ifname;                   // the interface holding `address` ("" for loopback)
  std::unique_ptr<HostedControlPlane> hosted;  // the control plane this agent serves, if any
  std::string token;  // a secret drawn for a job that has none (--standalone)
};

// For RdzvMode::kStandalone and kEndpoint. Errors: an address that does not route, a control
// plane that must be hosted here (is_host=true) and cannot be.
absl::StatusOr<RendezvousPlace> placeRendezvous(const RunOptions& options);

}  // namespace gangway::launcher
