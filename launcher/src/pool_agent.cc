#include "gangway/launcher/pool_agent.h"

#include <csignal>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>
#include <absl/strings/strip.h>
#include <absl/synchronization/mutex.h>
#include <absl/time/clock.h>

#include "gangway/common/fd.h"
#include "gangway/common/file.h"
#include "gangway/common/host_port.h"
#include "gangway/common/hostname.h"
#include "gangway/common/log.h"
#include "gangway/common/status.h"
#include "gangway/common/text.h"
#include "gangway/launcher/run_options.h"
#include "gangway/scheduler/client/agent_session.h"
#include "gangway/scheduler/client/channel.h"
#include "gangway/topology/network_path.h"
#include "gangway/v1/cluster.grpc.pb.h"

#include "network.h"
#include "process.h"
#include "work_dir.h"

extern char** environ;

namespace gangway::launcher {
namespace {

Logger& log() {
  static Logger& l = logger("agent");
  return l;
}

struct AgentOptions {
  std::vector<std::string> schedulers;  // tried in turn
  std::string node_id;
  std::string address;
  int gpus = 0;
  std::string network_path;
  std::string nvlink_domain;
  std::string token;       // the admin token (older clusters registered nodes with it)
  std::string join_token;  // the cluster's join token
  std::string tls_ca;
  absl::Duration reconnect_timeout = absl::Seconds(600);
  absl::Duration grace = absl::Seconds(30);
};

// One `gangway run` this agent started.
struct Run {
  pid_t pid = 0;
  int64_t generation = 0;
  bool releasing = false;
  absl::Time kill_at = absl::InfiniteFuture();
};

constexpr absl::Duration kRegisterTimeout = absl::Seconds(5);
constexpr absl::Duration kReportTimeout = absl::Seconds(5);

class PoolAgent final : private scheduler::AgentSession::Calls {
 public:
  PoolAgent(AgentOptions options, WorkRoot work, std::string program)
      : options_(std::move(options)),
        work_(std::move(work)),
        program_(std::move(program)),
        session_({.endpoints = options_.schedulers,
                  .tls_ca_file = options_.tls_ca,
                  .token = options_.token,
                  .join_token = options_.join_token,
                  .peer = "scheduler",
                  .joined = "the scheduler",
                  .log_component = "agent",
                  .attempt_timeout = kRegisterTimeout,
                  .rejoin = true,
                  .rejoin_timeout = options_.reconnect_timeout},
                 *this) {}

  int run(const sigset_t& stop_signals) {
    std::thread signals([this, stop_signals] {
      int sig = 0;
      sigwait(&stop_signals, &sig);
      log().info("received SIG{}: stopping", sigabbrev_np(sig));
      {
        absl::MutexLock lock(&mu_);
        stopping_ = true;
      }
      session_.cancel();
    });
    signals.detach();

    if (absl::Status s = session_.join(options_.reconnect_timeout); !s.ok()) {
      if (!absl::IsCancelled(s)) printError(s);
      return shutdown(1);
    }
    session_.start();
    const int code = loop();
    session_.cancel();
    return shutdown(code);
  }

 private:
  // "gangway agent: error: ..." for a scheduler that stayed unreachable, or refused this node
  // (any other answer: the session retries only Unavailable and DeadlineExceeded, and --tls-ca
  // was read before).
  void printError(const absl::Status& s) {
    if (absl::IsUnavailable(s)) {
      std::fprintf(stderr, "gangway agent: error: %s\n", std::string(s.message()).c_str());
    } else {
      std::fprintf(stderr, "gangway agent: error: the scheduler at %s refused node %s: %s\n",
                   session_.endpoint().c_str(), options_.node_id.c_str(),
                   std::string(s.message()).c_str());
    }
  }

