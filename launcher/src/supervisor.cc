#include "gangway/launcher/supervisor.h"

#include <deque>
#include <optional>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include <absl/cleanup/cleanup.h>
#include <absl/strings/str_cat.h>

#include "gangway/common/hostname.h"
#include "gangway/common/log.h"
#include "gangway/common/status.h"
#include "gangway/launcher/error_file.h"
#include "gangway/launcher/restart_policy.h"
#include "gangway/launcher/worker_env.h"

#include "console.h"
#include "event_loop.h"
#include "log_dir.h"
#include "network.h"
#include "node_binding.h"
#include "process.h"
#include "rendezvous_client.h"
#include "rendezvous_place.h"
#include "worker_group.h"

namespace gangway::launcher {
namespace {

Logger& log() {
  static Logger& l = logger("launcher");
  return l;
}

constexpr int kStopSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};

RunResult error(absl::string_view message, int exit_code = 2) {
  return {.exit_code = exit_code, .message = absl::StrCat("error: ", message)};
}

std::string describe(const RdzvEvent& e) {
  switch (e.kind) {
    case RdzvEvent::Kind::kRound:
      return "a new round";
    case RdzvEvent::Kind::kStop:
      return e.reason;
    case RdzvEvent::Kind::kEnd:
      return "the job ended";
    case RdzvEvent::Kind::kLost:
      return e.reason;
  }
  return e.reason;
}

class SupervisorImpl final : public Supervisor {
 public:
  SupervisorImpl(RunOptions options, EnvMap base_env)
      : options_(std::move(options)), base_env_(std::move(base_env)) {}
  ~SupervisorImpl() override { cleanup(); }

  absl::Status init();
  RunResult run() override;

 private:
  // One attempt: the workers of a round run until they all exit.
  struct Attempt {
    AttemptOutcome outcome;
    std::vector<WorkerFailure> failures;
    bool stopping = false;  // the workers were told to stop (SIGTERM, grace period, SIGKILL)
    bool killed = false;
  };

  RunResult runLocal();
  RunResult runRendezvous();
  absl::Status connectRendezvous();
  // Runs the workers of `round` to their end.
  absl::Status runAttempt(const RoundInfo& round, Attempt& attempt);
  void stopWorkers(Attempt& attempt, int sig);
  void onSignals(Attempt& attempt, const std::vector<int>& signals);
  // Rendezvous events while workers run: a new round, a stop or the job's end stops them.
  void onRendezvousEvents();
  // Waits, with no workers running, for the next rendezvous event or a stop signal.
  std::variant<RdzvEvent, int> waitIdle();
  RoundInfo roundOf(const RoundAssignment& a) const;
  void cleanup();

