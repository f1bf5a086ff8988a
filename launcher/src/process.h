// Process plumbing for the agent: spawning workers into their own process groups, and the
// watchdog that kills worker groups if the agent dies.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

#include <absl/status/statusor.h>

#include "gangway/common/fd.h"

namespace gangway::launcher {

// Makes sure descriptors 0, 1 and 2 are open (on /dev/null if they were closed), so that pipes
// created later never land on them.
void ensureStdFdsOpen();

// The memory policy a worker starts with (set_mempolicy(2) on its NUMA node).
enum class MemoryPolicy { kDefault, kPreferred, kBind };

struct SpawnRequest {
  std::string program;            // absolute path to exec
  std::vector<std::string> argv;  // argv[0] first
  std::vector<std::string> env;   // KEY=VALUE
  int stdout_fd = 1;              // becomes the child's descriptor 1
  int stderr_fd = 2;              // becomes the child's descriptor 2
  std::vector<int> cpus;          // CPU affinity; empty: inherited
  MemoryPolicy memory = MemoryPolicy::kDefault;
  int numa_node = -1;  // for kPreferred and kBind
};

// Forks and execs `req`. The child leads its own process group (pgid == pid), dies with SIGKILL
// when the agent dies (PR_SET_PDEATHSIG), starts with an empty signal mask and default signal
// dispositions, and inherits no descriptor above 2. Returns once the exec has succeeded; an exec
// failure comes back as an error naming the program (the child is reaped); so does a CPU affinity
// or memory policy the kernel refuses. `on_forked` runs in the
// agent right after the fork, before the exec is confirmed (to register the group with the
// watchdog before the worker can start anything).
absl::StatusOr<pid_t> spawnProcess(const SpawnRequest& req,
                                   const std::function<void(pid_t)>& on_forked = {});

// A helper process that outlives the agent just long enough to SIGKILL every worker process group
// the agent registered, grandchildren included, if the agent dies for any reason (kill -9 too). It
// notices through the end of a pipe that only the agent writes to.
class Watchdog {
 public:
  static absl::StatusOr<std::unique_ptr<Watchdog>> start();
  ~Watchdog();  // closes the pipe; the watchdog kills what is still registered, and is reaped

  void watch(pid_t pgid);
  void forget(pid_t pgid);
  pid_t pid() const { return pid_; }

 private:
  Watchdog(pid_t pid, Fd pipe) : pid_(pid), pipe_(std::move(pipe)) {}
  void send(int32_t value);

  pid_t pid_;
  Fd pipe_;
};

// PIDs of this process's children, read from /proc.
std::vector<pid_t> listChildren();

}  // namespace gangway::launcher
