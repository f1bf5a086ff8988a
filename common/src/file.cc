#include "gangway/common/file.h"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <absl/strings/strip.h>

#include "gangway/common/fd.h"

namespace gangway {
namespace {

constexpr std::size_t kMaxSecretBytes = 64 << 10;

absl::Status fileError(absl::StatusCode code, absl::string_view what, const std::string& path,
                       absl::string_view problem) {
  return absl::Status(code, absl::StrCat(what, " '", path, "': ", problem));
}

}  // namespace

absl::StatusOr<std::string> readFile(const std::string& path, absl::string_view what,
                                     std::size_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) {
    const int err = errno;
    return fileError(
        err == ENOENT ? absl::StatusCode::kNotFound : absl::StatusCode::kInvalidArgument, what,
        path, absl::StrCat("cannot be read (", std::strerror(err), ")"));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return fileError(absl::StatusCode::kInvalidArgument, what, path, "is a directory");
  }
  std::string out;
  char buf[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return fileError(absl::StatusCode::kInvalidArgument, what, path,
                       absl::StrCat("cannot be read (", std::strerror(errno), ")"));
    }
    if (n == 0) return out;
    if (out.size() + static_cast<std::size_t>(n) > max_bytes) {
      return fileError(absl::StatusCode::kInvalidArgument, what, path,
                       absl::StrCat("larger than ", max_bytes, " bytes"));
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
}

absl::StatusOr<std::string> readSecretFile(const std::string& path, absl::string_view what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    const bool world = (st.st_mode & (S_IROTH | S_IWOTH)) != 0;
    const bool group_of_own_file = st.st_uid == ::geteuid() && (st.st_mode & S_IRWXG) != 0;
    if (world || group_of_own_file) {
      return fileError(absl::StatusCode::kInvalidArgument, what, path,
                       absl::StrFormat("permissions %04o are too open for a secret: it must not "
                                       "be readable by %s (chmod 600 %s)",
                                       st.st_mode & 07777, world ? "others" : "the group", path));
    }
  }
  auto content = readFile(path, what, kMaxSecretBytes);
  if (!content.ok()) return content.status();
  std::string secret(absl::StripAsciiWhitespace(*content));
  if (secret.empty()) {
    return fileError(absl::StatusCode::kInvalidArgument, what, path, "the file is empty");
  }
  return secret;
}

}  // namespace gangway
