#include "gangway/common/host_port.h"

#include <arpa/inet.h>

#include <absl/strings/ascii.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>

namespace gangway {

absl::StatusOr<HostPort> parseHostPort(absl::string_view text, absl::string_view what,
                                       int default_port) {
  auto bad = [&](absl::string_view expected) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", text, "': ", expected));
  };
  HostPort out;
  absl::string_view port_text;
  bool has_port = false;
  if (!text.empty() && text[0] == '[') {
    const auto close = text.find(']');
    if (close == absl::string_view::npos) return bad("unclosed '['");
    out.host = std::string(text.substr(1, close - 1));
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') return bad("expected [ADDRESS]:PORT");
      port_text = text.substr(close + 2);
      has_port = true;
    }
  } else if (const auto colon = text.rfind(':'); colon != absl::string_view::npos) {
    if (text.find(':') != colon) {
      out.host = std::string(text);  // a bare IPv6 address
    } else {
      out.host = std::string(text.substr(0, colon));
      port_text = text.substr(colon + 1);
      has_port = true;
    }
  } else {
    out.host = std::string(text);
  }
  has_port = has_port && !port_text.empty();  // "HOST:" is HOST with the default port
  if (!has_port && default_port < 0) return bad("expected HOST:PORT");
  out.port = default_port;
  if (has_port && (!absl::SimpleAtoi(port_text, &out.port) || out.port < 0 || out.port > 65535)) {
    return bad("expected HOST:PORT with a port 0 to 65535");
  }
  return out;
}

bool isHostOrAddress(absl::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  const std::string s(host);
  unsigned char buf[16];
  if (::inet_pton(AF_INET, s.c_str(), buf) == 1 || ::inet_pton(AF_INET6, s.c_str(), buf) == 1) {
    return true;
  }
  std::size_t label = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '.') {
      if (label == 0 || label > 63 || s[i - 1] == '-' || s[i - label] == '-') return false;
      label = 0;
    } else if (absl::ascii_isalnum(static_cast<unsigned char>(s[i])) || s[i] == '-') {
      ++label;
    } else {
      return false;
    }
  }
  return true;
}

std::string formatHostPort(absl::string_view host, int port) {
  return host.find(':') != absl::string_view::npos ? absl::StrCat("[", host, "]:", port)
                                                   : absl::StrCat(host, ":", port);
}

bool isLoopback(absl::string_view host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr v4{};
  const std::string h(host);
  return ::inet_pton(AF_INET, h.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

}  // namespace gangway
