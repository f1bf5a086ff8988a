#include "host_mode.h"

#include <optional>

#include "gangway/scheduler/client/channel.h"
#include "gangway/scheduler/server.h"

namespace gangway::launcher {
namespace {

class Hosted final : public HostedControlPlane {
 public:
  explicit Hosted(std::unique_ptr<scheduler::ControlPlaneServer> server)
      : server_(std::move(server)) {}
  const std::string& address() const override { return server_->address(); }

 private:
  std::unique_ptr<scheduler::ControlPlaneServer> server_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<HostedControlPlane>> hostControlPlane(
    const HostModeOptions& options) {
  scheduler::ServerOptions server;
  server.listen = formatHostPort(options.listen);
  server.rendezvous.join_timeout = options.join_timeout;
  server.rendezvous.last_call = options.last_call;
  server.rendezvous.heartbeat_timeout = options.heartbeat_timeout;
  server.rendezvous.heartbeat_interval = options.heartbeat_interval;
  server.tls_cert_file = options.tls_cert_file;
  server.tls_key_file = options.tls_key_file;
  server.rendezvous.join_token = options.join_token;
  scheduler::installGrpcLogging();
  std::optional<scheduler::QuietGrpcErrors> quiet;
  if (options.quiet_bind_errors) quiet.emplace();
  auto started = scheduler::ControlPlaneServer::start(server);
  if (!started.ok()) return started.status();
  return std::make_unique<Hosted>(*std::move(started));
}

}  // namespace gangway::launcher
