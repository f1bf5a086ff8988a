#include "gangway/scheduler/cluster.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <set>

#include <absl/strings/ascii.h>
#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <absl/strings/str_join.h>

#include "gangway/common/log.h"
#include "gangway/common/status.h"

#include "cluster_internal.h"
#include "validate.h"

namespace gangway::scheduler {
namespace {

using cluster_internal::kJobsPrefix;
using cluster_internal::kNodesPrefix;
using cluster_internal::live;
using cluster_internal::log;
using cluster_internal::stateName;
using cluster_internal::toMs;
using cluster_internal::validId;

std::string randomToken() {
  std::random_device rd;
  std::string out;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&out, absl::Hex(rd(), absl::kZeroPad8));
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterManager>> ClusterManager::create(ClusterOptions options,
                                                                       StateStore& store,
                                                                       Rendezvous& rendezvous,
                                                                       absl::Time now) {
  options.queues.try_emplace("default", 0);
  for (const auto& [name, quota] : options.queues) {
    if (!validId(name) || quota < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("queue '", name,
                       "': expected a name of letters, digits, '-', '_', '.' and a quota >= 0"));
    }
  }
  std::unique_ptr<ClusterManager> m(new ClusterManager(std::move(options), store, rendezvous));
  GW_RETURN_IF_ERROR(m->load(now));
  return m;
}

absl::Status ClusterManager::load(absl::Time now) {
  absl::MutexLock lock(&mu_);
  started_ = now;
  GW_ASSIGN_OR_RETURN(const std::vector<StateEntry> nodes, store_.list(kNodesPrefix));
  for (const StateEntry& e : nodes) {
    Node n;
    if (!n.record.ParseFromString(e.value) || n.record.node_id().empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("state store key '", e.key, "': not a node record"));
    }
    n.last_seen = now;  // the node has heartbeat_timeout to register again
    nodes_[n.record.node_id()] = std::move(n);
  }
  GW_ASSIGN_OR_RETURN(const std::vector<StateEntry> jobs, store_.list(kJobsPrefix));
  for (const StateEntry& e : jobs) {
    Job j;
    if (!j.record.ParseFromString(e.value) || j.record.status().job_id().empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("state store key '", e.key, "': not a job record"));
    }
    next_seq_ = std::max(next_seq_, j.record.submit_seq() + 1);
    jobs_[j.record.status().job_id()] = std::move(j);
  }
  int running = 0;
  for (auto& [id, job] : jobs_) {
    if (job.record.status().state() != v1::RUNNING) continue;
    ++running;
    const auto& nodes_of = job.record.status().nodes();
    // The agents of a running job join its rendezvous again and keep their round.
    absl::Status s = rdzv_.manage(id, job.record.token(), {nodes_of.begin(), nodes_of.end()},
                                  job.record.status().spec().max_restarts(), now, /*restore=*/true);
    if (!s.ok()) log().warn("job {}: {}", id, std::string(s.message()));
    rounds_seen_[id] = job.record.status().round();
  }
  log().info("loaded {} nodes and {} jobs ({} running) at revision {}", nodes_.size(), jobs_.size(),
             running, store_.revision());
  return absl::OkStatus();
}

absl::StatusOr<bool> ClusterManager::holdsJobToken(const std::string& job_id,
                                                   const std::string& token) const {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  return !token.empty() && constantTimeEquals(it->second.record.token(), token);
}

ClusterManager::Job* ClusterManager::findLocked(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : &it->second;
}

absl::Status ClusterManager::persistJobsLocked(const std::vector<const Job*>& jobs) {
  StateTxn txn;
  for (const Job* j : jobs) {
    txn.ops.push_back({StateTxn::Op::Kind::kPut,
                       absl::StrCat(kJobsPrefix, j->record.status().job_id()),
                       j->record.SerializeAsString()});
  }
  if (txn.ops.empty()) return absl::OkStatus();
  GW_ASSIGN_OR_RETURN(const StateTxnResult r, store_.commit(txn));
  if (!r.succeeded) return absl::InternalError("state store transaction without compares failed");
  return absl::OkStatus();
}

