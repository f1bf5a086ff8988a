#include "worker_group.h"

#include <cerrno>
#include <chrono>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <absl/strings/str_cat.h>

#include "gangway/common/log.h"
#include "gangway/common/status.h"
#include "gangway/launcher/restart_policy.h"

#include "console.h"

namespace gangway::launcher {
namespace {

namespace fs = std::filesystem;

Logger& log() {
  static Logger& l = logger("launcher");
  return l;
}

int64_t nowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Bounds the passes over re-parented descendants at the end (each kills what it finds).
constexpr int kStrayPasses = 8;

}  // namespace

absl::StatusOr<std::unique_ptr<WorkerGroup>> WorkerGroup::create(
    const RunOptions& options, const EnvMap& base_env, const topology::LocalMapping& mapping,
    EventLoop& loop) {
  // Orphaned grandchildren are re-parented to the agent, which reaps and kills them.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return GW_ERRNO("prctl(PR_SET_CHILD_SUBREAPER)");
  std::unique_ptr<WorkerGroup> group(new WorkerGroup(options, base_env, mapping, loop));
  GW_ASSIGN_OR_RETURN(group->watchdog_, Watchdog::start());
  return group;
}

WorkerGroup::~WorkerGroup() {
  if (!workers_.empty()) kill();
  // Descendants that escaped their process group and were re-parented here.
  const pid_t watchdog_pid = watchdog_ != nullptr ? watchdog_->pid() : -1;
  for (int pass = 0; pass < kStrayPasses; ++pass) {
    std::vector<pid_t> children = listChildren();
    std::erase(children, watchdog_pid);
    if (children.empty()) break;
    for (pid_t pid : children) ::kill(pid, SIGKILL);
    for (pid_t pid : children) ::waitpid(pid, nullptr, 0);
  }
  watchdog_.reset();
}

int WorkerGroup::running() const {
  int n = 0;
  for (const auto& w : workers_) n += w.running ? 1 : 0;
  return n;
}

bool WorkerGroup::allSucceeded() const {
  for (const auto& w : workers_) {
    if (!(WIFEXITED(w.status) && WEXITSTATUS(w.status) == 0)) return false;
  }
  return true;
}

absl::Status WorkerGroup::openStream(std::size_t index, int which, const fs::path& dir,
                                     int* child_fd, Fd* child_owned) {
  Worker& w = workers_[index];
  const Streams redirect = options_.redirects[w.local_rank];
  const Streams tee = options_.tee[w.local_rank];
  const bool is_out = which == 0;
  const bool to_file =
      is_out ? (hasOut(redirect) || hasOut(tee)) : (hasErr(redirect) || hasErr(tee));
  const bool to_console =
      !(is_out ? hasOut(redirect) : hasErr(redirect)) && options_.console[w.local_rank];
  Stream& s = w.streams[which];
  if (to_file) {
    const fs::path file = dir / (is_out ? "stdout.log" : "stderr.log");
    s.file.reset(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!s.file.valid()) return GW_ERRNO(absl::StrCat("open ", file.string()));
  }
  if (to_console) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return GW_ERRNO("pipe2");
    ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    s.pipe.reset(fds[0]);
    child_owned->reset(fds[1]);
    *child_fd = fds[1];
    s.console_fd = is_out ? 1 : 2;
    s.prefixer.emplace(absl::StrCat("[rank", w.rank, "]:"));
    GW_ASSIGN_OR_RETURN(s.registration, loop_.add(fds[0], [this, index, which] {
      readStream(workers_[index], which, /*drain=*/false);
    }));
  } else if (to_file) {
    *child_fd = s.file.get();  // the worker writes its log file directly
    *child_owned = std::move(s.file);
  } else {
    child_owned->reset(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    *child_fd = child_owned->get();
  }
  return absl::OkStatus();
}

SpawnRequest WorkerGroup::spawnRequest(const RoundInfo& round, int local_rank,
                                       const std::string& error_file) const {
  SpawnRequest req;
  req.program = options_.program;
  req.argv = options_.argv;
  EnvMap env = buildWorkerEnv(options_, round, local_rank, error_file, base_env_);
  for (auto& [key, value] : topology::bindingEnv(mapping_, local_rank)) {
    if (key == "NCCL_IB_HCA" && base_env_.count(key) > 0) continue;  // the user's choice
    env[key] = std::move(value);
  }
  req.env = toEnvStrings(env);
  if (local_rank < static_cast<int>(mapping_.ranks.size())) {
    const topology::RankBinding& b = mapping_.ranks[static_cast<std::size_t>(local_rank)];
    req.cpus = b.cpus;
    req.numa_node = b.numa_node;
    req.memory = b.bind_memory     ? MemoryPolicy::kBind
                 : b.prefer_memory ? MemoryPolicy::kPreferred
                                   : MemoryPolicy::kDefault;
  }
  return req;
}

absl::Status WorkerGroup::start(const RoundInfo& round, const fs::path& attempt_dir) {
  workers_.clear();
  workers_.resize(options_.nproc_per_node);
  log().info(
      "starting {} worker{} (run id {}, round {}, ranks {}-{} of {}, restart {}/{}, "
      "MASTER_ADDR={} MASTER_PORT={})",
      workers_.size(), workers_.size() == 1 ? "" : "s", options_.run_id, round.round,
      round.rank_offset, round.rank_offset + options_.nproc_per_node - 1, round.world_size,
      round.restart_count, options_.max_restarts, round.master_addr, round.master_port);
  for (int lr = 0; lr < options_.nproc_per_node; ++lr) {
    Worker& w = workers_[lr];
    w.local_rank = lr;
    w.rank = round.rank_offset + lr;
    const fs::path dir = attempt_dir / std::to_string(lr);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return absl::InternalError(absl::StrCat("create ", dir.string(), ": ", ec.message()));
    w.error_file = (dir / "error.json").string();
    SpawnRequest req = spawnRequest(round, lr, w.error_file);
    Fd child_out;
    Fd child_err;
    GW_RETURN_IF_ERROR(openStream(lr, 0, dir, &req.stdout_fd, &child_out));
    GW_RETURN_IF_ERROR(openStream(lr, 1, dir, &req.stderr_fd, &child_err));
    auto pid = spawnProcess(req, [this](pid_t p) { watchdog_->watch(p); });
    if (!pid.ok()) {
      return absl::Status(pid.status().code(),
                          absl::StrCat("worker rank ", w.rank, ": ", pid.status().message()));
    }
    w.pid = *pid;
    w.running = true;
  }
  return absl::OkStatus();
}

void WorkerGroup::signal(int sig) {
  for (const auto& w : workers_) {
    if (w.running) ::kill(-w.pid, sig);
  }
}

void WorkerGroup::readStream(Worker& w, int which, bool drain) {
  Stream& s = w.streams[which];
  if (!s.pipe.valid()) return;
  char buf[64 * 1024];
  std::string out;
  for (;;) {
    const ssize_t n = ::read(s.pipe.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;  // EAGAIN: nothing more for now
    if (n == 0) {
      if (!out.empty()) writeAll(s.console_fd, out);
      out.clear();
      closeStream(w, which);
      return;
    }
    const std::string_view chunk(buf, static_cast<std::size_t>(n));
    if (s.file.valid()) writeAll(s.file.get(), chunk);
    s.prefixer->feed(chunk, out);
    if (!drain) break;  // level-triggered: epoll reports the rest
  }
  if (!out.empty()) writeAll(s.console_fd, out);
}

void WorkerGroup::closeStream(Worker& w, int which) {
  Stream& s = w.streams[which];
  if (s.pipe.valid()) {
    std::string out;
    s.prefixer->finish(out);
    if (!out.empty()) writeAll(s.console_fd, out);
    loop_.remove(s.registration);
    s.pipe.reset();
  }
  s.file.reset();
}

void WorkerGroup::reap(bool stopping, std::vector<WorkerFailure>& failures) {
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    if (pid == watchdog_->pid()) {
      log().warn(
          "the watchdog process exited ({}); workers are no longer guarded against the "
          "agent's death",
          describeExit(status));
      continue;
    }
    Worker* w = nullptr;
    for (auto& candidate : workers_) {
      if (candidate.running && candidate.pid == pid) w = &candidate;
    }
    if (w == nullptr) continue;  // an orphaned grandchild, re-parented to the agent
    w->running = false;
    w->status = status;
    ::kill(-pid, SIGKILL);  // whatever the worker left behind in its group goes with it
    watchdog_->forget(pid);
    readStream(*w, 0, /*drain=*/true);
    readStream(*w, 1, /*drain=*/true);
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && !stopping) {
      WorkerFailure f;
      f.rank = w->rank;
      f.local_rank = w->local_rank;
      f.pid = pid;
      f.wait_status = status;
      f.observed_at_ms = nowUnixMs();
      f.error_file = w->error_file;
      if (auto report = readErrorReport(w->error_file); report.ok()) {
        f.report = *std::move(report);
      } else if (!absl::IsNotFound(report.status())) {
        log().warn("rank {}: {}", w->rank, std::string(report.status().message()));
      }
      failures.push_back(std::move(f));
    }
  }
}

void WorkerGroup::drain() {
  for (auto& w : workers_) {
    for (int which = 0; which < 2; ++which) {
      readStream(w, which, /*drain=*/true);
      closeStream(w, which);
    }
  }
}

void WorkerGroup::kill() {
  signal(SIGKILL);
  for (auto& w : workers_) {
    if (!w.running) continue;
    while (::waitpid(w.pid, &w.status, 0) < 0 && errno == EINTR) {
    }
    w.running = false;
    watchdog_->forget(w.pid);
  }
  for (auto& w : workers_) {
    closeStream(w, 0);
    closeStream(w, 1);
  }
}

}  // namespace gangway::launcher