  // AgentSession::Calls: the Cluster service's RegisterNode, WatchNode and NodeHeartbeat.
  absl::StatusOr<absl::Duration> join(const std::string& endpoint,
                                      const std::shared_ptr<grpc::Channel>& channel,
                                      grpc::ClientContext& ctx) override {
    v1::RegisterNodeRequest req;
    req.set_node_id(options_.node_id);
    req.set_address(options_.address);
    req.mutable_topology()->set_gpu_count(options_.gpus);
    req.mutable_topology()->set_network_path(options_.network_path);
    req.mutable_topology()->set_nvlink_domain(options_.nvlink_domain);
    req.mutable_topology()->set_hostname(hostName());
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [job, run] : runs_) req.add_running_jobs(job);
    }
    v1::RegisterNodeResponse resp;
    GW_RETURN_IF_ERROR(
        scheduler::fromGrpc(v1::Cluster::NewStub(channel)->RegisterNode(&ctx, req, &resp)));
    log().info("node {} registered with the scheduler at {}", options_.node_id, endpoint);
    return absl::Milliseconds(resp.heartbeat_interval_ms());
  }

  absl::Status watch(const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext& ctx,
                     bool* /*final_event*/) override {
    v1::WatchNodeRequest req;
    req.set_node_id(options_.node_id);
    auto stub = v1::Cluster::NewStub(channel);
    auto reader = stub->WatchNode(&ctx, req);
    v1::NodeEvent event;
    while (reader->Read(&event)) {
      absl::MutexLock lock(&mu_);
      events_.push_back(event);
    }
    return scheduler::fromGrpc(reader->Finish());
  }

  absl::Status heartbeat(const std::shared_ptr<grpc::Channel>& channel,
                         grpc::ClientContext& ctx) override {
    v1::NodeHeartbeatRequest req;
    req.set_node_id(options_.node_id);
    v1::NodeHeartbeatResponse resp;
    return scheduler::fromGrpc(v1::Cluster::NewStub(channel)->NodeHeartbeat(&ctx, req, &resp));
  }

  void lost(const std::string& why, const absl::Status& rejoin) override {
    printError(rejoin.ok() ? absl::UnavailableError(why) : rejoin);
    absl::MutexLock lock(&mu_);
    lost_ = true;
  }

