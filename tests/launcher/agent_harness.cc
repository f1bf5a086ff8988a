#include "agent_harness.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

extern char** environ;  // NOLINT(readability-identifier-naming): POSIX name

namespace gangway::testing {
namespace {

using Clock = std::chrono::steady_clock;

int msUntil(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

std::string randomToken() {
  std::random_device rd;
  std::ostringstream s;
  s << std::hex << rd() << rd();
  return s.str();
}

int pidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

}  // namespace

std::string gangwayBinary() { return GANGWAY_BIN; }
std::string workersDir() { return GANGWAY_TEST_WORKERS; }

std::unique_ptr<AgentProcess> AgentProcess::start(const std::vector<std::string>& args,
                                                  const std::map<std::string, std::string>& env) {
  auto p = std::unique_ptr<AgentProcess>(new AgentProcess());
  p->marker_ = randomToken();
  std::map<std::string, std::string> full;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    const auto eq = kv.find('=');
    if (eq != std::string::npos) full[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env) full[k] = v;
  full["GANGWAY_TEST_MARKER"] = p->marker_;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : full) env_strings.push_back(k + "=" + v);
  std::vector<std::string> argv_strings = {gangwayBinary()};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv, envp;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return p;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  p->pid_ = pid;
  p->out_fd_ = out[0];
  p->err_fd_ = err[0];
  return p;
}

AgentProcess::~AgentProcess() {
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
}

void AgentProcess::signal(int sig) { ::kill(pid_, sig); }

bool AgentProcess::pump(Clock::time_point deadline) {
  pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  const int n = ::poll(fds, 2, msUntil(deadline));
  if (n <= 0) return n < 0 && errno == EINTR;
  int* owned[2] = {&out_fd_, &err_fd_};
  std::string* sinks[2] = {&out_, &err_};
  for (int i = 0; i < 2; ++i) {
    if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    char buf[65536];
    const ssize_t r = ::read(fds[i].fd, buf, sizeof(buf));
    if (r > 0) {
      sinks[i]->append(buf, static_cast<size_t>(r));
    } else if (r == 0 || errno != EINTR) {
      ::close(*owned[i]);
      *owned[i] = -1;
    }
  }
  return true;
}

bool AgentProcess::waitFor(const std::string& stream,
                           const std::function<bool(const std::string&)>& pred,
                           std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!pred(stream)) {
    if (out_fd_ < 0 && err_fd_ < 0) return false;
    if (!pump(deadline)) return pred(stream);
  }
  return true;
}

bool AgentProcess::waitForStdout(const std::function<bool(const std::string&)>& pred,
                                 std::chrono::milliseconds timeout) {
  return waitFor(out_, pred, timeout);
}

bool AgentProcess::waitForStderr(const std::function<bool(const std::string&)>& pred,
                                 std::chrono::milliseconds timeout) {
  return waitFor(err_, pred, timeout);
}

AgentResult AgentProcess::wait(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (out_fd_ >= 0 || err_fd_ >= 0) {
    if (!pump(deadline)) {
      ADD_FAILURE() << "agent output did not end within the deadline; stderr so far:\n" << err_;
      break;
    }
  }
  if (!reaped_) {
    // Both streams closed: the agent is exiting. Wait on its pidfd with the remaining time.
    const int pfd = pidfdOpen(pid_);
    pollfd p{pfd, POLLIN, 0};
    if (pfd >= 0 && ::poll(&p, 1, msUntil(deadline)) == 0) {
      ADD_FAILURE() << "agent did not exit within the deadline";
      ::kill(pid_, SIGKILL);
    }
    if (pfd >= 0) ::close(pfd);
    ::waitpid(pid_, &status_, 0);
    reaped_ = true;
  }
  AgentResult r;
  r.exit_code = WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  r.out = out_;
  r.err = err_;
  return r;
}

AgentResult runAgent(const std::vector<std::string>& args,
                     const std::map<std::string, std::string>& env,
                     std::chrono::milliseconds timeout) {
  return AgentProcess::start(args, env)->wait(timeout);
}

std::vector<std::string> splitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> rankLines(const std::string& output, int rank) {
  const std::string prefix = "[rank" + std::to_string(rank) + "]:";
  std::vector<std::string> out;
  for (const auto& line : splitLines(output)) {
    if (line.rfind(prefix, 0) == 0) out.push_back(line.substr(prefix.size()));
  }
  return out;
}

std::size_t workerLineCount(const std::string& output) {
  std::size_t n = 0;
  for (const auto& line : splitLines(output)) n += line.starts_with("[rank") ? 1 : 0;
  return n;
}

std::vector<pid_t> waitForExit(const std::vector<pid_t>& pids, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::vector<pid_t> alive;
  for (pid_t pid : pids) {
    const int pfd = pidfdOpen(pid);
    if (pfd < 0) continue;  // ESRCH: already gone
    pollfd p{pfd, POLLIN, 0};
    int n;
    do {
      n = ::poll(&p, 1, msUntil(deadline));
    } while (n < 0 && errno == EINTR);
    if (n == 0) alive.push_back(pid);
    ::close(pfd);
  }
  return alive;
}

std::vector<pid_t> waitForNoMarkedProcesses(const std::string& marker,
                                            std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string needle = "GANGWAY_TEST_MARKER=" + marker;
  for (;;) {
    std::vector<pid_t> found;
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
      const std::string name = e.path().filename().string();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream in(e.path() / "environ", std::ios::binary);
      std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::string status = readFile((e.path() / "stat").string());
      const bool zombie = status.find(") Z ") != std::string::npos;
      if (!zombie && env.find(needle + '\0') != std::string::npos) found.push_back(std::stoi(name));
    }
    if (found.empty()) return {};
    // Wait for the processes found to exit (no sleeping), then look again for any new ones.
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return found;
    if (!waitForExit(found, left).empty()) return found;
  }
}

TempDir::TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp != nullptr && *tmp ? tmp : "/tmp") + "/gangway_test_XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void writeFile(const std::string& path, const std::string& content, int mode) {
  std::ofstream(path, std::ios::binary) << content;
  ::chmod(path.c_str(), static_cast<mode_t>(mode));
}

}  // namespace gangway::testing