  RunOptions options_;
  EnvMap base_env_;
  std::string host_;
  NodeBinding node_;
  std::optional<LogDirectory> logs_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<WorkerGroup> group_;
  Attempt* attempt_ = nullptr;  // while workers run
  bool cleaned_ = false;
  // Rendezvous mode.
  RendezvousPlace place_;
  std::unique_ptr<RendezvousClient> client_;
  std::deque<RdzvEvent> pending_;  // events that arrived while workers ran
  int64_t current_round_ = 0;
};

absl::Status SupervisorImpl::init() {
  ensureStdFdsOpen();
  for (const std::string& note : options_.notes) log().warn("{}", note);
  ::signal(SIGPIPE, SIG_IGN);
  std::vector<int> signals(std::begin(kStopSignals), std::end(kStopSignals));
  signals.push_back(SIGCHLD);
  GW_ASSIGN_OR_RETURN(loop_, EventLoop::create(signals));
  host_ = hostName();
  GW_ASSIGN_OR_RETURN(LogDirectory logs, LogDirectory::create(options_));
  logs_.emplace(std::move(logs));
  GW_ASSIGN_OR_RETURN(node_, bindNode(options_, base_env_, host_));
  GW_ASSIGN_OR_RETURN(group_, WorkerGroup::create(options_, base_env_, node_.mapping, *loop_));
  return absl::OkStatus();
}

void SupervisorImpl::stopWorkers(Attempt& attempt, int sig) {
  group_->signal(sig);
  attempt.stopping = true;
  loop_->armDeadline(options_.grace_period_s);
}

void SupervisorImpl::onSignals(Attempt& attempt, const std::vector<int>& signals) {
  bool child = false;
  for (int sig : signals) {
    if (sig == SIGCHLD) {
      child = true;
    } else if (!attempt.outcome.agent_signal.has_value()) {
      attempt.outcome.agent_signal = sig;
      // Leave first (a pod being deleted): the other nodes are told this one is going before its
      // workers' exit breaks their collectives, so they re-form the job without counting a
      // failure against --max-restarts.
      if (client_ != nullptr && options_.rdzv_mode == RdzvMode::kEndpoint) {
        log().warn("received SIG{}: leaving the job", sigabbrev_np(sig));
        if (absl::Status s = client_->leave(absl::StrCat("SIG", sigabbrev_np(sig))); !s.ok()) {
          log().warn("could not leave the rendezvous: {}", std::string(s.message()));
        }
      }
      log().warn("received SIG{}: forwarding it to the workers ({} s grace period)",
                 sigabbrev_np(sig), options_.grace_period_s);
      stopWorkers(attempt, sig);
    } else if (!attempt.killed) {
      log().warn("received SIG{} again: killing the workers", sigabbrev_np(sig));
      group_->signal(SIGKILL);
      attempt.killed = true;
    }
  }
  if (!child) return;
  const std::size_t before = attempt.failures.size();
  group_->reap(attempt.stopping, attempt.failures);
  if (attempt.failures.size() > before && !attempt.stopping) {
    const WorkerFailure& f = attempt.failures[before];
    log().warn("worker rank {} (pid {}) failed with {}; stopping the other workers", f.rank, f.pid,
               describeExit(f.wait_status));
    stopWorkers(attempt, SIGTERM);
  }
}

void SupervisorImpl::onRendezvousEvents() {
  if (attempt_ == nullptr) return;  // idle: waitIdle() takes the events itself
  while (auto e = client_->next()) {
    const bool same_round = e->kind == RdzvEvent::Kind::kRound && e->round.round == current_round_;
    if (same_round) continue;  // a replay of the round the workers run
    pending_.push_back(*std::move(e));
    if (!attempt_->stopping) {
      log().info("rendezvous: {}; stopping the workers", describe(pending_.back()));
      stopWorkers(*attempt_, SIGTERM);
    }
  }
}

absl::Status SupervisorImpl::runAttempt(const RoundInfo& round, Attempt& attempt) {
  GW_RETURN_IF_ERROR(group_->start(round, logs_->nextAttempt()));
  attempt_ = &attempt;
  absl::Cleanup forget_handlers = [this] {
    attempt_ = nullptr;
    loop_->onSignals({});
    loop_->onDeadline({});
  };
  loop_->onSignals([this, &attempt](const std::vector<int>& s) { onSignals(attempt, s); });
  loop_->onDeadline([this, &attempt] {
    log().warn("{} worker(s) still running {} s after SIGTERM: sending SIGKILL", group_->running(),
               options_.grace_period_s);
    group_->signal(SIGKILL);
    attempt.killed = true;
  });
  while (group_->running() > 0) {
    if (absl::Status s = loop_->runOnce(); !s.ok()) {
      log().error("{}", std::string(s.message()));
      group_->signal(SIGKILL);
      break;
    }
  }
  loop_->disarmDeadline();
  AttemptOutcome& outcome = attempt.outcome;
  if (!attempt.failures.empty()) {
    outcome.failure_status = attempt.failures[rootCauseIndex(attempt.failures)].wait_status;
  }
  outcome.all_succeeded =
      attempt.failures.empty() && !outcome.agent_signal.has_value() && group_->allSucceeded();
  group_->drain();
  return absl::OkStatus();
}

std::variant<RdzvEvent, int> SupervisorImpl::waitIdle() {
  std::optional<int> stop_signal;
  loop_->onSignals([this, &stop_signal](const std::vector<int>& signals) {
    for (int sig : signals) {
      if (sig == SIGCHLD) {
        std::vector<WorkerFailure> ignored;
        group_->reap(true, ignored);
      } else if (!stop_signal.has_value()) {
        stop_signal = sig;
      }
    }
  });
  absl::Cleanup forget_handler = [this] { loop_->onSignals({}); };
  for (;;) {
    if (!pending_.empty()) {
      RdzvEvent e = std::move(pending_.front());
      pending_.pop_front();
      return e;
    }
    if (auto e = client_->next()) return *std::move(e);
    (void)loop_->runOnce();
    if (stop_signal.has_value()) return *stop_signal;
  }
}

void SupervisorImpl::cleanup() {
  if (cleaned_) return;
  cleaned_ = true;
  if (group_ != nullptr) group_->kill();
  client_.reset();        // stops its threads
  place_.hosted.reset();  // host mode: the rendezvous ends with this agent
  group_.reset();         // re-parented strays, then the watchdog
  if (logs_.has_value()) logs_->removeUnlessKept();
}

RunResult SupervisorImpl::run() {
  if (logs_->kept()) log().info("worker logs and error files: {}", logs_->root().string());
  RunResult result = options_.rdzv_mode == RdzvMode::kLocal ? runLocal() : runRendezvous();
  cleanup();
  return result;
}

RunResult SupervisorImpl::runLocal() {
  for (int restart = 0;; ++restart) {
    RoundInfo round;
    round.round = restart;
    round.restart_count = restart;
    round.master_addr = options_.master_addr;
    round.master_port = options_.master_port;
    if (round.master_port == 0) {
      auto port = pickFreePort(options_.master_addr);
      if (!port.ok()) return error(port.status().message());
      round.master_port = *port;
    }
    round.world_size = options_.nproc_per_node;
    Attempt attempt;
    if (absl::Status st = runAttempt(round, attempt); !st.ok()) return error(st.message());
    const Decision decision = decide(attempt.outcome, restart, options_.max_restarts);
    switch (decision) {
      case Decision::kSucceed:
        return {};
      case Decision::kRestart: {
        const WorkerFailure& f = attempt.failures[rootCauseIndex(attempt.failures)];
        log().warn("restarting all workers after rank {} failed with {} (restart {} of {})", f.rank,
                   describeExit(f.wait_status), restart + 1, options_.max_restarts);
        continue;
      }
      case Decision::kFail:
        if (!attempt.failures.empty()) {
          printFailureSummary(formatFailureSummary(options_.script, host_, attempt.failures));
        }
        return {.exit_code = jobExitCode(decision, attempt.outcome), .message = ""};
      case Decision::kStopBySignal:
        log().warn("workers stopped after SIG{}", sigabbrev_np(*attempt.outcome.agent_signal));
        return {.exit_code = jobExitCode(decision, attempt.outcome), .message = ""};
    }
  }
}

absl::Status SupervisorImpl::connectRendezvous() {
  GW_ASSIGN_OR_RETURN(place_, placeRendezvous(options_));
  RendezvousClientOptions c;
  c.endpoint = place_.endpoint;
  c.address = place_.address;
  c.hostname = host_;
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
  const topology::NodeTopology& topo = node_.topology;
  c.gpu_count = static_cast<int>(topo.gpus.size());
  c.network_path = topo.network_path.empty() ? options_.network_path : topo.network_path;
  c.nvlink_domain = topo.nvlink_domain;
  c.parallelism = options_.parallelism;
  if (options_.token.empty() && !place_.token.empty()) options_.token = place_.token;
  c.token = options_.token;
  // Without a cluster join token, the job's secret is the credential that creates the job (an
  // agent's own control plane in host mode takes that).
  c.join_token = options_.join_token.empty() ? options_.token : options_.join_token;
  c.tls_ca_file = options_.tls_ca_file;
  c.join_timeout = absl::Seconds(options_.join_timeout_s);
  c.scheduled = options_.scheduled;
  GW_ASSIGN_OR_RETURN(client_, RendezvousClient::connect(c));
  GW_RETURN_IF_ERROR(loop_->add(client_->eventFd(), [this] { onRendezvousEvents(); }).status());
  if (options_.rdzv_mode == RdzvMode::kStandalone) return absl::OkStatus();
  log().info("joined job {} at {} as {} ({} workers, --nnodes {}:{})", options_.run_id,
             place_.endpoint, c.address, options_.nproc_per_node, options_.nnodes_min,
             options_.nnodes_max);
  return absl::OkStatus();
}

RoundInfo SupervisorImpl::roundOf(const RoundAssignment& a) const {
  RoundInfo round;
  round.round = static_cast<int>(a.round);
  round.restart_count = a.restart_count;
  round.master_addr = a.master_addr;
  round.master_port = a.master_port;
  round.group_rank = a.node_rank;
  round.group_world_size = a.num_nodes;
  round.world_size = a.world_size;
  round.rank_offset = a.rank_offset;
  round.store = place_.endpoint;
  round.socket_ifname = place_.socket_ifname;
  return round;
}

RunResult SupervisorImpl::runRendezvous() {
  if (absl::Status s = connectRendezvous(); !s.ok()) return error(s.message());
  int last_local_failure = 0;  // exit code of this node's last worker failure
  for (;;) {
    auto next = waitIdle();
    if (const int* sig = std::get_if<int>(&next)) {
      log().warn("received SIG{}: leaving the job", sigabbrev_np(*sig));
      (void)client_->leave(absl::StrCat("SIG", sigabbrev_np(*sig)));
      return {.exit_code = 128 + *sig, .message = ""};
    }
    auto& e = std::get<RdzvEvent>(next);
    switch (e.kind) {
      case RdzvEvent::Kind::kLost:
        return error(e.reason, 1);
      case RdzvEvent::Kind::kStop:
        continue;  // no workers run: wait for the next round
      case RdzvEvent::Kind::kEnd:
        if (e.succeeded) {
          log().debug("job {} succeeded: {}", options_.run_id, e.reason);
          return {};
        }
        return {.exit_code = last_local_failure != 0 ? last_local_failure : 1,
                .message = absl::StrCat("job ", options_.run_id, " failed: ", e.reason)};
      case RdzvEvent::Kind::kRound:
        break;
    }
    // An assignment. Skip it if a newer event is already waiting.
    if (!pending_.empty()) continue;
    RoundAssignment a = e.round;
    if (a.choose_master_port) {
      int port = options_.master_port;
      if (port == 0) {
        auto picked = pickFreePort(a.master_addr);
        if (!picked.ok()) return error(picked.status().message(), 1);
        port = *picked;
      }
      if (absl::Status s = client_->publishMasterPort(a.round, port); !s.ok()) {
        log().warn("could not publish MASTER_PORT for round {}: {}", a.round,
                   std::string(s.message()));
        continue;
      }
      a.master_port = port;
    }
    current_round_ = a.round;
    client_->setCurrentRound(a.round, a.node_rank);
    Attempt attempt;
    if (absl::Status st = runAttempt(roundOf(a), attempt); !st.ok()) {
      (void)client_->leave("its workers could not be started");
      return error(st.message());
    }
    if (attempt.outcome.agent_signal.has_value()) {
      log().warn("workers stopped after SIG{}; leaving the job",
                 sigabbrev_np(*attempt.outcome.agent_signal));
      (void)client_->leave(absl::StrCat("SIG", sigabbrev_np(*attempt.outcome.agent_signal)));
      return {.exit_code = 128 + *attempt.outcome.agent_signal, .message = ""};
    }
    if (!pending_.empty()) continue;  // stopped for a rendezvous event: handle it next
    if (!attempt.failures.empty()) {
      const WorkerFailure& f = attempt.failures[rootCauseIndex(attempt.failures)];
      last_local_failure = exitCodeOf(f.wait_status);
      printFailureSummary(formatFailureSummary(options_.script, host_, attempt.failures));
      const std::string line = absl::StrCat(
          "rank ", f.rank, " on ", host_, " failed with ", describeExit(f.wait_status),
          f.report.has_value() && !f.report->message.empty() ? ": " + f.report->message : "");
      (void)client_->report(a.round, false, line);
    } else {
      (void)client_->report(a.round, true, "");
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
