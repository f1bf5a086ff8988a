// The pool agent's per-job files, out of other local users' reach: a work root that this user
// owns and nobody else may enter, a directory per job made under it by name (a job id is a name,
// common/text.h, never a path), and files created 0600 from the start, never through a link.
#pragma once

#include <string>

#include <absl/status/statusor.h>

#include "gangway/common/fd.h"

namespace gangway::launcher {

// Where the work root goes by default: /run/gangway/agent-NODE for root,
// $XDG_RUNTIME_DIR/gangway/agent-NODE for another user with one; empty otherwise (the agent then
// makes a private temporary root, WorkRoot::makeTemporary).
std::string defaultWorkRoot(const std::string& node_id);

class WorkRoot {
 public:
  // Creates `path` (0700; its parents 0755) if missing. An existing one must be a directory, not
  // a link, owned by this user, with no access for group or others: anything else is refused
  // (InvalidArgument, naming the path and how to fix it), never changed.
  static absl::StatusOr<WorkRoot> open(const std::string& path);
  // A new root with an unpredictable name under $TMPDIR (or /tmp).
  static absl::StatusOr<WorkRoot> makeTemporary(const std::string& node_id);

  const std::string& path() const { return path_; }

  // Writes `content` to JOB/NAME under the root, mode 0600, replacing a file of that name, and
  // returns the file's path. JOB's directory is made 0700 if missing, and checked as the root is
  // if present. InvalidArgument for a `job` that is not a name.
  absl::StatusOr<std::string> writeJobFile(const std::string& job, const std::string& name,
                                           const std::string& content);

 private:
  WorkRoot(std::string path, Fd fd) : path_(std::move(path)), fd_(std::move(fd)) {}

  std::string path_;
  Fd fd_;  // the root, opened once: later steps are relative to it
};

}  // namespace gangway::launcher
