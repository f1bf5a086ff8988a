// The mechanics of one node's workers (torchelastic's split: the supervisor decides, the group
// does): spawning one worker per local rank into its own process group, guarded by the watchdog;
// routing its output (prefixed lines on the agent's console, log files); reaping, signalling and
// stopping the workers; and killing what escaped their process groups at the end.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include <absl/status/statusor.h>

#include "gangway/launcher/error_file.h"
#include "gangway/launcher/line_prefixer.h"
#include "gangway/launcher/run_options.h"
#include "gangway/launcher/worker_env.h"
#include "gangway/topology/mapping.h"

#include "event_loop.h"
#include "process.h"

namespace gangway::launcher {

class WorkerGroup {
 public:
  // Starts the watchdog and makes the agent the subreaper of its descendants. Forks: call before
  // any other thread starts. `options`, `base_env`, `mapping` and `loop` must outlive the group.
  static absl::StatusOr<std::unique_ptr<WorkerGroup>> create(const RunOptions& options,
                                                             const EnvMap& base_env,
                                                             const topology::LocalMapping& mapping,
                                                             EventLoop& loop);
  // Kills and reaps the workers, then every descendant that escaped its process group and was
  // re-parented to the agent, then the watchdog.
  ~WorkerGroup();
  WorkerGroup(const WorkerGroup&) = delete;
  WorkerGroup& operator=(const WorkerGroup&) = delete;

  // Starts the workers of `round`: local rank N's logs and error file under `attempt_dir`/N. An
  // error names the worker rank that could not be started; the ones started before it run on
  // (stop them with kill()).
  absl::Status start(const RoundInfo& round, const std::filesystem::path& attempt_dir);
  // Sends `sig` to every running worker's process group.
  void signal(int sig);
  // Reaps every child that has exited (after SIGCHLD). A worker that did not exit 0 is added to
  // `failures` unless `stopping` (the agent stopped it); whatever it left in its process group is
  // killed. Re-parented descendants are reaped too.
  void reap(bool stopping, std::vector<WorkerFailure>& failures);
  int running() const;
  // Whether every worker of the attempt exited 0.
  bool allSucceeded() const;
  // After the attempt: forwards what is still buffered in the workers' pipes (a grandchild that
  // left the group may hold one open) and closes them.
  void drain();
  // SIGKILL to the running workers; waits for them and closes their output.
  void kill();

 private:
  struct Stream {
    Fd pipe;              // read end, when the agent routes this stream to the console
    Fd file;              // stdout.log / stderr.log when redirected or teed
    int console_fd = -1;  // agent descriptor receiving prefixed lines, or -1
    std::optional<LinePrefixer> prefixer;
    EventLoop::Registration registration = 0;
  };
  struct Worker {
    int local_rank = 0;
    int rank = 0;
    pid_t pid = 0;
    bool running = false;
    int status = 0;
    std::string error_file;
    Stream streams[2];  // stdout, stderr
  };

  WorkerGroup(const RunOptions& options, const EnvMap& base_env,
              const topology::LocalMapping& mapping, EventLoop& loop)
      : options_(options), base_env_(base_env), mapping_(mapping), loop_(loop) {}
  absl::Status openStream(std::size_t index, int which, const std::filesystem::path& dir,
                          int* child_fd, Fd* child_owned);
  void readStream(Worker& w, int which, bool drain);
  void closeStream(Worker& w, int which);
  SpawnRequest spawnRequest(const RoundInfo& round, int local_rank,
                            const std::string& error_file) const;

  const RunOptions& options_;
  const EnvMap& base_env_;
  const topology::LocalMapping& mapping_;
  EventLoop& loop_;
  std::unique_ptr<Watchdog> watchdog_;
  std::vector<Worker> workers_;
};

}  // namespace gangway::launcher
