#include "gangway/launcher/supervisor.h"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include "gangway/common/log.h"
#include "gangway/common/status.h"
#include "gangway/launcher/error_file.h"
#include "gangway/launcher/line_prefixer.h"
#include "gangway/launcher/restart_policy.h"
#include "gangway/launcher/worker_env.h"
#include "gangway/scheduler/client.h"
#include "gangway/scheduler/server.h"
#include "gangway/topology/discover.h"
#include "gangway/topology/mapping.h"

#include "process.h"
#include "rendezvous_client.h"
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

namespace gangway::launcher {
namespace {

namespace fs = std::filesystem;

Logger& log() {
  static Logger& l = logger("launcher");
  return l;
}

constexpr int kStopSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};
constexpr uint64_t kSignalTag = 0;
constexpr uint64_t kTimerTag = 1;
constexpr uint64_t kRdzvTag = 2;
constexpr uint64_t kStreamTagBase = 3;  // + 2 * worker index + (0 stdout | 1 stderr)

int64_t nowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the reader went away; the job goes on
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

// The name of the (non-loopback) interface that holds `address`, or "".
std::string interfaceOf(const std::string& address) {
  in6_addr want6{};
  in_addr want4{};
  const bool v4 = ::inet_pton(AF_INET, address.c_str(), &want4) == 1;
  if (!v4 && ::inet_pton(AF_INET6, address.c_str(), &want6) != 1) return "";
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return "";
  std::string name;
  for (ifaddrs* i = list; i != nullptr && name.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || (i->ifa_flags & IFF_LOOPBACK) != 0) continue;
    if (v4 && i->ifa_addr->sa_family == AF_INET &&
        reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr == want4.s_addr) {
      name = i->ifa_name;
    } else if (!v4 && i->ifa_addr->sa_family == AF_INET6 &&
               std::memcmp(&reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, &want6,
                           sizeof(want6)) == 0) {
      name = i->ifa_name;
    }
  }
  ::freeifaddrs(list);
  return name;
}

