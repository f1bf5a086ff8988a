// What the agent does when an attempt (one round of local workers) ends.
#pragma once

#include <optional>
#include <string>

namespace gangway::launcher {

// The exit code a shell would report for a wait status: the code, or 128 + signal.
int exitCodeOf(int wait_status);
// "exit code 3" or "signal 9 (SIGKILL)".
std::string describeExit(int wait_status);

struct AttemptOutcome {
  bool all_succeeded = false;         // every worker exited 0
  std::optional<int> agent_signal;    // the agent was told to stop (SIGTERM, SIGINT, ...)
  std::optional<int> failure_status;  // wait status of the root-cause worker failure
};

enum class Decision { kSucceed, kRestart, kFail, kStopBySignal };

// torchrun's policy: a worker failure restarts every local worker until `max_restarts` restarts
// are spent; a signal to the agent ends the job whatever else happened.
Decision decide(const AttemptOutcome& outcome, int restarts_done, int max_restarts);

// The agent's exit code for a final decision: 0, the failing worker's code (128 + signal for a
// signal), or 128 + the signal that stopped the agent.
int jobExitCode(Decision decision, const AttemptOutcome& outcome);

}  // namespace gangway::launcher
