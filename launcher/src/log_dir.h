// Where a run keeps its workers' logs and error files: <log-dir>/<run id>_XXXXXX when --log-dir
// is given, else a temporary directory that is removed at the end unless it holds redirected or
// teed output. One attempt_N directory per local attempt, one directory per local rank in it.
#pragma once

#include <filesystem>

#include <absl/status/statusor.h>

#include "gangway/launcher/run_options.h"

namespace gangway::launcher {

class LogDirectory {
 public:
  // InvalidArgument names a --log-dir (or $TMPDIR) that cannot hold it.
  static absl::StatusOr<LogDirectory> create(const RunOptions& options);

  const std::filesystem::path& root() const { return root_; }
  // Whether it stays after the run (--log-dir, --redirects or --tee).
  bool kept() const { return kept_; }
  // attempt_0, attempt_1, ...: the directory of the next local attempt (not created yet).
  std::filesystem::path nextAttempt() { return root_ / ("attempt_" + std::to_string(attempts_++)); }
  // Removes the directory unless it is kept. Idempotent.
  void removeUnlessKept();

 private:
  LogDirectory(std::filesystem::path root, bool kept) : root_(std::move(root)), kept_(kept) {}

  std::filesystem::path root_;
  bool kept_ = false;
  int attempts_ = 0;
};

}  // namespace gangway::launcher
