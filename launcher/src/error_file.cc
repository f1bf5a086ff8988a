#include "gangway/launcher/error_file.h"

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_replace.h>
#include <absl/time/time.h>
#include <nlohmann/json.hpp>

#include "gangway/common/file.h"
#include "gangway/launcher/restart_policy.h"

namespace gangway::launcher {
namespace {

// A worker writes its message and traceback; anything larger is not a report.
constexpr std::size_t kMaxErrorFileBytes = 16 << 20;

}  // namespace

absl::StatusOr<ErrorReport> parseErrorReport(absl::string_view json) {
  const nlohmann::json doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError("error file: expected a JSON object");
  }
  const auto msg = doc.find("message");
  if (msg == doc.end()) return absl::InvalidArgumentError("error file: no \"message\" field");
  ErrorReport r;
  if (msg->is_string()) {
    r.message = msg->get<std::string>();
    return r;
  }
  if (!msg->is_object()) {
    return absl::InvalidArgumentError("error file: \"message\" is neither a string nor an object");
  }
  if (auto m = msg->find("message"); m != msg->end() && m->is_string()) {
    r.message = m->get<std::string>();
  }
  if (auto extra = msg->find("extraInfo"); extra != msg->end() && extra->is_object()) {
    if (auto cs = extra->find("py_callstack"); cs != extra->end() && cs->is_string()) {
      r.traceback = cs->get<std::string>();
    }
    if (auto ts = extra->find("timestamp"); ts != extra->end()) {
      int64_t v = 0;
      if (ts->is_number_integer()) {
        r.timestamp_s = ts->get<int64_t>();
      } else if (ts->is_string() && absl::SimpleAtoi(ts->get<std::string>(), &v)) {
        r.timestamp_s = v;
      }
    }
  }
  return r;
}

absl::StatusOr<ErrorReport> readErrorReport(const std::string& path) {
  auto text = readFile(path, "error file", kMaxErrorFileBytes);
  if (absl::IsNotFound(text.status())) {
    return absl::NotFoundError(absl::StrCat(path, ": no error file"));
  }
  if (!text.ok()) return text.status();
  auto r = parseErrorReport(*text);
  if (!r.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", r.status().message()));
  return r;
}

std::size_t rootCauseIndex(const std::vector<WorkerFailure>& failures) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < failures.size(); ++i) {
    const auto& a = failures[i].report;
    const auto& b = failures[best].report;
    if (a && a->timestamp_s && (!b || !b->timestamp_s || *a->timestamp_s < *b->timestamp_s)) {
      best = i;
    }
  }
  return best;
}

namespace {

std::string formatTime(int64_t unix_ms) {
  return absl::FormatTime("%Y-%m-%d_%H:%M:%S", absl::FromUnixMillis(unix_ms),
                          absl::LocalTimeZone());
}

void appendFailure(std::string& out, std::size_t index, absl::string_view host,
                   const WorkerFailure& f) {
  const int64_t when_ms =
      f.report && f.report->timestamp_s ? *f.report->timestamp_s * 1000 : f.observed_at_ms;
  absl::StrAppend(&out, "[", index, "]:\n");
  absl::StrAppend(&out, "  time      : ", formatTime(when_ms), "\n");
  absl::StrAppend(&out, "  host      : ", host, "\n");
  absl::StrAppend(&out, "  rank      : ", f.rank, " (local_rank: ", f.local_rank, ")\n");
  absl::StrAppend(&out, "  exitcode  : ", exitCodeOf(f.wait_status), " (",
                  describeExit(f.wait_status), ", pid: ", f.pid, ")\n");
  if (f.report) {
    absl::StrAppend(&out, "  error_file: ", f.error_file, "\n");
    const std::string& text = f.report->traceback.empty() ? f.report->message : f.report->traceback;
    if (!f.report->message.empty())
      absl::StrAppend(&out, "  message   : ", f.report->message, "\n");
    if (!f.report->traceback.empty()) {
      absl::StrAppend(
          &out, "  traceback : ", absl::StrReplaceAll(text, {{"\n", "\n              "}}), "\n");
    }
  } else {
    absl::StrAppend(&out, "  error_file: <N/A>\n");
    absl::StrAppend(&out,
                    "  traceback : To see the worker's traceback, decorate its entry point "
                    "with torch.distributed.elastic.multiprocessing.errors.record\n");
  }
}

}  // namespace

std::string formatFailureSummary(absl::string_view script, absl::string_view host,
                                 const std::vector<WorkerFailure>& failures) {
  const std::string rule(60, '=');
  const std::string thin(60, '-');
  std::string out = absl::StrCat(rule, "\n", script, " FAILED\n", thin, "\nFailures:\n");
  const std::size_t root = failures.empty() ? 0 : rootCauseIndex(failures);
  std::size_t n = 1;
  for (std::size_t i = 0; i < failures.size(); ++i) {
    if (i != root) appendFailure(out, n++, host, failures[i]);
  }
  if (n == 1) out += "  <NO_OTHER_FAILURES>\n";
  absl::StrAppend(&out, thin, "\nRoot Cause (first observed failure):\n");
  if (!failures.empty()) appendFailure(out, 0, host, failures[root]);
  absl::StrAppend(&out, rule, "\n");
  return out;
}

}  // namespace gangway::launcher
