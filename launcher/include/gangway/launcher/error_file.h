// Worker error files (TORCHELASTIC_ERROR_FILE, written by PyTorch's @record) and the agent's
// root-cause summary of a failed job.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include <absl/status/statusor.h>
#include <absl/strings/string_view.h>

namespace gangway::launcher {

// What a worker said about its own failure.
struct ErrorReport {
  std::string message;                 // "ValueError: bad learning rate"
  std::string traceback;               // Python call stack, when present
  std::optional<int64_t> timestamp_s;  // when the worker recorded it (Unix seconds)
};

// Parses an error file in PyTorch's format: {"message": {"message": ..., "extraInfo":
// {"py_callstack": ..., "timestamp": ...}}} or {"message": "..."}. InvalidArgument names what is
// wrong.
absl::StatusOr<ErrorReport> parseErrorReport(absl::string_view json);
// Reads and parses `path`; NotFound when the worker wrote none.
absl::StatusOr<ErrorReport> readErrorReport(const std::string& path);

// One failed worker, as the agent saw it.
struct WorkerFailure {
  int rank = 0;
  int local_rank = 0;
  pid_t pid = 0;
  int wait_status = 0;
  int64_t observed_at_ms = 0;  // Unix time when the agent reaped it
  std::string error_file;
  std::optional<ErrorReport> report;
};

// Index of the root cause: the failure with the earliest error-file timestamp, else the first
// observed.
std::size_t rootCauseIndex(const std::vector<WorkerFailure>& failures);

// The summary printed when a job fails, in torchrun's layout: the script, the root cause (time,
// host, rank, exit code or signal, error file, message or traceback) and any other failures.
std::string formatFailureSummary(absl::string_view script, absl::string_view host,
                                 const std::vector<WorkerFailure>& failures);

}  // namespace gangway::launcher
