#include "gangway/common/hostname.h"

#include <climits>

#include <unistd.h>

namespace gangway {

std::string hostName() {
  char host[HOST_NAME_MAX + 1] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

}  // namespace gangway
