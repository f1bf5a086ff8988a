#include "gangway/launcher/restart_policy.h"

#include <cstring>

#include <sys/wait.h>

#include <absl/strings/str_cat.h>

namespace gangway::launcher {

int exitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 1;
}

std::string describeExit(int wait_status) {
  if (WIFEXITED(wait_status)) return absl::StrCat("exit code ", WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    const int sig = WTERMSIG(wait_status);
    const char* abbrev = sigabbrev_np(sig);
    return absl::StrCat("signal ", sig, abbrev != nullptr ? absl::StrCat(" (SIG", abbrev, ")") : "",
                        WCOREDUMP(wait_status) ? ", core dumped" : "");
  }
  return absl::StrCat("wait status ", wait_status);
}

Decision decide(const AttemptOutcome& outcome, int restarts_done, int max_restarts) {
  if (outcome.agent_signal.has_value()) return Decision::kStopBySignal;
  if (outcome.failure_status.has_value()) {
    return restarts_done < max_restarts ? Decision::kRestart : Decision::kFail;
  }
  return outcome.all_succeeded ? Decision::kSucceed : Decision::kFail;
}

int jobExitCode(Decision decision, const AttemptOutcome& outcome) {
  switch (decision) {
    case Decision::kSucceed:
      return 0;
    case Decision::kStopBySignal:
      return 128 + outcome.agent_signal.value_or(SIGTERM);
    case Decision::kFail:
      return outcome.failure_status.has_value() ? exitCodeOf(*outcome.failure_status) : 1;
    case Decision::kRestart:
      break;
  }
  return 1;
}

}  // namespace gangway::launcher