absl::StatusOr<v1::SubmitResponse> ClusterManager::submit(const v1::JobSpec& spec_in,
                                                          absl::Time now) {
  v1::JobSpec spec = spec_in;
  if (spec.queue().empty()) spec.set_queue("default");
  const Limits& limits = rdzv_.settings().limits;
  GW_RETURN_IF_ERROR(checkSize(spec, limits.max_control_request_bytes, "job spec"));
  GW_RETURN_IF_ERROR(checkName(spec.name(), "--name", cluster_internal::kMaxIdLength));
  if (spec.max_nodes() > limits.max_nodes_per_job) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--nnodes MAX ", spec.max_nodes(), ": expected at most ", limits.max_nodes_per_job));
  }
  if (spec.nproc_per_node() > limits.max_workers_per_node) {
    return absl::InvalidArgumentError(absl::StrCat("--nproc-per-node ", spec.nproc_per_node(),
                                                   ": expected at most ",
                                                   limits.max_workers_per_node));
  }
  for (const std::string& arg : spec.command()) {
    if (arg.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError("the job's command has an argument with a NUL byte");
    }
  }
  if (spec.min_nodes() < 1 || spec.max_nodes() < spec.min_nodes()) {
    return absl::InvalidArgumentError(absl::StrCat("--nnodes ", spec.min_nodes(), ":",
                                                   spec.max_nodes(), ": expected 1 <= MIN <= MAX"));
  }
  if (spec.nproc_per_node() < 1) {
    return absl::InvalidArgumentError(absl::StrCat("--nproc-per-node ", spec.nproc_per_node(),
                                                   ": expected at least one worker per node"));
  }
  if (spec.gpus_per_node() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--gpus-per-node ", spec.gpus_per_node(), ": expected 0 or more"));
  }
  if (spec.max_restarts() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-restarts ", spec.max_restarts(), ": expected 0 or more"));
  }
  if (spec.command().empty() || spec.command(0).empty()) {
    return absl::InvalidArgumentError("the job's command is missing (SCRIPT [ARGS...])");
  }
  if (!options_.queues.contains(spec.queue())) {
    std::vector<std::string> names;
    for (const auto& [name, quota] : options_.queues) names.push_back(name);
    return absl::InvalidArgumentError(absl::StrCat(
        "--queue '", spec.queue(), "': unknown queue (queues: ", absl::StrJoin(names, ", "), ")"));
  }
  if (const auto q = options_.queues.at(spec.queue());
      q > 0 && int64_t{spec.gpus_per_node()} * spec.min_nodes() > q) {
    return absl::InvalidArgumentError(
        absl::StrCat("the job needs ", int64_t{spec.gpus_per_node()} * spec.min_nodes(),
                     " GPUs at its minimum, more than queue '", spec.queue(), "''s quota of ", q));
  }
  // Cluster jobs and the rendezvous jobs agents start by themselves share one namespace: a
  // submit must never end a running job it does not own.
  if (auto other = rdzv_.view(spec.name()); other.ok() && !other->managed && !other->ended) {
    return absl::AlreadyExistsError(absl::StrCat(
        "a rendezvous job named '", spec.name(),
        "' is running (started by its agents, not by the scheduler); choose another --name"));
  }
  absl::MutexLock lock(&mu_);
  if (Job* old = findLocked(spec.name()); old != nullptr && live(old->record.status().state())) {
    return absl::AlreadyExistsError(absl::StrCat("a job named '", spec.name(), "' is already ",
                                                 stateName(old->record.status().state())));
  }
  Job job;
  v1::JobStatus* st = job.record.mutable_status();
  st->set_job_id(spec.name());
  *st->mutable_spec() = spec;
  st->set_state(v1::PENDING);
  st->set_reason("waiting for nodes");
  st->set_submit_time_ms(toMs(now));
  job.record.set_token(randomToken());
  job.record.set_submit_seq(next_seq_);
  GW_RETURN_IF_ERROR(persistJobsLocked({&job}));
  ++next_seq_;
  v1::SubmitResponse resp;
  resp.set_job_id(spec.name());
  resp.set_token(job.record.token());
  rdzv_.forget(spec.name(), "replaced by a new job of the same name");
  rounds_seen_.erase(spec.name());
  jobs_[spec.name()] = std::move(job);
  dirty_ = true;
  log().info("job {} submitted: --nnodes {}:{} --nproc-per-node {} priority {} queue {}",
             spec.name(), spec.min_nodes(), spec.max_nodes(), spec.nproc_per_node(),
             spec.priority(), spec.queue());
  return resp;
}

