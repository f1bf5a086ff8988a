#include "work_dir.h"

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>

#include "gangway/common/status.h"
#include "gangway/common/text.h"

namespace gangway::launcher {
namespace {

// A directory this user alone may use: `fd` is open on it (without following a link).
absl::Status checkPrivate(int fd, const std::string& path, const char* what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return GW_ERRNO(absl::StrCat("stat ", path));
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", path, "' is not a directory"));
  }
  if (st.st_uid != ::geteuid()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", path, "' belongs to uid ", st.st_uid,
                                                   ", not to this user (uid ", ::geteuid(),
                                                   "); give the agent a directory of its own"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s '%s' has mode %04o: others could read or replace the job files in it; chmod 700 %s",
        what, path, st.st_mode & 07777, path));
  }
  return absl::OkStatus();
}

// Opens `name` under `dir` as a directory, making it (0700) if missing; refuses a link.
absl::StatusOr<Fd> openPrivateDir(int dir, const std::string& name, const std::string& path,
                                  const char* what) {
  if (::mkdirat(dir, name.c_str(), 0700) != 0 && errno != EEXIST) {
    return GW_ERRNO(absl::StrCat("mkdir ", path));
  }
  Fd fd(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ELOOP || errno == ENOTDIR) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " '", path, "' is a link or not a directory; remove it"));
    }
    return GW_ERRNO(absl::StrCat("open ", path));
  }
  GW_RETURN_IF_ERROR(checkPrivate(fd.get(), path, what));
  return fd;
}

}  // namespace

std::string defaultWorkRoot(const std::string& node_id) {
  if (::geteuid() == 0) return absl::StrCat("/run/gangway/agent-", node_id);
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  if (runtime != nullptr && *runtime == '/') {
    return absl::StrCat(runtime, "/gangway/agent-", node_id);
  }
  return "";
}

absl::StatusOr<WorkRoot> WorkRoot::open(const std::string& path_in) {
  std::filesystem::path path = std::filesystem::path(path_in).lexically_normal();
  if (path.empty() || path.filename().empty()) path = path.parent_path();
  if (!path.has_filename() || path.filename() == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("--work-dir '", path_in, "': expected a directory path"));
  }
  std::error_code ec;
  const std::filesystem::path parent = path.has_parent_path() ? path.parent_path() : ".";
  std::filesystem::create_directories(parent, ec);
  if (ec)
    return absl::InvalidArgumentError(absl::StrCat("--work-dir '", path_in, "': ", ec.message()));
  Fd parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd.valid()) return GW_ERRNO(absl::StrCat("open ", parent.string()));
  GW_ASSIGN_OR_RETURN(Fd fd,
                      openPrivateDir(parent_fd.get(), path.filename(), path_in, "--work-dir"));
  return WorkRoot(path_in, std::move(fd));
}

absl::StatusOr<WorkRoot> WorkRoot::makeTemporary(const std::string& node_id) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = absl::StrCat(tmp != nullptr && *tmp == '/' ? tmp : "/tmp", "/gangway-agent-",
                                   node_id, "-XXXXXX");
  if (::mkdtemp(templ.data()) == nullptr) return GW_ERRNO(absl::StrCat("mkdtemp ", templ));
  return open(templ);
}

absl::StatusOr<std::string> WorkRoot::writeJobFile(const std::string& job, const std::string& name,
                                                   const std::string& content) {
  if (!isName(job)) {
    return absl::InvalidArgumentError(
        absl::StrCat("job id '", escapeLine(job, 64), "': expected ", nameRule()));
  }
  const std::string job_path = absl::StrCat(path_, "/", job);
  GW_ASSIGN_OR_RETURN(Fd dir, openPrivateDir(fd_.get(), job, job_path, "job directory"));
  const std::string file_path = absl::StrCat(job_path, "/", name);
  if (::unlinkat(dir.get(), name.c_str(), 0) != 0 && errno != ENOENT) {
    return GW_ERRNO(absl::StrCat("remove ", file_path));
  }
  Fd fd(::openat(dir.get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                 0600));
  if (!fd.valid()) return GW_ERRNO(absl::StrCat("create ", file_path));
  for (std::size_t done = 0; done < content.size();) {
    const ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return GW_ERRNO(absl::StrCat("write ", file_path));
    done += static_cast<std::size_t>(n);
  }
  return file_path;
}

}  // namespace gangway::launcher
