#include "gangway/launcher/restart_policy.h"

#include <signal.h>

#include <gtest/gtest.h>

namespace gangway::launcher {
namespace {

constexpr int exited(int code) { return code << 8; }  // wait status of a normal exit
constexpr int killed(int sig) { return sig; }         // wait status of a death by signal

TEST(RestartPolicyTest, ExitCodes) {
  EXPECT_EQ(exitCodeOf(exited(0)), 0);
  EXPECT_EQ(exitCodeOf(exited(3)), 3);
  EXPECT_EQ(exitCodeOf(killed(SIGKILL)), 137);
  EXPECT_EQ(exitCodeOf(killed(SIGSEGV)), 139);
  EXPECT_EQ(describeExit(exited(3)), "exit code 3");
  EXPECT_EQ(describeExit(killed(SIGKILL)), "signal 9 (SIGKILL)");
}

TEST(RestartPolicyTest, FailureRestartsUntilBudgetIsSpent) {
  AttemptOutcome failed;
  failed.failure_status = exited(1);
  EXPECT_EQ(decide(failed, 0, 2), Decision::kRestart);
  EXPECT_EQ(decide(failed, 1, 2), Decision::kRestart);
  EXPECT_EQ(decide(failed, 2, 2), Decision::kFail);
  EXPECT_EQ(decide(failed, 0, 0), Decision::kFail);
  EXPECT_EQ(jobExitCode(Decision::kFail, failed), 1);
  failed.failure_status = killed(SIGABRT);
  EXPECT_EQ(jobExitCode(Decision::kFail, failed), 134);
}

TEST(RestartPolicyTest, SuccessAndSignals) {
  AttemptOutcome ok;
  ok.all_succeeded = true;
  EXPECT_EQ(decide(ok, 0, 3), Decision::kSucceed);
  EXPECT_EQ(jobExitCode(Decision::kSucceed, ok), 0);

  AttemptOutcome stopped;
  stopped.agent_signal = SIGTERM;
  stopped.failure_status = exited(1);  // a signal wins over a restartable failure
  EXPECT_EQ(decide(stopped, 0, 3), Decision::kStopBySignal);
  EXPECT_EQ(jobExitCode(Decision::kStopBySignal, stopped), 143);
  stopped.agent_signal = SIGINT;
  EXPECT_EQ(jobExitCode(Decision::kStopBySignal, stopped), 130);
}

}  // namespace
}  // namespace gangway::launcher