std::vector<std::string> ClusterManager::markEndedLocked(Job& job, v1::JobState state,
                                                         const std::string& reason,
                                                         absl::Time now) {
  v1::JobStatus* st = job.record.mutable_status();
  std::vector<std::string> nodes(st->nodes().begin(), st->nodes().end());
  st->set_state(state);
  st->set_reason(reason);
  st->set_end_time_ms(toMs(now));
  st->clear_nodes();
  return nodes;
}

void ClusterManager::finishEndLocked(const Job& job, const std::vector<std::string>& nodes) {
  const v1::JobStatus& st = job.record.status();
  releaseNodesLocked(nodes, st.job_id(), st.reason());
  rdzv_.forget(st.job_id(), st.reason());
  rounds_seen_.erase(st.job_id());
  dirty_ = true;
  log().info("job {} {}: {}", st.job_id(), stateName(st.state()), st.reason());
}

absl::Status ClusterManager::cancel(const std::string& job_id, absl::Time now) {
  absl::MutexLock lock(&mu_);
  Job* job = findLocked(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  if (!live(job->record.status().state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job '", job_id, "' has already ended (", stateName(job->record.status().state()), ")"));
  }
  const v1::JobRecord before = job->record;
  const std::vector<std::string> nodes = markEndedLocked(*job, v1::CANCELLED, "cancelled", now);
  if (absl::Status s = persistJobsLocked({job}); !s.ok()) {
    job->record = before;
    return s;
  }
  finishEndLocked(*job, nodes);
  return absl::OkStatus();
}

absl::Status ClusterManager::resize(const std::string& job_id, int nodes, absl::Time now) {
  (void)now;
  if (nodes < 1) {
    return absl::InvalidArgumentError(absl::StrCat("resize to ", nodes, ": expected 1 or more"));
  }
  absl::MutexLock lock(&mu_);
  Job* job = findLocked(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  if (!live(job->record.status().state())) {
    return absl::FailedPreconditionError(absl::StrCat("job '", job_id, "' has already ended"));
  }
  const v1::JobRecord before = job->record;
  v1::JobSpec* spec = job->record.mutable_status()->mutable_spec();
  spec->set_max_nodes(nodes);
  spec->set_min_nodes(std::min(spec->min_nodes(), nodes));
  job->record.set_last_resize_ms(0);  // an operator's resize is not throttled
  if (absl::Status s = persistJobsLocked({job}); !s.ok()) {
    job->record = before;
    return s;
  }
  dirty_ = true;
  log().info("job {} resized to at most {} nodes", job_id, nodes);
  return absl::OkStatus();
}

absl::Status ClusterManager::drain(const std::string& node_id, bool undo, absl::Time now) {
  (void)now;
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) return absl::NotFoundError(absl::StrCat("no node '", node_id, "'"));
  if (it->second.record.draining() == !undo) return absl::OkStatus();
  v1::NodeRecord rec = it->second.record;
  rec.set_draining(!undo);
  GW_RETURN_IF_ERROR(
      store_.put(absl::StrCat(kNodesPrefix, node_id), rec.SerializeAsString()).status());
  it->second.record = std::move(rec);
  dirty_ = true;
  log().info("node {} {}", node_id, undo ? "back in service" : "draining");
  return absl::OkStatus();
}

ClusterState ClusterManager::clusterStateLocked() const {
  ClusterState s;
  for (const auto& [id, n] : nodes_) {
    NodeInfo& info = s.nodes[id];
    info.gpus = n.record.topology().gpu_count();
    info.leaf = n.record.topology().network_path();
    info.nvlink_domain = n.record.topology().nvlink_domain();
    info.healthy = n.healthy;
    info.draining = n.record.draining();
  }
  for (const auto& [id, j] : jobs_) {
    const v1::JobStatus& st = j.record.status();
    if (!live(st.state())) continue;
    JobSpec& spec = s.jobs[id];
    spec.queue = st.spec().queue();
    spec.priority = st.spec().priority();
    spec.min_nodes = st.spec().min_nodes();
    spec.max_nodes = st.spec().max_nodes();
    spec.gpus_per_node = st.spec().gpus_per_node();
    spec.submit_seq = j.record.submit_seq();
    if (st.state() == v1::RUNNING) {
      s.assignments[id].assign(st.nodes().begin(), st.nodes().end());
      if (j.record.last_resize_ms() > 0) {
        s.last_resize[id] = absl::FromUnixMillis(j.record.last_resize_ms());
      }
    }
  }
  for (const auto& [queue, quota] : options_.queues) s.queue_gpu_quota[queue] = quota;
  return s;
}

void ClusterManager::cycleLocked(absl::Time now) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<Decision> decisions = schedule(clusterStateLocked(), now, options_.policy);
  ++cycles_total_;
  if (decisions.empty()) {
    cycle_seconds_sum_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return;
  }
  std::map<std::string, v1::JobRecord> before;
  for (const Decision& d : decisions) {
    Job& job = jobs_.at(d.job);
    before.try_emplace(d.job, job.record);
    v1::JobStatus* st = job.record.mutable_status();
    std::vector<std::string> nodes(st->nodes().begin(), st->nodes().end());
    switch (d.kind) {
      case Decision::Kind::kAdmit:
        st->set_state(v1::RUNNING);
        nodes = d.nodes;
        job.record.set_generation(job.record.generation() + 1);
        if (st->start_time_ms() == 0) st->set_start_time_ms(toMs(now));
        st->set_round(0);
        break;
      case Decision::Kind::kGrow:
        nodes.insert(nodes.end(), d.nodes.begin(), d.nodes.end());
        st->set_resizes(st->resizes() + 1);
        break;
      case Decision::Kind::kShrink:
        for (const std::string& n : d.nodes) nodes.erase(std::find(nodes.begin(), nodes.end(), n));
        st->set_resizes(st->resizes() + 1);
        break;
      case Decision::Kind::kEvict:
        st->set_state(v1::PENDING);
        nodes.clear();
        st->set_round(0);
        break;
    }
    st->clear_nodes();
    for (const std::string& n : nodes) st->add_nodes(n);
    st->set_reason(d.kind == Decision::Kind::kEvict ? absl::StrCat("evicted: ", d.reason)
                                                    : d.reason);
    job.record.set_last_resize_ms(d.kind == Decision::Kind::kEvict ? 0 : toMs(now));
  }
  std::vector<const Job*> changed;
  changed.reserve(before.size());
  for (const auto& [id, rec] : before) changed.push_back(&jobs_.at(id));
  if (absl::Status s = persistJobsLocked(changed); !s.ok()) {
    log().error("cannot persist {} scheduling decisions, retrying: {}", decisions.size(),
                std::string(s.message()));
    for (auto& [id, rec] : before) jobs_.at(id).record = std::move(rec);
    return;
  }
  // Durable: carry them out.
  for (const Decision& d : decisions) {
    Job& job = jobs_.at(d.job);
    const v1::JobStatus& st = job.record.status();
    const std::vector<std::string> nodes(st.nodes().begin(), st.nodes().end());
    log().info("job {}: {} {} ({})", d.job,
               d.kind == Decision::Kind::kAdmit    ? "admitted on"
               : d.kind == Decision::Kind::kGrow   ? "grows onto"
               : d.kind == Decision::Kind::kShrink ? "shrinks off"
                                                   : "evicted from",
               absl::StrJoin(d.nodes, ","), d.reason);
    switch (d.kind) {
      case Decision::Kind::kAdmit:
      case Decision::Kind::kGrow: {
        if (d.kind == Decision::Kind::kAdmit) {
          ++admitted_total_;
          admit_wait_seconds_sum_ += static_cast<double>(toMs(now) - st.submit_time_ms()) / 1000.0;
          rdzv_.forget(d.job, "the job was admitted again");  // a stale run, if any
        } else {
          ++resizes_total_;
        }
        absl::Status s =
            rdzv_.manage(d.job, job.record.token(), nodes, st.spec().max_restarts(), now);
        if (!s.ok()) log().error("job {}: {}", d.job, std::string(s.message()));
        launchLocked(job, d.nodes);
        break;
      }
      case Decision::Kind::kShrink: {
        ++resizes_total_;
        releaseNodesLocked(d.nodes, d.job, d.reason);
        absl::Status s =
            rdzv_.manage(d.job, job.record.token(), nodes, st.spec().max_restarts(), now);
        if (!s.ok()) log().error("job {}: {}", d.job, std::string(s.message()));
        break;
      }
      case Decision::Kind::kEvict:
        ++evictions_total_;
        releaseNodesLocked(d.nodes, d.job, d.reason);
        rdzv_.forget(d.job, absl::StrCat("evicted: ", d.reason));
        rounds_seen_.erase(d.job);
        break;
    }
  }
  cycle_seconds_sum_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

absl::Time ClusterManager::tick(absl::Time now) {
  absl::MutexLock lock(&mu_);
  absl::Time next = now + absl::Milliseconds(200);  // polls the rendezvous for ended jobs
  for (auto& [id, n] : nodes_) {
    if (!n.healthy) continue;
    const absl::Time limit = n.last_seen + options_.node_heartbeat_timeout;
    if (now >= limit) {
      n.healthy = false;
      dirty_ = true;
      log().warn("node {} lost: no heartbeat for {}", id,
                 absl::FormatDuration(options_.node_heartbeat_timeout));
    } else {
      next = std::min(next, limit);
    }
  }
  std::vector<std::pair<Job*, std::vector<std::string>>> ended;
  std::map<std::string, v1::JobRecord> before;
  for (auto& [id, job] : jobs_) {
    if (job.record.status().state() != v1::RUNNING) continue;
    auto view = rdzv_.view(id);
    if (!view.ok()) continue;
    if (view->round > rounds_seen_[id]) {
      rounds_total_ += view->round - rounds_seen_[id];
      rounds_seen_[id] = view->round;
      job.record.mutable_status()->set_round(view->round);
    }
    if (view->ended) {
      before[id] = job.record;
      ended.emplace_back(&job, markEndedLocked(job, view->succeeded ? v1::SUCCEEDED : v1::FAILED,
                                               view->end_reason, now));
    }
  }
  if (!ended.empty()) {
    std::vector<const Job*> c;
    c.reserve(ended.size());
    for (const auto& [job, nodes] : ended) c.push_back(job);
    if (absl::Status s = persistJobsLocked(c); !s.ok()) {
      log().error("cannot record {} ended jobs, retrying: {}", c.size(), std::string(s.message()));
      for (auto& [id, rec] : before) jobs_.at(id).record = std::move(rec);
    } else {
      for (const auto& [job, nodes] : ended) finishEndLocked(*job, nodes);
    }
  }
  // Growth waits for min_resize_interval: wake when the first such wait ends.
  for (const auto& [id, job] : jobs_) {
    const v1::JobStatus& st = job.record.status();
    if (st.state() == v1::RUNNING && st.nodes_size() < st.spec().max_nodes() &&
        job.record.last_resize_ms() > 0) {
      const absl::Time at =
          absl::FromUnixMillis(job.record.last_resize_ms()) + options_.policy.min_resize_interval;
      if (at > now) {
        next = std::min(next, at);
      } else if (at > last_cycle_) {
        dirty_ = true;  // its wait ended since the last cycle
      }
    }
  }
  if (dirty_) {
    dirty_ = false;
    last_cycle_ = now;
    cycleLocked(now);
  }
  return next;
}

}  // namespace gangway::scheduler
