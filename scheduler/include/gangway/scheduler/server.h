// The control plane's gRPC server: the Rendezvous and Store services over one Rendezvous state
// machine, with a timer thread for its deadlines. Runs in the `gangway scheduler` daemon (remote
// mode) or inside an agent (host mode, --standalone).
#pragma once

#include <memory>
#include <string>

#include <absl/status/statusor.h>

#include "gangway/scheduler/cluster.h"
#include "gangway/scheduler/rendezvous.h"
#include "gangway/scheduler/state_store.h"

namespace gangway::scheduler {

struct ServerOptions {
  std::string listen = "127.0.0.1:0";  // HOST:PORT ([v6]:PORT); port 0 picks a free port
  RendezvousSettings rendezvous;
  // TLS when both are set (PEM files); plaintext otherwise.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The cluster scheduler (`gangway scheduler`): when set, the server also serves the Cluster
  // service, keeping its state in this store (not owned: it must outlive the server).
  StateStore* cluster_store = nullptr;
  ClusterOptions cluster;
};

class ControlPlaneServer {
 public:
  // Binds and starts serving. InvalidArgument names a bad listen address or TLS file;
  // Unavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<ControlPlaneServer>> start(const ServerOptions& options);
  virtual ~ControlPlaneServer() = default;  // stops serving

  // "HOST:PORT" with the port actually bound.
  virtual const std::string& address() const = 0;
  virtual int port() const = 0;
  virtual Rendezvous& rendezvous() = 0;
  // The cluster scheduler, when ServerOptions.cluster_store was set; nullptr otherwise.
  virtual ClusterManager* cluster() = 0;
  // Blocks until shutdown() is called from another thread (or a signal handler's thread).
  virtual void wait() = 0;
  virtual void shutdown() = 0;
};

}  // namespace gangway::scheduler
