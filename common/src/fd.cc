#include "gangway/common/fd.h"

#include <unistd.h>

namespace gangway {

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

}  // namespace gangway
