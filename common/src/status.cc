#include "gangway/common/status.h"

#include <cstring>

namespace gangway {

absl::Status errnoStatus(int error_number, absl::string_view what, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  return absl::Status(absl::ErrnoToStatusCode(error_number),
                      absl::StrCat(what, ": ", std::strerror(error_number), " (",
                                   base != nullptr ? base + 1 : file, ":", line, ")"));
}

}  // namespace gangway