  // The agent's main loop: carries out orders, reaps runs, enforces grace periods.
  int loop() {
    for (;;) {
      std::deque<v1::NodeEvent> events;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this] { return stopping_ || lost_ || !events_.empty(); };
        // Runs are reaped by polling: their exits are not ordered with the orders' stream.
        mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(100));
        if (stopping_) return 0;
        if (lost_) return 1;
        events.swap(events_);
      }
      for (const v1::NodeEvent& e : events) {
        if (e.has_launch()) launch(e.launch());
        if (e.has_release()) release(e.release().job_id(), e.release().reason());
      }
      reap();
      const absl::Time now = absl::Now();
      absl::MutexLock lock(&mu_);
      for (auto& [job, run] : runs_) {
        if (run.releasing && now >= run.kill_at) {
          log().warn("job {}: gangway run (pid {}) still alive after {}: SIGKILL", job, run.pid,
                     absl::FormatDuration(options_.grace));
          ::kill(-run.pid, SIGKILL);
          ::kill(run.pid, SIGKILL);
          run.kill_at = absl::InfiniteFuture();
        }
      }
    }
  }

  void launch(const v1::Launch& l) {
    {
      absl::MutexLock lock(&mu_);
      auto it = runs_.find(l.job_id());
      if (it != runs_.end() && it->second.generation == l.generation() && !it->second.releasing) {
        return;  // already running it (a replay after registering again)
      }
      // Another job, or an older run of this one, is still here: stop it first.
      std::vector<std::string> others;
      for (const auto& [job, run] : runs_) others.push_back(job);
      if (!others.empty()) {
        for (const std::string& job : others) {
          releaseLocked(job, "another job was launched on this node");
        }
        deferred_ = l;
        return;
      }
    }
    start(l);
  }

  // The `gangway run` command line for a Launch: joined to the job's rendezvous on the scheduler
  // as this node, with the job's size and command.
  absl::StatusOr<std::vector<std::string>> runArgs(const v1::Launch& l,
                                                   const std::string& token_file) const {
    const v1::JobSpec& spec = l.spec();
    std::string conf = absl::StrCat("agent_id=", options_.node_id, ",scheduled=true,is_host=false");
    if (!l.token().empty()) absl::StrAppend(&conf, ",token_file=", token_file);
    if (!options_.tls_ca.empty()) absl::StrAppend(&conf, ",tls_ca=", options_.tls_ca);
    std::vector<std::pair<std::string, std::string>> flags = {
        {"rdzv-backend", "c10d"},
        {"rdzv-endpoint", session_.endpoint()},
        {"rdzv-id", l.job_id()},
        {"nnodes", absl::StrCat(spec.min_nodes(), ":", spec.max_nodes())},
        {"nproc-per-node", absl::StrCat(spec.nproc_per_node())},
        {"max-restarts", absl::StrCat(spec.max_restarts())},
        {"local-addr", options_.address},
        {"rdzv-conf", conf}};
    if (!options_.network_path.empty()) flags.emplace_back("network-path", options_.network_path);
    if (spec.no_python()) flags.emplace_back("no-python", "1");
    GW_ASSIGN_OR_RETURN(std::vector<std::string> args,
                        toRunArgs(flags, {spec.command().begin(), spec.command().end()}));
    args.insert(args.begin(), {"gangway", "run"});
    return args;
  }

  void start(const v1::Launch& l) {
    // The job's token goes to WORK/JOB/token, 0600 from the start; the job id is a name.
    std::string token_file;
    absl::Status prepared;
    if (!l.token().empty()) {
      auto written = work_.writeJobFile(l.job_id(), "token", absl::StrCat(l.token(), "\n"));
      prepared = written.status();
      if (written.ok()) token_file = *std::move(written);
    }
    SpawnRequest req;
    if (prepared.ok()) {
      auto argv = runArgs(l, token_file);
      prepared = argv.status();
      if (argv.ok()) req.argv = *std::move(argv);
    }
    req.program = program_;
    for (char** e = environ; *e != nullptr; ++e) req.env.emplace_back(*e);
    auto pid = prepared.ok() ? spawnProcess(req) : absl::StatusOr<pid_t>(prepared);
    if (!pid.ok()) {
      log().error("job {}: cannot start gangway run: {}", l.job_id(),
                  std::string(pid.status().message()));
      reportExit(l.job_id(), l.generation(), 127, std::string(pid.status().message()));
      return;
    }
    log().info("job {}: started gangway run (pid {}, generation {})", l.job_id(), *pid,
               l.generation());
    absl::MutexLock lock(&mu_);
    runs_[l.job_id()] = Run{.pid = *pid, .generation = l.generation()};
  }

  void release(const std::string& job, const std::string& reason) {
    absl::MutexLock lock(&mu_);
    releaseLocked(job, reason);
  }
  void releaseLocked(const std::string& job, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (deferred_.has_value() && deferred_->job_id() == job) deferred_.reset();
    auto it = runs_.find(job);
    if (it == runs_.end() || it->second.releasing) return;
    log().info("job {}: released ({}): SIGTERM to gangway run (pid {})", job, reason,
               it->second.pid);
    ::kill(it->second.pid, SIGTERM);
    it->second.releasing = true;
    it->second.kill_at = absl::Now() + options_.grace;
  }

  void reap() {
    for (;;) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      std::string job;
      int64_t generation = 0;
      bool released = false;
      {
        absl::MutexLock lock(&mu_);
        for (auto it = runs_.begin(); it != runs_.end(); ++it) {
          if (it->second.pid != pid) continue;
          job = it->first;
          generation = it->second.generation;
          released = it->second.releasing;
          runs_.erase(it);
          break;
        }
      }
      if (job.empty()) continue;
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      log().info("job {}: gangway run exited with code {}{}", job, code,
                 released ? " (released)" : "");
      ::kill(-pid, SIGKILL);  // anything its group left behind
      if (!released) reportExit(job, generation, code, code == 0 ? "" : "see the node's log");
    }
    std::optional<v1::Launch> next;
    {
      absl::MutexLock lock(&mu_);
      if (deferred_.has_value() && runs_.empty()) {
        next = std::move(deferred_);
        deferred_.reset();
      }
    }
    if (next.has_value()) start(*next);
  }

  void reportExit(const std::string& job, int64_t generation, int code, const std::string& msg) {
    v1::ReportExitRequest req;
    req.set_node_id(options_.node_id);
    req.set_job_id(job);
    req.set_generation(generation);
    req.set_exit_code(code);
    req.set_message(msg);
    v1::ReportExitResponse resp;
    auto ctx = session_.context(kReportTimeout);
    const grpc::Status s =
        v1::Cluster::NewStub(session_.channel())->ReportExit(ctx.get(), req, &resp);
    if (!s.ok()) log().warn("job {}: cannot report its exit: {}", job, s.error_message());
  }

  // Stops every run (SIGTERM, then SIGKILL after the grace period) and returns `code`.
  int shutdown(int code) {
    {
      absl::MutexLock lock(&mu_);
      std::vector<std::string> jobs;
      for (const auto& [job, run] : runs_) jobs.push_back(job);
      for (const std::string& job : jobs) releaseLocked(job, "the agent is stopping");
    }
    const absl::Time deadline = absl::Now() + options_.grace;
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        if (runs_.empty()) break;
        if (absl::Now() >= deadline) {
          for (const auto& [job, run] : runs_) ::kill(-run.pid, SIGKILL);
        }
      }
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, 0);
      if (pid < 0) break;
      absl::MutexLock lock(&mu_);
      for (auto it = runs_.begin(); it != runs_.end(); ++it) {
        if (it->second.pid == pid) {
          runs_.erase(it);
          break;
        }
      }
    }
    return code;
  }

  const AgentOptions options_;
  WorkRoot work_;
  const std::string program_;  // this gangway binary, which the runs execute
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<v1::NodeEvent> events_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Run> runs_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::Launch> deferred_ ABSL_GUARDED_BY(mu_);
  // Last: its threads call back into the members above, and stop before they are destroyed.
  scheduler::AgentSession session_;
};

}  // namespace