// Whether HOST:PORT can be bound now: HOST is one of this machine's addresses and nobody serves
// the port. Checked with a plain socket, so that the usual case (a control plane already there)
// does not make gRPC log a failed bind.
bool canBind(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) return false;
  bool bound = false;
  for (addrinfo* r = res; r != nullptr && !bound; r = r->ai_next) {
    Fd sock(::socket(r->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const int one = 1;
    bound = sock.valid() &&
            ::setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
            ::bind(sock.get(), r->ai_addr, r->ai_addrlen) == 0;
  }
  ::freeaddrinfo(res);
  return bound;
}

// One of a worker's output streams as the agent sees it.
struct Stream {
  Fd pipe;              // read end when the agent routes this stream to the console
  Fd file;              // stdout.log / stderr.log when redirected or teed
  int console_fd = -1;  // agent descriptor receiving prefixed lines, or -1
  std::optional<LinePrefixer> prefixer;
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

class SupervisorImpl final : public Supervisor {
 public:
  SupervisorImpl(RunOptions options, EnvMap base_env)
      : options_(std::move(options)), base_env_(std::move(base_env)) {}
  ~SupervisorImpl() override { cleanup(); }

  absl::Status init();
  // Discovers (or loads) the node's topology and maps the local ranks onto it.
  absl::Status initTopology();
  int run() override;

 private:
  int runLocal();
  int runRendezvous();
  absl::Status connectRendezvous();
  // Waits, with no workers running, for the next rendezvous event or a stop signal.
  std::variant<ClientEvent, int> waitIdle();
  void takeRendezvousEvents(bool& stopping);
  RoundInfo roundFromAssignment(const v1::Assignment& a) const;
  absl::Status startWorkers(const RoundInfo& round);
  absl::Status openStream(Worker& w, int which, const fs::path& dir, int* child_fd,
                          Fd* child_owned);
  void monitor(AttemptOutcome& outcome, std::vector<WorkerFailure>& failures);
  void reapChildren(bool stopping, std::vector<WorkerFailure>& failures);
  void readStream(Worker& w, int which, bool drain);
  void closeStream(Worker& w, int which);
  void signalWorkers(int sig);
  void armDeadline(double seconds);
  void disarmDeadline();
  void stopAndReap();
  void cleanup();
  int liveWorkers() const;

  RunOptions options_;
  EnvMap base_env_;
  std::string host_;
  topology::NodeTopology topology_;  // this node, as discovered (or loaded) at start
  topology::LocalMapping mapping_;   // GPU, NIC and CPUs of each local rank; empty: no binding
  fs::path log_root_;
  bool keep_logs_ = false;
  Fd epoll_;
  Fd signal_fd_;
  Fd timer_fd_;
  std::unique_ptr<Watchdog> watchdog_;
  std::vector<Worker> workers_;
  int attempt_ = 0;  // local attempts so far (log directories attempt_N)
  bool cleaned_ = false;
  // Rendezvous mode.
  std::unique_ptr<scheduler::ControlPlaneServer> server_;  // host mode
  std::unique_ptr<RendezvousClient> client_;
  std::string endpoint_;
  std::string socket_ifname_;        // the interface of the advertised address (not loopback)
  std::deque<ClientEvent> pending_;  // events that arrived while workers ran
  int64_t current_round_ = 0;
};

absl::Status SupervisorImpl::init() {
  ensureStdFdsOpen();
  for (const std::string& note : options_.notes) log().warn("{}", note);
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  for (int sig : kStopSignals) sigaddset(&mask, sig);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return GW_ERRNO("sigprocmask");
  signal_fd_.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd_.valid()) return GW_ERRNO("signalfd");
  // Orphaned grandchildren are re-parented to the agent, which reaps and kills them.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return GW_ERRNO("prctl(PR_SET_CHILD_SUBREAPER)");
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) return GW_ERRNO("epoll_create1");
  timer_fd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!timer_fd_.valid()) return GW_ERRNO("timerfd_create");
  for (auto [fd, tag] : {std::pair{signal_fd_.get(), kSignalTag}, {timer_fd_.get(), kTimerTag}}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return GW_ERRNO("epoll_ctl");
  }

  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  host_ = host;

  // Log root: <log-dir>/<run id>_XXXXXX, or a temporary directory removed at exit unless it holds
  // redirected output.
  for (int i = 0; i < options_.nproc_per_node; ++i) {
    if (options_.redirects[i] != Streams::kNone || options_.tee[i] != Streams::kNone) {
      keep_logs_ = true;
    }
  }
  fs::path parent;
  if (!options_.log_dir.empty()) {
    keep_logs_ = true;
    parent = options_.log_dir;
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid --log-dir '", options_.log_dir, "': ", ec.message()));
    }
  } else {
    const char* tmp = std::getenv("TMPDIR");
    parent = tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp";
  }
  std::string templ = (parent / absl::StrCat(options_.log_dir.empty() ? "gangway_" : "",
                                             options_.run_id, "_XXXXXX"))
                          .string();
  if (::mkdtemp(templ.data()) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot create a log directory under '",
                                                   parent.string(), "': ", std::strerror(errno)));
  }
  log_root_ = templ;
  GW_RETURN_IF_ERROR(initTopology());
  GW_ASSIGN_OR_RETURN(watchdog_, Watchdog::start());
  return absl::OkStatus();
}

absl::Status SupervisorImpl::initTopology() {
  if (options_.topology == "off") return absl::OkStatus();
  if (options_.topology == "auto") {
    topology::DiscoverOptions d;
    d.root = options_.sysfs_root;
    d.network_path = options_.network_path;
    d.hostname = host_;
    topology_ = topology::discover(d);
  } else {
    auto loaded = topology::loadTopologyFile(options_.topology);
    if (!loaded.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--topology: ", loaded.status().message()));
    }
    topology_ = *std::move(loaded);
    if (!options_.network_path.empty()) topology_.network_path = options_.network_path;
  }
  topology::MappingOptions m;
  m.nproc = options_.nproc_per_node;
  m.numa = options_.numa_binding;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) m.allowed_cpus.push_back(c);
    }
  }
  if (auto it = base_env_.find("CUDA_VISIBLE_DEVICES"); it != base_env_.end()) {
    m.visible_devices_set = true;
    m.visible_devices = it->second;
  }
  mapping_ = topology::mapLocalRanks(topology_, m);
  if (!mapping_.ranks.empty()) {
    std::vector<std::string> ranks;
    for (const auto& b : mapping_.ranks) {
      ranks.push_back(absl::StrCat(b.local_rank, ":GPU", b.gpu, b.nic.empty() ? "" : "/", b.nic,
                                   b.cpus.empty() ? "" : "/CPUs ",
                                   b.cpus.empty() ? "" : topology::formatCpuList(b.cpus)));
    }
    log().info("topology: {} GPU(s), {} NIC(s), {} NUMA node(s); binding (--numa-binding {}) {}",
               topology_.gpus.size(), topology_.nics.size(), topology_.numa_nodes.size(),
               topology::numaBindingName(options_.numa_binding), absl::StrJoin(ranks, " "));
  }
  for (const auto& note : mapping_.notes) {
    if (!topology_.gpus.empty()) log().info("topology: {}", note);
  }
  return absl::OkStatus();
}

