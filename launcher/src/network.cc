#include "network.h"

#include <cstring>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <absl/strings/str_cat.h>

#include "gangway/common/fd.h"
#include "gangway/common/status.h"

namespace gangway::launcher {

absl::StatusOr<std::string> routeAddressTo(const HostPort& endpoint) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  const std::string port = absl::StrCat(endpoint.port == 0 ? 9 : endpoint.port);
  if (int rc = ::getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve '", endpoint.host, "': ", gai_strerror(rc)));
  }
  // A UDP "connect" sends nothing; it only asks the kernel which local address routes there.
  Fd sock(::socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const bool connected = sock.valid() && ::connect(sock.get(), res->ai_addr, res->ai_addrlen) == 0;
  ::freeaddrinfo(res);
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  if (!connected || ::getsockname(sock.get(), reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    return absl::UnavailableError(absl::StrCat("no route to '", endpoint.host, "'"));
  }
  char text[INET6_ADDRSTRLEN] = {};
  const void* addr =
      local.ss_family == AF_INET6
          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr)
          : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr);
  ::inet_ntop(local.ss_family, addr, text, sizeof(text));
  return std::string(text);
}

std::string interfaceOf(const std::string& address) {
  in6_addr want6{};
  in_addr want4{};
  const bool v4 = ::inet_pton(AF_INET, address.c_str(), &want4) == 1;
  if (!v4 && ::inet_pton(AF_INET6, address.c_str(), &want6) != 1) return "";
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return "";
  std::string name;
  for (ifaddrs* i = list; i != nullptr && name.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || (i->ifa_flags & IFF_LOOPBACK) != 0) continue;
    const bool same =
        v4 ? i->ifa_addr->sa_family == AF_INET &&
                 reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr == want4.s_addr
           : i->ifa_addr->sa_family == AF_INET6 &&
                 std::memcmp(&reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, &want6,
                             sizeof(want6)) == 0;
    if (same) name = i->ifa_name;
  }
  ::freeifaddrs(list);
  return name;
}

bool canBind(const HostPort& endpoint) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(endpoint.host.c_str(), std::to_string(endpoint.port).c_str(), &hints, &res) !=
      0) {
    return false;
  }
  bool bound = false;
  for (addrinfo* r = res; r != nullptr && !bound; r = r->ai_next) {
    Fd sock(::socket(r->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const int one = 1;
    bound = sock.valid() &&
            ::setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
            ::bind(sock.get(), r->ai_addr, r->ai_addrlen) == 0;
  }
  ::freeaddrinfo(res);
  return bound;
}

absl::StatusOr<int> pickFreePort(const std::string& addr) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const bool resolved = ::getaddrinfo(addr.c_str(), "0", &hints, &res) == 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    // First the requested address; if it is not local (or did not resolve), any address.
    Fd sock(::socket(resolved && attempt == 0 ? res->ai_family : AF_INET,
                     SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!sock.valid()) continue;
    sockaddr_storage any{};
    auto* in = reinterpret_cast<sockaddr_in*>(&any);
    in->sin_family = AF_INET;
    const auto* target = reinterpret_cast<const sockaddr*>(&any);
    socklen_t len = sizeof(sockaddr_in);
    if (resolved && attempt == 0) {
      target = res->ai_addr;
      len = res->ai_addrlen;
    }
    if (::bind(sock.get(), target, len) != 0) continue;
    sockaddr_storage bound{};
    socklen_t bound_len = sizeof(bound);
    if (::getsockname(sock.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) continue;
    if (res != nullptr) ::freeaddrinfo(res);
    const auto& b = reinterpret_cast<const sockaddr_in&>(bound);  // port is at the same offset
    return static_cast<int>(ntohs(b.sin_port));
  }
  if (res != nullptr) ::freeaddrinfo(res);
  return GW_ERRNO(absl::StrCat("bind a free TCP port on ", addr));
}

}  // namespace gangway::launcher