void addAgentFlags(CLI::App& app) {
  app.add_option("--scheduler")
      ->description("The cluster scheduler, HOST:PORT[,HOST:PORT...] (replicas tried in turn).")
      ->type_name("ADDR");
  app.add_option("--node-id")
      ->description("This node's name in the scheduler. [default: the hostname]")
      ->type_name("ID");
  app.add_option("--address")
      ->description(
          "The address other nodes reach this one at. [default: the one that routes to the "
          "scheduler]")
      ->type_name("IP");
  app.add_option("--gpus")
      ->description("GPUs this node offers. [default: the GPUs the driver reports]")
      ->type_name("N");
  app.add_option("--network-path")
      ->description(
          "The node's switch path, top first (spine2/leaf7), for topology-aware "
          "placement.")
      ->type_name("PATH");
  app.add_option("--network-path-map")
      ->description(
          "When no --network-path is given: a file of 'NODE PATH' lines (e.g. made from a "
          "Kubernetes node label) in which --node-id is looked up.")
      ->type_name("FILE");
  app.add_option("--nvlink-domain")
      ->description("The node's NVLink domain (multi-node NVLink systems).")
      ->type_name("ID");
  app.add_option("--join-token-file")
      ->description(
          "File holding the cluster's join token (the scheduler's --join-token-file; from a "
          "Kubernetes Secret). Mode 0600, or 0640 with an fsGroup.")
      ->type_name("PATH");
  app.add_option("--token-file")
      ->description("File holding the scheduler's admin token (instead of a join token).")
      ->type_name("PATH");
  app.add_option("--tls-ca")
      ->description("PEM roots: talk TLS to the scheduler.")
      ->type_name("PATH");
  app.add_option("--work-dir")
      ->description(
          "Where the agent keeps per-job files (job tokens): a directory it owns, mode 0700, made "
          "if missing. [default: /run/gangway/agent-NODE as root, "
          "$XDG_RUNTIME_DIR/gangway/agent-NODE otherwise, else a new private one in $TMPDIR]")
      ->type_name("DIR");
  app.add_option("--reconnect-timeout")
      ->description(
          "Seconds to keep trying to reach the scheduler (at start, or after losing it) while "
          "the jobs run on. [default: 600]")
      ->type_name("SECONDS");
  app.add_option("--grace-period")
      ->description("Seconds a released job has to stop before SIGKILL. [default: 30]")
      ->type_name("SECONDS");
}

