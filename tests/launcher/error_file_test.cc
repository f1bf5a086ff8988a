#include "gangway/launcher/error_file.h"

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include <gtest/gtest.h>

namespace gangway::launcher {
namespace {

// As written by torch.distributed.elastic.multiprocessing.errors.record (PyTorch 1.13).
constexpr const char* kRecordJson = R"({"message": {"message": "ValueError: bad learning rate",
  "extraInfo": {"py_callstack": "Traceback (most recent call last):\n  File \"train.py\"\nValueError: bad learning rate\n",
  "timestamp": "1700000000"}}})";

TEST(ErrorFileTest, ParsesRecordFormat) {
  auto r = parseErrorReport(kRecordJson);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->message, "ValueError: bad learning rate");
  EXPECT_NE(r->traceback.find("Traceback"), std::string::npos);
  EXPECT_EQ(r->timestamp_s, 1700000000);
}

TEST(ErrorFileTest, ParsesPlainMessageFormat) {
  auto r = parseErrorReport(R"({"message": "c10 error: device lost"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->message, "c10 error: device lost");
  EXPECT_FALSE(r->timestamp_s.has_value());
}

TEST(ErrorFileTest, RejectsMalformedFiles) {
  EXPECT_EQ(parseErrorReport("{not json").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parseErrorReport("[]").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parseErrorReport(R"({"msg": 1})").status().message().find("no \"message\""),
            absl::string_view::npos);
  EXPECT_EQ(readErrorReport("/nonexistent/error.json").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ErrorFileTest, ReadsFromDisk) {
  const auto path =
      std::filesystem::temp_directory_path() / ("gangway_err_" + std::to_string(::getpid()));
  std::ofstream(path) << kRecordJson;
  auto r = readErrorReport(path.string());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->message, "ValueError: bad learning rate");
  std::filesystem::remove(path);
}

TEST(ErrorFileTest, RootCauseIsEarliestReportedFailure) {
  std::vector<WorkerFailure> f(3);
  f[0].rank = 0;  // no error file: only its observation time is known
  f[1].rank = 1;
  f[1].report = ErrorReport{.message = "late", .traceback = "", .timestamp_s = 200};
  f[2].rank = 2;
  f[2].report = ErrorReport{.message = "early", .traceback = "", .timestamp_s = 100};
  EXPECT_EQ(rootCauseIndex(f), 2u);
  EXPECT_EQ(rootCauseIndex({WorkerFailure{}, WorkerFailure{}}), 0u);
}

TEST(ErrorFileTest, SummaryNamesRankExitAndMessage) {
  WorkerFailure f;
  f.rank = 5;
  f.local_rank = 1;
  f.pid = 4242;
  f.wait_status = 3 << 8;
  f.error_file = "/logs/attempt_0/1/error.json";
  f.report = *parseErrorReport(kRecordJson);
  WorkerFailure other;
  other.rank = 4;
  other.wait_status = 9;  // SIGKILL
  const std::string s = formatFailureSummary("train.py", "node-a", {other, f});
  EXPECT_NE(s.find("train.py FAILED"), std::string::npos);
  const auto root = s.find("Root Cause");
  ASSERT_NE(root, std::string::npos);
  EXPECT_NE(s.find("rank      : 5 (local_rank: 1)", root), std::string::npos);
  EXPECT_NE(s.find("exitcode  : 3 (exit code 3, pid: 4242)", root), std::string::npos);
  EXPECT_NE(s.find("message   : ValueError: bad learning rate", root), std::string::npos);
  EXPECT_NE(s.find("host      : node-a", root), std::string::npos);
  // The other failure is listed before the root cause, with its signal.
  EXPECT_LT(s.find("rank      : 4"), root);
  EXPECT_NE(s.find("signal 9 (SIGKILL)"), std::string::npos);
}

}  // namespace
}  // namespace gangway::launcher
