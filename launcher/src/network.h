// The agent's view of the network: which of its addresses the other nodes reach it at, which
// interface carries that address, whether a control-plane address is its own to serve, and free
// ports for MASTER_PORT.
#pragma once

#include <string>

#include <absl/status/statusor.h>

#include "gangway/common/host_port.h"

namespace gangway::launcher {

// The address of this machine that routes to `endpoint`, for other nodes to reach this one
// ("127.0.0.1" when the endpoint is local). Unavailable names a host that does not resolve or
// cannot be reached. Sends nothing.
absl::StatusOr<std::string> routeAddressTo(const HostPort& endpoint);

// The name of the non-loopback interface that holds `address`, or "" (loopback, or not local).
std::string interfaceOf(const std::string& address);

// Whether `endpoint` can be bound now: its host is one of this machine's addresses and nobody
// serves the port. Checked with a plain socket, so that the usual case (a control plane already
// there) does not make gRPC log a failed bind.
bool canBind(const HostPort& endpoint);

// Binds a TCP socket to `addr`:0 (any address if `addr` is not local) and returns the port the
// kernel chose, for MASTER_PORT.
absl::StatusOr<int> pickFreePort(const std::string& addr);

}  // namespace gangway::launcher
