// Process plumbing for the agent: spawning workers into their own process groups, the watchdog
// that kills worker groups if the agent dies, free ports, and unix file descriptor ownership.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

#include <absl/status/statusor.h>

namespace gangway::launcher {

// Owns one file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

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

// Binds a TCP socket to `addr`:0 (any address if `addr` is not local) and returns the port the
// kernel chose, for MASTER_PORT.
absl::StatusOr<int> pickFreePort(const std::string& addr);

// PIDs of this process's children, read from /proc.
std::vector<pid_t> listChildren();

}  // namespace gangway::launcher
