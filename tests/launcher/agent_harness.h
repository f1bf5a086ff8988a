// Runs the real `gangway` binary as a child of the test, with its output captured, for
// integration tests. All waits have deadlines and wait on events (pipes, pidfds), never sleeps.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

namespace gangway::testing {

using namespace std::chrono_literals;

struct AgentResult {
  int exit_code = -1;  // 128 + signal if the agent itself died by a signal
  std::string out;
  std::string err;
};

class AgentProcess {
 public:
  // Starts `gangway <args...>` with this process's environment plus `env`, and a unique
  // GANGWAY_TEST_MARKER that every worker and grandchild inherits.
  static std::unique_ptr<AgentProcess> start(const std::vector<std::string>& args,
                                             const std::map<std::string, std::string>& env = {});
  ~AgentProcess();  // SIGKILLs and reaps the agent if it is still running

  pid_t pid() const { return pid_; }
  const std::string& marker() const { return marker_; }
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

  // Reads output until pred(stdout) holds; false if the deadline passes or output ends first.
  bool waitForStdout(const std::function<bool(const std::string&)>& pred,
                     std::chrono::milliseconds timeout = 60s);
  // The same for stderr.
  bool waitForStderr(const std::function<bool(const std::string&)>& pred,
                     std::chrono::milliseconds timeout = 60s);
  // Reads until both streams end and the agent exits. Fails the test at the deadline.
  AgentResult wait(std::chrono::milliseconds timeout = 120s);
  void signal(int sig);

 private:
  bool pump(std::chrono::steady_clock::time_point deadline);  // one poll round; false at deadline
  // Reads output until pred(stream) holds (stream is out_ or err_).
  bool waitFor(const std::string& stream, const std::function<bool(const std::string&)>& pred,
               std::chrono::milliseconds timeout);
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::string marker_;
  std::string out_;
  std::string err_;
};

AgentResult runAgent(const std::vector<std::string>& args,
                     const std::map<std::string, std::string>& env = {},
                     std::chrono::milliseconds timeout = 120s);

// The lines a rank printed, without the "[rankN]:" prefix, in order.
std::vector<std::string> rankLines(const std::string& output, int rank);
// How many lines of output carry a "[rankN]:" prefix, whatever N.
std::size_t workerLineCount(const std::string& output);
// Splits text into lines (no trailing empty line).
std::vector<std::string> splitLines(const std::string& text);

// Waits (on pidfds) until every process in `pids` has exited; returns those still alive.
std::vector<pid_t> waitForExit(const std::vector<pid_t>& pids, std::chrono::milliseconds timeout);
// Waits until no process carries GANGWAY_TEST_MARKER=marker; returns those still alive.
std::vector<pid_t> waitForNoMarkedProcesses(const std::string& marker,
                                            std::chrono::milliseconds timeout);

// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string readFile(const std::string& path);
void writeFile(const std::string& path, const std::string& content, int mode = 0644);

// Path of the gangway binary under test and of the test worker scripts.
std::string gangwayBinary();
std::string workersDir();

}  // namespace gangway::testing
