#include "log_dir.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <absl/strings/str_cat.h>

namespace gangway::launcher {

namespace fs = std::filesystem;

absl::StatusOr<LogDirectory> LogDirectory::create(const RunOptions& options) {
  bool kept = !options.log_dir.empty();
  for (int i = 0; i < options.nproc_per_node; ++i) {
    if (options.redirects[i] != Streams::kNone || options.tee[i] != Streams::kNone) kept = true;
  }
  fs::path parent;
  if (!options.log_dir.empty()) {
    parent = options.log_dir;
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid --log-dir '", options.log_dir, "': ", ec.message()));
    }
  } else {
    const char* tmp = std::getenv("TMPDIR");
    parent = tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp";
  }
  std::string templ =
      (parent / absl::StrCat(options.log_dir.empty() ? "gangway_" : "", options.run_id, "_XXXXXX"))
          .string();
  if (::mkdtemp(templ.data()) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot create a log directory under '",
                                                   parent.string(), "': ", std::strerror(errno)));
  }
  return LogDirectory(templ, kept);
}

void LogDirectory::removeUnlessKept() {
  if (kept_ || root_.empty()) return;
  std::error_code ec;
  fs::remove_all(root_, ec);
  root_.clear();
}

}  // namespace gangway::launcher
