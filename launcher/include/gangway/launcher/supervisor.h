// The agent's policy: the restart loop of a local job and the rendezvous rounds of a multi-node
// one, over the mechanics of processes (src/worker_group.h), the event loop (src/event_loop.h)
// and the rendezvous client (src/rendezvous_client.h). It stops and restarts the workers when a
// round changes or a worker fails, forwards signals, and reports the root cause of a failure.
#pragma once

#include <memory>
#include <string>

#include <absl/status/statusor.h>

#include "gangway/launcher/run_options.h"

namespace gangway::launcher {

// How a run ended.
struct RunResult {
  // 0 on success; the failing worker's exit code (128 + signal for a signal) once restarts are
  // spent; 128 + signal when the agent was told to stop; 1 when the job failed elsewhere or the
  // rendezvous was lost; 2 when a worker could not be started.
  int exit_code = 0;
  // One line for the user, printed as "gangway run: MESSAGE" ("error: ...", "job J failed:
  // ..."); empty when there is nothing to say.
  std::string message;
};

// Prints a run's message (console.cc): the one place `gangway run` writes to its user.
void printRunMessage(const std::string& message);

class Supervisor {
 public:
  // Prepares the agent (signal handling, watchdog, log directory, topology). Must be called
  // before any other thread is started in the process: workers are forked.
  static absl::StatusOr<std::unique_ptr<Supervisor>> create(RunOptions options, EnvMap base_env);
  virtual ~Supervisor() = default;

  // Runs the job to its end.
  virtual RunResult run() = 0;
};

}  // namespace gangway::launcher
