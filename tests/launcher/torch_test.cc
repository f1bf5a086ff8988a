// Real PyTorch (Debian's python3-torch, gloo backend) under `gangway run`.
#include <unistd.h>

#include <gtest/gtest.h>

#include "agent_harness.h"

namespace gangway::testing {
namespace {

const std::map<std::string, std::string> kTorchEnv = {{"PYTHON_EXEC", "/usr/bin/python3"}};

class TorchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const AgentResult probe =
        runAgent({"run", "--no-python", "/usr/bin/python3", "-c", "import torch.distributed"});
    ASSERT_EQ(probe.exit_code, 0)
        << "Debian's python3-torch is required (scripts/deps.sh installs it):\n"
        << probe.err;
  }
  std::string worker(const std::string& name) { return workersDir() + "/" + name; }
};

TEST_F(TorchTest, FourWorkersAllReduceWithGloo) {
  const AgentResult r =
      runAgent({"run", "--standalone", "--nproc-per-node", "4", worker("allreduce.py")}, kTorchEnv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (int rank = 0; rank < 4; ++rank) {
    EXPECT_EQ(rankLines(r.out, rank), std::vector<std::string>{"sum ok 10 world 4 attempt 0"})
        << r.out;
  }
}

TEST_F(TorchTest, CrashOnFirstAttemptSucceedsWithOneRestart) {
  const AgentResult r = runAgent({"run", "--standalone", "--nproc-per-node", "2", "--max-restarts",
                                  "1", worker("crash_once.py")},
                                 kTorchEnv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("simulated crash on the first attempt"), std::string::npos);
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_EQ(rankLines(r.out, rank), std::vector<std::string>{"sum ok 3 world 2 attempt 1"});
  }
}

TEST_F(TorchTest, RecordedErrorReachesTheSummary) {
  const AgentResult r = runAgent({"run", "--standalone", "--nproc-per-node", "2", "--grace-period",
                                  "5", worker("record_error.py")},
                                 kTorchEnv);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const auto root = r.err.find("Root Cause");
  ASSERT_NE(root, std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rank      : 1 (local_rank: 1)", root), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("message   : ValueError: bad learning rate on rank 1", root),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("traceback : Traceback", root), std::string::npos) << r.err;
}

}  // namespace
}  // namespace gangway::testing
