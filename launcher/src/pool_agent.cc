#include "gangway/launcher/pool_agent.h"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <sys/wait.h>

#include <CLI/CLI.hpp>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <absl/strings/strip.h>
#include <absl/synchronization/mutex.h>
#include <absl/time/clock.h>

#include "gangway/common/log.h"
#include "gangway/launcher/run_options.h"
#include "gangway/scheduler/client.h"
#include "gangway/scheduler/server.h"
#include "gangway/topology/discover.h"
#include "gangway/v1/cluster.grpc.pb.h"

#include "process.h"
#include "rendezvous_client.h"
#include <unistd.h>

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
  std::string token;
  std::string tls_ca;
  std::string work_dir;
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

class PoolAgent {
 public:
  explicit PoolAgent(AgentOptions o) : o_(std::move(o)) {}

  int run(const sigset_t& stop_signals) {
    std::thread signals([this, stop_signals] {
      int sig = 0;
      sigwait(&stop_signals, &sig);
      log().info("received SIG{}: stopping", sigabbrev_np(sig));
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      if (watch_ctx_ != nullptr) watch_ctx_->TryCancel();
    });
    signals.detach();

    if (!connect(absl::Now() + o_.reconnect_timeout)) return shutdown(1);
    std::thread watcher([this] { watchLoop(); });
    std::thread beater([this] { heartbeatLoop(); });
    const int code = loop();
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      if (watch_ctx_ != nullptr) watch_ctx_->TryCancel();
    }
    watcher.join();
    beater.join();
    return shutdown(code);
  }

 private:
  std::unique_ptr<grpc::ClientContext> context(absl::Duration timeout) const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!o_.token.empty()) ctx->AddMetadata(scheduler::kTokenMetadata, o_.token);
    if (timeout != absl::InfiniteDuration()) {
      ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    }
    return ctx;
  }

  bool stopping() {
    absl::MutexLock lock(&mu_);
    return stopping_;
  }

  // Registers with the first scheduler that answers, until `deadline`.
  bool connect(absl::Time deadline) {
    absl::Duration backoff = absl::Milliseconds(50);
    for (size_t attempt = 0;; ++attempt) {
      if (stopping()) return false;
      const std::string& endpoint = o_.schedulers[attempt % o_.schedulers.size()];
      auto channel = scheduler::makeChannel({.address = endpoint, .tls_ca_file = o_.tls_ca});
      if (!channel.ok()) {
        log().error("{}", std::string(channel.status().message()));
        return false;
      }
      std::shared_ptr<v1::Cluster::Stub> stub = v1::Cluster::NewStub(*channel);
      v1::RegisterNodeRequest req;
      req.set_node_id(o_.node_id);
      req.set_address(o_.address);
      req.mutable_topology()->set_gpu_count(o_.gpus);
      req.mutable_topology()->set_network_path(o_.network_path);
      req.mutable_topology()->set_nvlink_domain(o_.nvlink_domain);
      char host[256] = {};
      ::gethostname(host, sizeof(host) - 1);
      req.mutable_topology()->set_hostname(host);
      {
        absl::MutexLock lock(&mu_);
        for (const auto& [job, run] : runs_) req.add_running_jobs(job);
      }
      v1::RegisterNodeResponse resp;
      auto ctx = context(absl::Seconds(5));
      const grpc::Status s = stub->RegisterNode(ctx.get(), req, &resp);
      if (s.ok()) {
        absl::MutexLock lock(&mu_);
        stub_ = std::move(stub);
        endpoint_ = endpoint;
        heartbeat_interval_ =
            absl::Milliseconds(std::max<int64_t>(50, resp.heartbeat_interval_ms()));
        log().info("node {} registered with the scheduler at {}", o_.node_id, endpoint);
        return true;
      }
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
          s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
        std::fprintf(stderr, "gangway agent: error: the scheduler at %s refused node %s: %s\n",
                     endpoint.c_str(), o_.node_id.c_str(), s.error_message().c_str());
        return false;
      }
      if (absl::Now() + backoff > deadline) {
        std::fprintf(stderr,
                     "gangway agent: error: cannot reach the scheduler at %s within %s: %s\n",
                     absl::StrJoin(o_.schedulers, ",").c_str(),
                     absl::FormatDuration(o_.reconnect_timeout).c_str(), s.error_message().c_str());
        return false;
      }
      if (attempt % 10 == 0) {
        log().info("scheduler at {} not reachable yet ({}); retrying", endpoint, s.error_message());
      }
      absl::MutexLock lock(&mu_);
      auto stop = [this] { return stopping_; };
      mu_.AwaitWithTimeout(absl::Condition(&stop), backoff);  // backoff between attempts
      backoff = std::min(backoff * 2, absl::Seconds(2));
    }
  }

  void watchLoop() {
    for (;;) {
      grpc::ClientContext* ctx = nullptr;
      std::shared_ptr<v1::Cluster::Stub> stub;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
        watch_ctx_ = context(absl::InfiniteDuration());
        ctx = watch_ctx_.get();
        stub = stub_;
        ++watch_generation_;
      }
      v1::WatchNodeRequest req;
      req.set_node_id(o_.node_id);
      auto reader = stub->WatchNode(ctx, req);
      v1::NodeEvent event;
      while (reader->Read(&event)) {
        absl::MutexLock lock(&mu_);
        events_.push_back(event);
      }
      const grpc::Status s = reader->Finish();
      if (stopping()) return;
      log().warn("lost the scheduler at {} ({}); registering again for up to {}", endpoint_,
                 s.error_message(), absl::FormatDuration(o_.reconnect_timeout));
      if (!connect(absl::Now() + o_.reconnect_timeout)) {
        absl::MutexLock lock(&mu_);
        lost_ = true;
        return;
      }
    }
  }

  void heartbeatLoop() {
    for (;;) {
      std::shared_ptr<v1::Cluster::Stub> stub;
      absl::Duration interval;
      uint64_t generation = 0;
      {
        absl::MutexLock lock(&mu_);
        auto stop = [this] { return stopping_ || lost_; };
        if (mu_.AwaitWithTimeout(absl::Condition(&stop), heartbeat_interval_)) return;
        stub = stub_;
        interval = heartbeat_interval_;
        generation = watch_generation_;
      }
      v1::NodeHeartbeatRequest req;
      req.set_node_id(o_.node_id);
      v1::NodeHeartbeatResponse resp;
      auto ctx = context(interval * 2);
      const grpc::Status s = stub->NodeHeartbeat(ctx.get(), req, &resp);
      if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
        // The scheduler counts this node as lost (or restarted): register again, unless that
        // already happened since this heartbeat was sent.
        absl::MutexLock lock(&mu_);
        if (watch_ctx_ != nullptr && watch_generation_ == generation) watch_ctx_->TryCancel();
      }
    }
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
                     absl::FormatDuration(o_.grace));
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

  void start(const v1::Launch& l) {
    const std::string job_dir = absl::StrCat(o_.work_dir, "/", l.job_id());
    std::error_code ec;
    std::filesystem::create_directories(job_dir, ec);
    const std::string token_file = absl::StrCat(job_dir, "/token");
    {
      std::ofstream out(token_file, std::ios::trunc);
      out << l.token() << "\n";
    }
    ::chmod(token_file.c_str(), 0600);
    const v1::JobSpec& spec = l.spec();
    const std::string endpoint = [&] {
      absl::MutexLock lock(&mu_);
      return endpoint_;
    }();
    std::string conf = absl::StrCat("agent_id=", o_.node_id, ",scheduled=true,is_host=false");
    if (!l.token().empty()) absl::StrAppend(&conf, ",token_file=", token_file);
    if (!o_.tls_ca.empty()) absl::StrAppend(&conf, ",tls_ca=", o_.tls_ca);
    std::vector<std::string> argv = {
        "gangway",          "run",
        "--rdzv-backend",   "c10d",
        "--rdzv-endpoint",  endpoint,
        "--rdzv-id",        l.job_id(),
        "--nnodes",         absl::StrCat(spec.min_nodes(), ":", spec.max_nodes()),
        "--nproc-per-node", absl::StrCat(spec.nproc_per_node()),
        "--max-restarts",   absl::StrCat(spec.max_restarts()),
        "--local-addr",     o_.address,
        "--rdzv-conf",      conf};
    if (!o_.network_path.empty()) {
      argv.push_back("--network-path");
      argv.push_back(o_.network_path);
    }
    if (spec.no_python()) argv.push_back("--no-python");
    for (const std::string& a : spec.command()) argv.push_back(a);
    SpawnRequest req;
    req.program = self_;
    req.argv = argv;
    for (char** e = environ; *e != nullptr; ++e) req.env.emplace_back(*e);
    auto pid = spawnProcess(req);
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
    it->second.kill_at = absl::Now() + o_.grace;
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
    req.set_node_id(o_.node_id);
    req.set_job_id(job);
    req.set_generation(generation);
    req.set_exit_code(code);
    req.set_message(msg);
    std::shared_ptr<v1::Cluster::Stub> stub;
    {
      absl::MutexLock lock(&mu_);
      stub = stub_;
    }
    v1::ReportExitResponse resp;
    auto ctx = context(absl::Seconds(5));
    const grpc::Status s = stub->ReportExit(ctx.get(), req, &resp);
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
    const absl::Time deadline = absl::Now() + o_.grace;
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

 public:
  std::string self_;

 private:
  const AgentOptions o_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  // Shared with the calls in flight on other threads: connect() replaces it.
  std::shared_ptr<v1::Cluster::Stub> stub_ ABSL_GUARDED_BY(mu_);
  uint64_t watch_generation_ ABSL_GUARDED_BY(mu_) = 0;  // counts WatchNode streams
  std::string endpoint_ ABSL_GUARDED_BY(mu_);
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(1);
  std::unique_ptr<grpc::ClientContext> watch_ctx_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::NodeEvent> events_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Run> runs_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::Launch> deferred_ ABSL_GUARDED_BY(mu_);
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
  app.add_option("--token-file")
      ->description("File holding the scheduler's admin token.")
      ->type_name("PATH");
  app.add_option("--tls-ca")
      ->description("PEM roots: talk TLS to the scheduler.")
      ->type_name("PATH");
  app.add_option("--work-dir")
      ->description("Where the agent keeps per-job files. [default: $TMPDIR/gangway-agent-NODE]")
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
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  o.node_id = opt("--node-id").empty() ? host : opt("--node-id");
  o.address = opt("--address");
  if (o.address.empty()) {
    auto addr = routeAddressTo(o.schedulers[0]);
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
    std::ifstream in(f);
    std::stringstream content;
    content << in.rdbuf();
    o.token = std::string(absl::StripAsciiWhitespace(content.str()));
    if (!in || o.token.empty()) {
      return usage(absl::StrCat("--token-file '", f, "': cannot be read, or is empty"));
    }
  }
  o.tls_ca = opt("--tls-ca");
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
  o.work_dir = opt("--work-dir");
  if (o.work_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    o.work_dir =
        absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/gangway-agent-", o.node_id);
  }
  std::error_code ec;
  std::filesystem::create_directories(o.work_dir, ec);
  if (ec) return usage(absl::StrCat("--work-dir '", o.work_dir, "': ", ec.message()));
  ::chmod(o.work_dir.c_str(), 0700);

  ensureStdFdsOpen();
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  scheduler::installGrpcLogging();

  PoolAgent agent(o);
  std::error_code self_ec;
  agent.self_ = std::filesystem::read_symlink("/proc/self/exe", self_ec).string();
  if (self_ec) return usage("cannot find this program (/proc/self/exe)");
  return agent.run(mask);
}

}  // namespace gangway::launcher