int runAgent(const CLI::App& app) {
  auto usage = [](const std::string& m) {
    std::fprintf(stderr, "gangway agent: error: %s\n", m.c_str());
    return 2;
  };
  auto opt = [&](const char* name) {
    const CLI::Option* o = app.get_option(name);
    return o->count() > 0 ? o->as<std::string>() : std::string();
  };
  AgentOptions o;
  const std::string sched = opt("--scheduler");
  if (sched.empty()) return usage("--scheduler is required (HOST:PORT of gangway scheduler)");
  for (absl::string_view s : absl::StrSplit(sched, ',', absl::SkipWhitespace())) {
    o.schedulers.emplace_back(absl::StripAsciiWhitespace(s));
  }
  o.node_id = opt("--node-id").empty() ? hostName() : opt("--node-id");
  if (!isName(o.node_id, 128)) {
    return usage(
        absl::StrCat("--node-id '", escapeLine(o.node_id, 64), "': expected ", nameRule(128)));
  }
  o.address = opt("--address");
  if (!o.address.empty() && !isHostOrAddress(o.address)) {
    return usage(absl::StrCat("--address '", escapeLine(o.address, 64),
                              "': expected an IPv4 or IPv6 address or a host name"));
  }
  if (o.address.empty()) {
    auto scheduler = parseHostPort(o.schedulers[0], "--scheduler", kDefaultControlPlanePort);
    if (!scheduler.ok()) return usage(std::string(scheduler.status().message()));
    auto addr = routeAddressTo(*scheduler);
    if (!addr.ok()) return usage(std::string(addr.status().message()));
    o.address = *addr;
  }
  if (const std::string g = opt("--gpus"); !g.empty()) {
    if (!absl::SimpleAtoi(g, &o.gpus) || o.gpus < 0) {
      return usage(absl::StrCat("--gpus '", g, "': expected a number >= 0"));
    }
  } else {
    o.gpus = probeHost().gpu_count;
  }
  o.network_path = opt("--network-path");
  if (const std::string map = opt("--network-path-map"); !map.empty() && o.network_path.empty()) {
    auto path = topology::lookupNetworkPath(map, o.node_id);
    if (path.ok()) {
      o.network_path = *path;
    } else if (absl::IsNotFound(path.status())) {
      log().warn("no network path for this node: {}", std::string(path.status().message()));
    } else {
      return usage(absl::StrCat("--network-path-map: ", path.status().message()));
    }
  }
  o.nvlink_domain = opt("--nvlink-domain");
  if (const std::string f = opt("--token-file"); !f.empty()) {
    auto token = readSecretFile(f, "--token-file");
    if (!token.ok()) return usage(std::string(token.status().message()));
    o.token = *std::move(token);
  }
  if (const std::string f = opt("--join-token-file"); !f.empty()) {
    auto token = readSecretFile(f, "--join-token-file");
    if (!token.ok()) return usage(std::string(token.status().message()));
    o.join_token = *std::move(token);
  }
  o.tls_ca = opt("--tls-ca");
  if (!o.tls_ca.empty()) {
    if (auto pem = readFile(o.tls_ca, "--tls-ca"); !pem.ok()) {
      return usage(std::string(pem.status().message()));
    }
  }
  for (auto [name, target] : {std::pair{"--reconnect-timeout", &o.reconnect_timeout},
                              std::pair{"--grace-period", &o.grace}}) {
    if (const std::string t = opt(name); !t.empty()) {
      double v = 0;
      if (!absl::SimpleAtod(t, &v) || !(v > 0) || v > 1e7) {
        return usage(absl::StrCat(name, " '", t, "': expected a positive number of seconds"));
      }
      *target = absl::Seconds(v);
    }
  }
  std::string work_dir = opt("--work-dir");
  if (work_dir.empty()) work_dir = defaultWorkRoot(o.node_id);
  auto work = work_dir.empty() ? WorkRoot::makeTemporary(o.node_id) : WorkRoot::open(work_dir);
  if (!work.ok()) return usage(std::string(work.status().message()));

  ensureStdFdsOpen();
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  scheduler::installGrpcLogging();

  std::error_code self_ec;
  std::string program = std::filesystem::read_symlink("/proc/self/exe", self_ec).string();
  if (self_ec) return usage("cannot find this program (/proc/self/exe)");
  PoolAgent agent(std::move(o), *std::move(work), std::move(program));
  return agent.run(mask);
}

}  // namespace gangway::launcher