int SupervisorImpl::liveWorkers() const {
  int n = 0;
  for (const auto& w : workers_) n += w.running ? 1 : 0;
  return n;
}

absl::Status SupervisorImpl::openStream(Worker& w, int which, const fs::path& dir, int* child_fd,
                                        Fd* child_owned) {
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
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kStreamTagBase + 2 * static_cast<uint64_t>(&w - workers_.data()) + which;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fds[0], &ev) != 0) return GW_ERRNO("epoll_ctl");
  } else if (to_file) {
    *child_fd = s.file.get();  // the worker writes its log file directly
    *child_owned = std::move(s.file);
  } else {
    child_owned->reset(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    *child_fd = child_owned->get();
  }
  return absl::OkStatus();
}

absl::Status SupervisorImpl::startWorkers(const RoundInfo& round) {
  const fs::path attempt_dir = log_root_ / absl::StrCat("attempt_", attempt_++);
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
    SpawnRequest req;
    req.program = options_.program;
    req.argv = options_.argv;
    EnvMap env = buildWorkerEnv(options_, round, lr, w.error_file, base_env_);
    for (auto& [key, value] : topology::bindingEnv(mapping_, lr)) {
      if (key == "NCCL_IB_HCA" && base_env_.count(key) > 0) continue;  // the user's choice
      env[key] = std::move(value);
    }
    req.env = toEnvStrings(env);
    if (lr < static_cast<int>(mapping_.ranks.size())) {
      const topology::RankBinding& b = mapping_.ranks[static_cast<std::size_t>(lr)];
      req.cpus = b.cpus;
      req.numa_node = b.numa_node;
      req.memory = b.bind_memory     ? MemoryPolicy::kBind
                   : b.prefer_memory ? MemoryPolicy::kPreferred
                                     : MemoryPolicy::kDefault;
    }
    Fd child_out, child_err;
    GW_RETURN_IF_ERROR(openStream(w, 0, dir, &req.stdout_fd, &child_out));
    GW_RETURN_IF_ERROR(openStream(w, 1, dir, &req.stderr_fd, &child_err));
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

void SupervisorImpl::signalWorkers(int sig) {
  for (const auto& w : workers_) {
    if (w.running) ::kill(-w.pid, sig);
  }
}

void SupervisorImpl::armDeadline(double seconds) {
  itimerspec spec{};
  const double s = std::max(seconds, 1e-6);
  spec.it_value.tv_sec = static_cast<time_t>(s);
  spec.it_value.tv_nsec = static_cast<long>((s - std::floor(s)) * 1e9);
  ::timerfd_settime(timer_fd_.get(), 0, &spec, nullptr);
}

void SupervisorImpl::disarmDeadline() {
  itimerspec spec{};
  ::timerfd_settime(timer_fd_.get(), 0, &spec, nullptr);
  uint64_t expirations = 0;
  (void)!::read(timer_fd_.get(), &expirations, sizeof(expirations));
}

void SupervisorImpl::readStream(Worker& w, int which, bool drain) {
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

void SupervisorImpl::closeStream(Worker& w, int which) {
  Stream& s = w.streams[which];
  if (s.pipe.valid()) {
    std::string out;
    s.prefixer->finish(out);
    if (!out.empty()) writeAll(s.console_fd, out);
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, s.pipe.get(), nullptr);
    s.pipe.reset();
  }
  s.file.reset();
}

void SupervisorImpl::reapChildren(bool stopping, std::vector<WorkerFailure>& failures) {
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

void SupervisorImpl::monitor(AttemptOutcome& outcome, std::vector<WorkerFailure>& failures) {
  bool stopping = false;
  bool killed = false;
  epoll_event events[32];
  while (liveWorkers() > 0) {
    const int n = ::epoll_wait(epoll_.get(), events, 32, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      log().error("epoll_wait: {}", std::strerror(errno));
      signalWorkers(SIGKILL);
      break;
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kSignalTag) {
        signalfd_siginfo si{};
        bool child = false;
        while (::read(signal_fd_.get(), &si, sizeof(si)) == sizeof(si)) {
          const int sig = static_cast<int>(si.ssi_signo);
          if (sig == SIGCHLD) {
            child = true;
          } else if (!outcome.agent_signal.has_value()) {
            outcome.agent_signal = sig;
            // Leave first (a pod being deleted): the other nodes are told this one is going
            // before its workers' exit breaks their collectives, so they re-form the job
            // without counting a failure against --max-restarts.
            if (client_ != nullptr && options_.rdzv_mode == RdzvMode::kEndpoint) {
              log().warn("received SIG{}: leaving the job", sigabbrev_np(sig));
              if (absl::Status s = client_->leave(absl::StrCat("SIG", sigabbrev_np(sig)));
                  !s.ok()) {
                log().warn("could not leave the rendezvous: {}", std::string(s.message()));
              }
            }
            log().warn("received SIG{}: forwarding it to the workers ({} s grace period)",
                       sigabbrev_np(sig), options_.grace_period_s);
            signalWorkers(sig);
            stopping = true;
            armDeadline(options_.grace_period_s);
          } else if (!killed) {
            log().warn("received SIG{} again: killing the workers", sigabbrev_np(sig));
            signalWorkers(SIGKILL);
            killed = true;
          }
        }
        if (child) {
          const std::size_t before = failures.size();
          reapChildren(stopping, failures);
          if (failures.size() > before && !stopping) {
            const WorkerFailure& f = failures[before];
            log().warn("worker rank {} (pid {}) failed with {}; stopping the other workers", f.rank,
                       f.pid, describeExit(f.wait_status));
            stopping = true;
            signalWorkers(SIGTERM);
            armDeadline(options_.grace_period_s);
          }
        }
      } else if (tag == kRdzvTag) {
        takeRendezvousEvents(stopping);
      } else if (tag == kTimerTag) {
        uint64_t expirations = 0;
        (void)!::read(timer_fd_.get(), &expirations, sizeof(expirations));
        log().warn("{} worker(s) still running {} s after SIGTERM: sending SIGKILL", liveWorkers(),
                   options_.grace_period_s);
        signalWorkers(SIGKILL);
        killed = true;
      } else {
        const uint64_t idx = tag - kStreamTagBase;
        if (idx / 2 < workers_.size())
          readStream(workers_[idx / 2], static_cast<int>(idx % 2), false);
      }
    }
  }
  disarmDeadline();
  if (!failures.empty()) outcome.failure_status = failures[rootCauseIndex(failures)].wait_status;
  outcome.all_succeeded = failures.empty() && !outcome.agent_signal.has_value();
  for (const auto& w : workers_) {
    if (!(WIFEXITED(w.status) && WEXITSTATUS(w.status) == 0)) outcome.all_succeeded = false;
  }
  // Output still buffered in pipes (a grandchild that left the group may hold one open).
  for (auto& w : workers_) {
    for (int which = 0; which < 2; ++which) {
      readStream(w, which, /*drain=*/true);
      closeStream(w, which);
    }
  }
}

void SupervisorImpl::stopAndReap() {
  signalWorkers(SIGKILL);
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

void SupervisorImpl::cleanup() {
  if (cleaned_) return;
  cleaned_ = true;
  if (!workers_.empty()) stopAndReap();
  client_.reset();  // stops its threads
  server_.reset();  // host mode: the rendezvous ends with this agent
  // Descendants that escaped their process group and were re-parented here.
  const pid_t watchdog_pid = watchdog_ != nullptr ? watchdog_->pid() : -1;
  for (int pass = 0; pass < 8; ++pass) {
    std::vector<pid_t> children = listChildren();
    std::erase(children, watchdog_pid);
    if (children.empty()) break;
    for (pid_t pid : children) ::kill(pid, SIGKILL);
    for (pid_t pid : children) ::waitpid(pid, nullptr, 0);
  }
  watchdog_.reset();
  if (!keep_logs_ && !log_root_.empty()) {
    std::error_code ec;
    fs::remove_all(log_root_, ec);
  }
}

int SupervisorImpl::run() {
  if (keep_logs_) log().info("worker logs and error files: {}", log_root_.string());
  const int code = options_.rdzv_mode == RdzvMode::kLocal ? runLocal() : runRendezvous();
  cleanup();
  return code;
}

int SupervisorImpl::runLocal() {
  for (int restart = 0;; ++restart) {
    RoundInfo round;
    round.round = restart;
    round.restart_count = restart;
    round.master_addr = options_.master_addr;
    round.master_port = options_.master_port;
    if (round.master_port == 0) {
      auto port = pickFreePort(options_.master_addr);
      if (!port.ok()) {
        std::fprintf(stderr, "gangway run: error: %s\n",
                     std::string(port.status().message()).c_str());
        return 2;
      }
      round.master_port = *port;
    }
    round.world_size = options_.nproc_per_node;
    if (absl::Status st = startWorkers(round); !st.ok()) {
      std::fprintf(stderr, "gangway run: error: %s\n", std::string(st.message()).c_str());
      return 2;
    }
    AttemptOutcome outcome;
    std::vector<WorkerFailure> failures;
    monitor(outcome, failures);
    const Decision decision = decide(outcome, restart, options_.max_restarts);
    switch (decision) {
      case Decision::kSucceed:
        return 0;
      case Decision::kRestart: {
        const WorkerFailure& f = failures[rootCauseIndex(failures)];
        log().warn("restarting all workers after rank {} failed with {} (restart {} of {})", f.rank,
                   describeExit(f.wait_status), restart + 1, options_.max_restarts);
        continue;
      }
      case Decision::kFail:
        if (!failures.empty()) writeAll(2, formatFailureSummary(options_.script, host_, failures));
        return jobExitCode(decision, outcome);
      case Decision::kStopBySignal:
        log().warn("workers stopped after SIG{}", sigabbrev_np(*outcome.agent_signal));
        return jobExitCode(decision, outcome);
    }
  }
}

absl::Status SupervisorImpl::connectRendezvous() {
  RendezvousClientOptions c;
  c.job_id = options_.run_id;
  c.agent_id = !options_.agent_id.empty()
                   ? options_.agent_id
                   : absl::StrCat(host_, "-", ::getpid(), "-", options_.run_id.substr(0, 8),
                                  std::random_device()());
  c.local_world_size = options_.nproc_per_node;
  c.min_nodes = options_.nnodes_min;
  c.max_nodes = options_.nnodes_max;
  c.max_restarts = options_.max_restarts;
  if (options_.static_node_rank) c.node_rank = options_.node_rank;
  c.rank_hint = options_.rank_hint;
  c.gpu_count = static_cast<int>(topology_.gpus.size());
  c.network_path = topology_.network_path.empty() ? options_.network_path : topology_.network_path;
  c.nvlink_domain = topology_.nvlink_domain;
  c.parallelism = options_.parallelism;
  c.token = options_.token;
  c.tls_ca_file = options_.tls_ca_file;
  c.join_timeout = absl::Seconds(options_.join_timeout_s);
  c.scheduled = options_.scheduled;

  scheduler::ServerOptions server;
  server.rendezvous.join_timeout = absl::Seconds(options_.join_timeout_s);
  server.rendezvous.last_call = absl::Seconds(options_.last_call_timeout_s);
  server.rendezvous.heartbeat_timeout = absl::Seconds(options_.heartbeat_timeout_s);
  server.rendezvous.heartbeat_interval =
      std::min(absl::Seconds(1), absl::Seconds(options_.heartbeat_timeout_s) / 3);
  server.tls_cert_file = options_.tls_cert_file;
  server.tls_key_file = options_.tls_key_file;
  if (options_.rdzv_mode == RdzvMode::kStandalone) {
    server.listen = "127.0.0.1:0";
    auto s = scheduler::ControlPlaneServer::start(server);
    if (!s.ok()) return s.status();
    server_ = *std::move(s);
    endpoint_ = server_->address();
    c.address = "127.0.0.1";
  } else {
    GW_ASSIGN_OR_RETURN(auto hp, splitHostPort(options_.rdzv_endpoint, 29400));
    const bool v6 = hp.first.find(':') != std::string::npos;
    endpoint_ =
        v6 ? absl::StrCat("[", hp.first, "]:", hp.second) : absl::StrCat(hp.first, ":", hp.second);
    if (!options_.local_addr.empty()) {
      c.address = options_.local_addr;
    } else {
      GW_ASSIGN_OR_RETURN(c.address, routeAddressTo(endpoint_));
    }
    // Host mode: the endpoint is one of this machine's addresses and nobody serves it yet
    // (or --rdzv-conf is_host= says so).
    if (options_.is_host.value_or(canBind(hp.first, hp.second))) {
      server.listen = endpoint_;
      scheduler::installGrpcLogging();
      std::optional<scheduler::QuietGrpcErrors> quiet;
      if (!options_.is_host.has_value()) quiet.emplace();  // another agent may win the port
      auto s = scheduler::ControlPlaneServer::start(server);
      quiet.reset();
      if (s.ok()) {
        server_ = *std::move(s);
        log().info("hosting the rendezvous of job {} at {}", options_.run_id, endpoint_);
      } else if (options_.is_host.value_or(false)) {
        return s.status();
      }
    }
  }
  c.endpoint = endpoint_;
  socket_ifname_ = interfaceOf(c.address);
  scheduler::installGrpcLogging();
  GW_ASSIGN_OR_RETURN(client_, RendezvousClient::connect(c));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kRdzvTag;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, client_->eventFd(), &ev) != 0) {
    return GW_ERRNO("epoll_ctl");
  }
  if (options_.rdzv_mode == RdzvMode::kStandalone) return absl::OkStatus();
  log().info("joined job {} at {} as {} ({} workers, --nnodes {}:{})", options_.run_id, endpoint_,
             c.address, options_.nproc_per_node, options_.nnodes_min, options_.nnodes_max);
  return absl::OkStatus();
}

