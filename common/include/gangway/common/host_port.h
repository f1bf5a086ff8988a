// HOST:PORT addresses, parsed and formatted in one place, and the control plane's default port.
#pragma once

#include <string>

#include <absl/status/statusor.h>
#include <absl/strings/string_view.h>

namespace gangway {

// Where the control plane listens unless told otherwise (`gangway scheduler`, the rendezvous
// endpoint of `gangway run`, the cluster commands' `--scheduler`).
inline constexpr int kDefaultControlPlanePort = 29400;

struct HostPort {
  std::string host;  // a name or an address, IPv6 without brackets; may be empty (any address)
  int port = 0;
};

// Parses "HOST:PORT", "[IPV6]:PORT", a bare IPv6 address or "HOST". A missing port gives
// `default_port`; a negative `default_port` makes the port required. The host may be empty
// (":9400": any address); callers that need one check. Errors are InvalidArgument and read
// "WHAT 'TEXT': ..." with `what` naming the input ("endpoint", "--listen").
absl::StatusOr<HostPort> parseHostPort(absl::string_view text, absl::string_view what,
                                       int default_port);

// Whether `host` is an IPv4 or IPv6 address literal (no brackets) or a host name (RFC 1123: at
// most 253 characters, dot-separated labels of 1 to 63 letters, digits and '-', no label
// beginning or ending with '-').
bool isHostOrAddress(absl::string_view host);
// Whether `host` names this machine's loopback interface only: "localhost", 127.0.0.0/8, ::1.
// An empty host or a wildcard (0.0.0.0, ::) listens on every interface: not loopback.
bool isLoopback(absl::string_view host);

// "HOST:PORT", with brackets around an IPv6 host.
std::string formatHostPort(absl::string_view host, int port);
inline std::string formatHostPort(const HostPort& hp) { return formatHostPort(hp.host, hp.port); }

}  // namespace gangway
