#include "process.h"

#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fcntl.h>
#include <numaif.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>

#include "gangway/common/status.h"

namespace gangway::launcher {
namespace {

void closeFrom(unsigned int first, unsigned int keep) {
  // close_range(2) is async-signal-safe; skip `keep`.
  if (keep >= first) {
    if (keep > first) ::close_range(first, keep - 1, 0);
    ::close_range(keep + 1, ~0U, 0);
  } else {
    ::close_range(first, ~0U, 0);
  }
}

void resetSignalsForExec() {
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD}) ::signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

std::vector<char*> cStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

void ensureStdFdsOpen() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
      const int null = ::open("/dev/null", O_RDWR);
      if (null >= 0 && null != fd) {
        ::dup2(null, fd);
        ::close(null);
      }
    }
  }
}

absl::StatusOr<pid_t> spawnProcess(const SpawnRequest& req,
                                   const std::function<void(pid_t)>& on_forked) {
  std::vector<char*> argv = cStrings(req.argv);
  std::vector<char*> envp = cStrings(req.env);
  // Prepared here: the child may only make system calls.
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  for (int c : req.cpus) {
    if (c >= 0 && c < CPU_SETSIZE) CPU_SET(c, &cpus);
  }
  const volatile bool bind_cpus = !req.cpus.empty();
  constexpr int kMaxNodes = 1024;
  unsigned long nodes[kMaxNodes / (8 * sizeof(unsigned long))] = {};
  const volatile bool set_policy =
      req.memory != MemoryPolicy::kDefault && req.numa_node >= 0 && req.numa_node < kMaxNodes;
  if (set_policy) {
    nodes[static_cast<std::size_t>(req.numa_node) / (8 * sizeof(unsigned long))] |=
        1UL << (static_cast<unsigned>(req.numa_node) % (8 * sizeof(unsigned long)));
  }
  const volatile int policy = req.memory == MemoryPolicy::kBind ? MPOL_BIND : MPOL_PREFERRED;
  volatile int failed_step = 0;  // 1: CPU affinity, 2: memory policy
  const pid_t parent = ::getpid();
  // vfork: the agent is suspended until the child has exec'd (or failed to), without copying its
  // page tables, and the child reports an exec failure through this shared variable. The child
  // makes system calls only: no allocation, no locks, no return from this function.
  volatile int child_errno = 0;
  const pid_t pid = ::vfork();
  if (pid < 0) return GW_ERRNO("vfork");
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the agent died before prctl took effect
    resetSignalsForExec();
    if ((req.stdout_fd != 1 && ::dup2(req.stdout_fd, 1) < 0) ||
        (req.stderr_fd != 2 && ::dup2(req.stderr_fd, 2) < 0)) {
      child_errno = errno;
      ::_exit(127);
    }
    ::close_range(3, ~0U, 0);
    if (bind_cpus && ::sched_setaffinity(0, sizeof(cpus), &cpus) != 0) {
      child_errno = errno;
      failed_step = 1;
      ::_exit(127);
    }
    if (set_policy && ::set_mempolicy(policy, nodes, kMaxNodes + 1) != 0) {
      child_errno = errno;
      failed_step = 2;
      ::_exit(127);
    }
    ::execve(req.program.c_str(), argv.data(), envp.data());
    child_errno = errno;
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also done in the child; whichever runs first wins the race
  if (on_forked) on_forked(pid);
  if (child_errno != 0 && failed_step != 0) {
    ::waitpid(pid, nullptr, 0);
    std::string cpu_list;
    for (int c : req.cpus) absl::StrAppend(&cpu_list, cpu_list.empty() ? "" : ",", c);
    return absl::FailedPreconditionError(
        failed_step == 1
            ? absl::StrCat("cannot bind to CPUs ", cpu_list, ": ", std::strerror(child_errno))
            : absl::StrCat("cannot set the memory policy on NUMA node ", req.numa_node, ": ",
                           std::strerror(child_errno)));
  }
  if (child_errno != 0) {
    ::waitpid(pid, nullptr, 0);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot execute '", req.program, "': ", std::strerror(child_errno)));
  }
  return pid;
}

absl::StatusOr<std::unique_ptr<Watchdog>> Watchdog::start() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return GW_ERRNO("pipe2");
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    errno = err;
    return GW_ERRNO("fork");
  }
  if (pid == 0) {
    // Watchdog: survives the signals that stop the agent, holds nothing of the agent's but the
    // read end of its pipe, and acts when the agent's end closes.
    ::prctl(PR_SET_NAME, "gangway-watch");
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) ::signal(sig, SIG_IGN);
    const int null = ::open("/dev/null", O_RDWR);
    for (int fd = 0; fd <= 2; ++fd) ::dup2(null, fd);
    closeFrom(3, static_cast<unsigned int>(fds[0]));
    std::vector<pid_t> groups;
    int32_t v = 0;
    for (;;) {
      const ssize_t n = ::read(fds[0], &v, sizeof(v));
      if (n < 0 && errno == EINTR) continue;
      if (n != sizeof(v)) break;  // EOF: the agent is gone or done
      if (v > 0) {
        groups.push_back(v);
      } else {
        std::erase(groups, -v);
      }
    }
    for (pid_t g : groups) ::kill(-g, SIGKILL);
    ::_exit(0);
  }
  ::close(fds[0]);
  return std::unique_ptr<Watchdog>(new Watchdog(pid, Fd(fds[1])));
}

Watchdog::~Watchdog() {
  pipe_.reset();
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
}

void Watchdog::send(int32_t value) {
  // 4-byte writes to a pipe are atomic; the watchdog drains it continuously.
  while (::write(pipe_.get(), &value, sizeof(value)) < 0 && errno == EINTR) {
  }
}

void Watchdog::watch(pid_t pgid) { send(pgid); }
void Watchdog::forget(pid_t pgid) { send(-pgid); }

std::vector<pid_t> listChildren() {
  std::vector<pid_t> out;
  const pid_t self = ::getpid();
  // One file when the kernel has CONFIG_PROC_CHILDREN (children of the main thread, which is the
  // agent's only thread); otherwise every process's stat.
  if (std::ifstream children(absl::StrCat("/proc/self/task/", self, "/children")); children) {
    for (pid_t pid = 0; children >> pid;) out.push_back(pid);
    return out;
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(e.path().filename().string(), &pid)) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...; comm may contain spaces and parentheses: parse from the last ')'.
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    pid_t ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == self) {
      out.push_back(pid);
    }
  }
  return out;
}

}  // namespace gangway::launcher
