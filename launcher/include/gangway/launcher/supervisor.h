// The agent's worker supervision: starts the local workers of each round, routes their output,
// watches for exits without polling, stops and restarts them, forwards signals, and reports the
// root cause of a failure.
#pragma once

#include <memory>

#include <absl/status/statusor.h>

#include "gangway/launcher/run_options.h"

namespace gangway::launcher {

class Supervisor {
 public:
  // Prepares the agent (signal handling, watchdog, log directory). Must be called before any other
  // thread is started in the process: workers are forked.
  static absl::StatusOr<std::unique_ptr<Supervisor>> create(RunOptions options, EnvMap base_env);
  virtual ~Supervisor() = default;

  // Runs the job to its end and returns the agent's exit code: 0 on success, the failing worker's
  // exit code (128 + signal for a signal) once restarts are spent, 128 + signal when the agent was
  // told to stop, 2 when a worker could not be started.
  virtual int run() = 0;
};

}  // namespace gangway::launcher