void SupervisorImpl::takeRendezvousEvents(bool& stopping) {
  while (auto e = client_->next()) {
    const bool same_round = e->event.has_value() && e->event->has_assignment() &&
                            e->event->assignment().round() == current_round_;
    if (same_round) continue;  // a replay of the round the workers run
    pending_.push_back(std::move(*e));
    if (!stopping) {
      log().info("rendezvous: {}; stopping the workers",
                 pending_.back().event.has_value()
                     ? (pending_.back().event->has_assignment() ? "a new round"
                        : pending_.back().event->has_stop() ? pending_.back().event->stop().reason()
                                                            : "the job ended")
                     : pending_.back().lost);
      stopping = true;
      signalWorkers(SIGTERM);
      armDeadline(options_.grace_period_s);
    }
  }
}

std::variant<ClientEvent, int> SupervisorImpl::waitIdle() {
  for (;;) {
    if (!pending_.empty()) {
      ClientEvent e = std::move(pending_.front());
      pending_.pop_front();
      return e;
    }
    if (auto e = client_->next()) return *std::move(e);
    epoll_event events[8];
    const int n = ::epoll_wait(epoll_.get(), events, 8, -1);
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 != kSignalTag) continue;
      signalfd_siginfo si{};
      while (::read(signal_fd_.get(), &si, sizeof(si)) == sizeof(si)) {
        const int sig = static_cast<int>(si.ssi_signo);
        if (sig == SIGCHLD) {
          std::vector<WorkerFailure> ignored;
          reapChildren(true, ignored);
        } else {
          return sig;
        }
      }
    }
  }
}

