#include "rendezvous_place.h"

#include <algorithm>

#include "gangway/common/host_port.h"
#include "gangway/common/log.h"
#include "gangway/common/status.h"
#include "gangway/scheduler/client/credentials.h"

#include "network.h"

namespace gangway::launcher {

absl::StatusOr<RendezvousPlace> placeRendezvous(const RunOptions& options) {
  HostModeOptions host;
  host.join_timeout = absl::Seconds(options.join_timeout_s);
  host.last_call = absl::Seconds(options.last_call_timeout_s);
  host.heartbeat_timeout = absl::Seconds(options.heartbeat_timeout_s);
  host.heartbeat_interval =
      std::min(absl::Seconds(1), absl::Seconds(options.heartbeat_timeout_s) / 3);
  host.tls_cert_file = options.tls_cert_file;
  host.tls_key_file = options.tls_key_file;
  RendezvousPlace place;
  if (options.rdzv_mode == RdzvMode::kStandalone) {
    // Even another user of this machine cannot join: the job's secret is drawn here.
    place.token = options.token.empty() ? scheduler::randomSecret() : options.token;
    host.join_token = place.token;
    host.listen = {.host = "127.0.0.1", .port = 0};
    GW_ASSIGN_OR_RETURN(place.hosted, hostControlPlane(host));
    place.endpoint = place.hosted->address();
    place.address = "127.0.0.1";
    return place;
  }
  const HostPort& endpoint = options.rdzv_address;
  place.endpoint = formatHostPort(endpoint);
  if (!options.local_addr.empty()) {
    place.address = options.local_addr;
  } else {
    GW_ASSIGN_OR_RETURN(place.address, routeAddressTo(endpoint));
  }
  if (options.is_host.value_or(canBind(endpoint))) {
    host.listen = endpoint;
    // Creating the job needs a credential: the first Join cannot be a stranger's.
    host.join_token = !options.join_token.empty() ? options.join_token : options.token;
    if (host.join_token.empty() && !isLoopback(endpoint.host) && !options.insecure) {
      return absl::InvalidArgumentError(absl::StrCat(
          "hosting the rendezvous at ", place.endpoint,
          " (not a loopback address) needs a secret: --rdzv-conf token_file=FILE or "
          "join_token_file=FILE (the same file on every node), or --rdzv-conf insecure=true to "
          "run it open"));
    }
    if (host.join_token.empty() && !isLoopback(endpoint.host)) {
      logger("launcher")
          .warn(
              "the rendezvous at {} is open to anyone who reaches it "
              "(--rdzv-conf insecure=true)",
              place.endpoint);
    }
    host.quiet_bind_errors = !options.is_host.has_value();  // another agent may win the port
    auto hosted = hostControlPlane(host);
    if (hosted.ok()) {
      place.hosted = *std::move(hosted);
      logger("launcher")
          .info("hosting the rendezvous of job {} at {}", options.run_id, place.endpoint);
    } else if (options.is_host.value_or(false)) {
      return hosted.status();
    }
  }
  place.socket_ifname = interfaceOf(place.address);
  return place;
}

}  // namespace gangway::launcher