RoundInfo SupervisorImpl::roundFromAssignment(const v1::Assignment& a) const {
  RoundInfo round;
  round.round = static_cast<int>(a.round());
  round.restart_count = a.restart_count();
  round.master_addr = a.master_addr();
  round.master_port = a.master_port();
  round.group_rank = a.node_rank();
  round.group_world_size = a.num_nodes();
  round.world_size = a.world_size();
  round.rank_offset = a.rank_offset();
  round.store = endpoint_;
  round.socket_ifname = socket_ifname_;
  return round;
}

int SupervisorImpl::runRendezvous() {
  if (absl::Status s = connectRendezvous(); !s.ok()) {
    std::fprintf(stderr, "gangway run: error: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  int last_local_failure = 0;  // exit code of this node's last worker failure
  for (;;) {
    auto next = waitIdle();
    if (const int* sig = std::get_if<int>(&next)) {
      log().warn("received SIG{}: leaving the job", sigabbrev_np(*sig));
      (void)client_->leave(absl::StrCat("SIG", sigabbrev_np(*sig)));
      return 128 + *sig;
    }
    ClientEvent& e = std::get<ClientEvent>(next);
    if (!e.event.has_value()) {
      std::fprintf(stderr, "gangway run: error: %s\n", e.lost.c_str());
      return 1;
    }
    if (e.event->has_stop()) continue;  // no workers run: wait for the next round
    if (e.event->has_job_end()) {
      const v1::JobEnd& end = e.event->job_end();
      if (end.succeeded()) {
        log().debug("job {} succeeded: {}", options_.run_id, end.reason());
        return 0;
      }
      std::fprintf(stderr, "gangway run: job %s failed: %s\n", options_.run_id.c_str(),
                   end.reason().c_str());
      return last_local_failure != 0 ? last_local_failure : 1;
    }
    // An assignment. Skip it if a newer event is already waiting.
    if (!pending_.empty()) continue;
    v1::Assignment a = e.event->assignment();
    if (a.choose_master_port()) {
      int port = options_.master_port;
      if (port == 0) {
        auto picked = pickFreePort(a.master_addr());
        if (!picked.ok()) {
          std::fprintf(stderr, "gangway run: error: %s\n",
                       std::string(picked.status().message()).c_str());
          return 1;
        }
        port = *picked;
      }
      if (absl::Status s = client_->publishMasterPort(a.round(), port); !s.ok()) {
        log().warn("could not publish MASTER_PORT for round {}: {}", a.round(),
                   std::string(s.message()));
        continue;
      }
      a.set_master_port(port);
    }
    current_round_ = a.round();
    client_->setCurrentRound(a.round(), a.node_rank());
    if (absl::Status st = startWorkers(roundFromAssignment(a)); !st.ok()) {
      std::fprintf(stderr, "gangway run: error: %s\n", std::string(st.message()).c_str());
      (void)client_->leave("its workers could not be started");
      return 2;
    }
    AttemptOutcome outcome;
    std::vector<WorkerFailure> failures;
    monitor(outcome, failures);
    if (outcome.agent_signal.has_value()) {
      log().warn("workers stopped after SIG{}; leaving the job",
                 sigabbrev_np(*outcome.agent_signal));
      (void)client_->leave(absl::StrCat("SIG", sigabbrev_np(*outcome.agent_signal)));
      return 128 + *outcome.agent_signal;
    }
    if (!pending_.empty()) continue;  // stopped for a rendezvous event: handle it next
    if (!failures.empty()) {
      const WorkerFailure& f = failures[rootCauseIndex(failures)];
      last_local_failure = exitCodeOf(f.wait_status);
      writeAll(2, formatFailureSummary(options_.script, host_, failures));
      const std::string line = absl::StrCat(
          "rank ", f.rank, " on ", host_, " failed with ", describeExit(f.wait_status),
          f.report.has_value() && !f.report->message.empty() ? ": " + f.report->message : "");
      (void)client_->report(a.round(), false, line);
    } else {
      (void)client_->report(a.round(), true, "");
    }
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Supervisor>> Supervisor::create(RunOptions options,
                                                               EnvMap base_env) {
  auto s = std::make_unique<SupervisorImpl>(std::move(options), std::move(base_env));
  GW_RETURN_IF_ERROR(s->init());
  return s;
}

}  // namespace gangway::launcher
