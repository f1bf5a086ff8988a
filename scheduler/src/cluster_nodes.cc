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
#include "gangway/common/text.h"
#include "gangway/scheduler/cluster.h"

#include "cluster_internal.h"
#include "validate.h"

namespace gangway::scheduler {

using cluster_internal::kMaxIdLength;
using cluster_internal::kNodesPrefix;
using cluster_internal::live;
using cluster_internal::log;
using cluster_internal::stateName;

absl::StatusOr<v1::RegisterNodeResponse> ClusterManager::registerNode(
    const v1::RegisterNodeRequest& req, absl::Time now, const std::string& session) {
  const Limits& limits = rdzv_.settings().limits;
  GW_RETURN_IF_ERROR(checkSize(req, limits.max_control_request_bytes, "registration"));
  GW_RETURN_IF_ERROR(checkName(req.node_id(), "node id", kMaxIdLength));
  GW_RETURN_IF_ERROR(checkAddress(req.address(), "register: address"));
  GW_RETURN_IF_ERROR(checkTopology(req.topology(), limits));
  for (const std::string& job : req.running_jobs()) {
    GW_RETURN_IF_ERROR(checkName(job, "register: running job", kMaxIdLength));
  }
  absl::MutexLock lock(&mu_);
  if (!nodes_.contains(req.node_id()) && nodes_.size() >= limits.max_cluster_nodes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the scheduler holds its limit of ", limits.max_cluster_nodes, " nodes"));
  }
  if (auto known = nodes_.find(req.node_id()); known != nodes_.end() && known->second.sink &&
                                               !sessionMatches(known->second.session, session)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "node '", req.node_id(),
        "' is registered by another session whose WatchNode stream is open (another agent with "
        "this node id?)"));
  }
  Node& n = nodes_[req.node_id()];
  n.session = session;
  v1::NodeRecord rec = n.record;
  rec.set_node_id(req.node_id());
  rec.set_address(req.address());
  *rec.mutable_topology() = req.topology();
  if (rec.SerializeAsString() != n.record.SerializeAsString()) {
    absl::Status s =
        store_.put(absl::StrCat(kNodesPrefix, req.node_id()), rec.SerializeAsString()).status();
    if (!s.ok()) {
      if (!n.record.has_topology() && n.record.node_id().empty()) nodes_.erase(req.node_id());
      return s;
    }
    n.record = std::move(rec);
  }
  n.registered = true;
  n.healthy = true;
  n.last_seen = now;
  n.reported_running.assign(req.running_jobs().begin(), req.running_jobs().end());
  dirty_ = true;
  log().info(
      "node {} registered from {} ({} GPUs{}{})", req.node_id(), req.address(),
      req.topology().gpu_count(),
      req.topology().network_path().empty() ? "" : ", " + req.topology().network_path(),
      req.running_jobs().empty() ? "" : ", running " + absl::StrJoin(req.running_jobs(), ","));
  v1::RegisterNodeResponse resp;
  resp.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.node_heartbeat_interval));
  resp.set_heartbeat_timeout_ms(absl::ToInt64Milliseconds(options_.node_heartbeat_timeout));
  return resp;
}

absl::Status ClusterManager::checkSessionLocked(const Node& node, const std::string& node_id,
                                                const std::string& session) {
  if (sessionMatches(node.session, session)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("this call needs the session of node '", node_id, "'"));
}

void ClusterManager::sendLocked(Node& node, const v1::NodeEvent& event) {
  if (node.sink) node.sink(event);
}

absl::StatusOr<uint64_t> ClusterManager::watchNode(const std::string& node_id, NodeSink sink,
                                                   absl::Time now, NodeClose close,
                                                   const std::string& session) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || !it->second.registered) {
    return absl::FailedPreconditionError(
        absl::StrCat("node '", node_id, "' must register before it watches"));
  }
  GW_RETURN_IF_ERROR(checkSessionLocked(it->second, node_id, session));
  Node& n = it->second;
  if (n.close) {
    n.close(absl::AbortedError(
        absl::StrCat("another WatchNode stream for node '", node_id, "' replaced this one")));
  }
  n.sink = std::move(sink);
  n.close = std::move(close);
  n.watch_handle = next_handle_++;
  n.last_seen = now;
  std::string assigned;
  for (const auto& [id, job] : jobs_) {
    const auto& nodes = job.record.status().nodes();
    if (job.record.status().state() == v1::RUNNING &&
        std::find(nodes.begin(), nodes.end(), node_id) != nodes.end()) {
      assigned = id;
      v1::NodeEvent e;
      v1::Launch* l = e.mutable_launch();
      l->set_job_id(id);
      l->set_token(job.record.token());
      *l->mutable_spec() = job.record.status().spec();
      l->set_generation(job.record.generation());
      sendLocked(n, e);
    }
  }
  for (const std::string& job : n.reported_running) {
    if (job == assigned) continue;
    v1::NodeEvent e;
    e.mutable_release()->set_job_id(job);
    e.mutable_release()->set_reason("the scheduler no longer runs this job on this node");
    sendLocked(n, e);
  }
  n.reported_running.clear();
  return n.watch_handle;
}

void ClusterManager::unwatchNode(const std::string& node_id, uint64_t handle, bool lost,
                                 absl::Time now) {
  (void)now;
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || it->second.watch_handle != handle) return;
  it->second.sink = nullptr;
  it->second.close = nullptr;
  it->second.watch_handle = 0;
  if (lost && it->second.healthy) {
    it->second.healthy = false;
    dirty_ = true;
    log().warn("node {} lost: its watch stream closed", node_id);
  }
}

absl::Status ClusterManager::nodeHeartbeat(const std::string& node_id, absl::Time now,
                                           const std::string& session) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || !it->second.registered || !it->second.healthy) {
    return absl::NotFoundError(absl::StrCat("node '", node_id, "' is not registered"));
  }
  GW_RETURN_IF_ERROR(checkSessionLocked(it->second, node_id, session));
  it->second.last_seen = now;
  return absl::OkStatus();
}

absl::Status ClusterManager::reportExit(const v1::ReportExitRequest& req, absl::Time now,
                                        const std::string& session) {
  absl::MutexLock lock(&mu_);
  auto node = nodes_.find(req.node_id());
  if (node == nodes_.end() || !node->second.registered) {
    return absl::NotFoundError(absl::StrCat("node '", req.node_id(), "' is not registered"));
  }
  GW_RETURN_IF_ERROR(checkSessionLocked(node->second, req.node_id(), session));
  Job* job = findLocked(req.job_id());
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", req.job_id(), "'"));
  const v1::JobStatus& st = job->record.status();
  const bool assigned =
      std::find(st.nodes().begin(), st.nodes().end(), req.node_id()) != st.nodes().end();
  if (st.state() != v1::RUNNING || !assigned || req.generation() != job->record.generation() ||
      req.exit_code() == 0) {
    return absl::OkStatus();  // an old run, a released node, or a clean exit
  }
  const v1::JobRecord before = job->record;
  std::string reason =
      absl::StrCat("node ", req.node_id(), ": gangway run exited with code ", req.exit_code(),
                   req.message().empty() ? "" : ": ", escapeLine(req.message()));
  if (auto view = rdzv_.view(req.job_id()); view.ok() && view->ended) reason = view->end_reason;
  const std::vector<std::string> nodes = markEndedLocked(*job, v1::FAILED, reason, now);
  if (absl::Status s = persistJobsLocked({job}); !s.ok()) {
    log().error("job {}: cannot record its failure: {}", req.job_id(), std::string(s.message()));
    job->record = before;
    return s;
  }
  finishEndLocked(*job, nodes);
  return absl::OkStatus();
}

void ClusterManager::releaseNodesLocked(const std::vector<std::string>& nodes,
                                        const std::string& job_id, const std::string& reason) {
  for (const std::string& id : nodes) {
    auto it = nodes_.find(id);
    if (it == nodes_.end()) continue;
    v1::NodeEvent e;
    e.mutable_release()->set_job_id(job_id);
    e.mutable_release()->set_reason(reason);
    sendLocked(it->second, e);
  }
}

void ClusterManager::launchLocked(const Job& job, const std::vector<std::string>& nodes) {
  for (const std::string& id : nodes) {
    auto it = nodes_.find(id);
    if (it == nodes_.end()) continue;
    v1::NodeEvent e;
    v1::Launch* l = e.mutable_launch();
    l->set_job_id(job.record.status().job_id());
    l->set_token(job.record.token());
    *l->mutable_spec() = job.record.status().spec();
    l->set_generation(job.record.generation());
    sendLocked(it->second, e);
  }
}

v1::ListJobsResponse ClusterManager::listJobs(bool all, const std::string* job_token) const {
  absl::MutexLock lock(&mu_);
  std::vector<const Job*> order;
  for (const auto& [id, j] : jobs_) {
    if (job_token != nullptr && !constantTimeEquals(j.record.token(), *job_token)) continue;
    if (all || live(j.record.status().state())) order.push_back(&j);
  }
  std::sort(order.begin(), order.end(), [](const Job* a, const Job* b) {
    return a->record.submit_seq() < b->record.submit_seq();
  });
  v1::ListJobsResponse resp;
  for (const Job* j : order) *resp.add_jobs() = j->record.status();
  return resp;
}

v1::ListNodesResponse ClusterManager::listNodes() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, std::string> job_of;
  for (const auto& [id, j] : jobs_) {
    if (j.record.status().state() != v1::RUNNING) continue;
    for (const std::string& n : j.record.status().nodes()) job_of[n] = id;
  }
  v1::ListNodesResponse resp;
  for (const auto& [id, n] : nodes_) {
    v1::NodeStatus* s = resp.add_nodes();
    s->set_node_id(id);
    s->set_address(n.record.address());
    *s->mutable_topology() = n.record.topology();
    s->set_healthy(n.healthy);
    s->set_draining(n.record.draining());
    if (auto it = job_of.find(id); it != job_of.end()) s->set_job_id(it->second);
  }
  return resp;
}

std::string ClusterManager::metrics() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  };
  std::map<std::string, int64_t> pending;
  for (const auto& [q, quota] : options_.queues) pending[q] = 0;
  std::map<std::string, int64_t> by_state;
  for (const char* s : {"pending", "running", "succeeded", "failed", "cancelled"}) by_state[s] = 0;
  int64_t gpus_allocated = 0;
  for (const auto& [id, j] : jobs_) {
    const v1::JobStatus& st = j.record.status();
    ++by_state[stateName(st.state())];
    if (st.state() == v1::PENDING) ++pending[st.spec().queue()];
    if (st.state() == v1::RUNNING) {
      gpus_allocated += int64_t{st.spec().gpus_per_node()} * st.nodes_size();
    }
  }
  int64_t gpus_total = 0;
  int64_t healthy = 0;
  int64_t lost = 0;
  int64_t draining = 0;
  for (const auto& [id, n] : nodes_) {
    gpus_total += n.record.topology().gpu_count();
    (n.healthy ? healthy : lost) += 1;
    if (n.record.draining()) ++draining;
  }
  family("gangway_queue_pending_jobs", "gauge", "Jobs waiting for admission, by queue.");
  for (const auto& [q, n] : pending)
    absl::StrAppend(&out, "gangway_queue_pending_jobs{queue=\"", q, "\"} ", n, "\n");
  family("gangway_jobs", "gauge", "Jobs known to the scheduler, by state.");
  for (const auto& [s, n] : by_state)
    absl::StrAppend(&out, "gangway_jobs{state=\"", s, "\"} ", n, "\n");
  family("gangway_nodes", "gauge",
         "Pool nodes, by health; draining nodes are also counted as such.");
  absl::StrAppend(&out, "gangway_nodes{state=\"healthy\"} ", healthy, "\n",
                  "gangway_nodes{state=\"lost\"} ", lost, "\n",
                  "gangway_nodes{state=\"draining\"} ", draining, "\n");
  family("gangway_gpus_allocated", "gauge", "GPUs held by running jobs.");
  absl::StrAppend(&out, "gangway_gpus_allocated ", gpus_allocated, "\n");
  family("gangway_gpus_total", "gauge", "GPUs of every registered node.");
  absl::StrAppend(&out, "gangway_gpus_total ", gpus_total, "\n");
  family("gangway_jobs_admitted_total", "counter", "Gang admissions since the scheduler started.");
  absl::StrAppend(&out, "gangway_jobs_admitted_total ", admitted_total_, "\n");
  family("gangway_job_resizes_total", "counter", "Elastic grows and shrinks of running jobs.");
  absl::StrAppend(&out, "gangway_job_resizes_total ", resizes_total_, "\n");
  family("gangway_job_evictions_total", "counter", "Running jobs taken down and queued again.");
  absl::StrAppend(&out, "gangway_job_evictions_total ", evictions_total_, "\n");
  family("gangway_time_to_admit_seconds", "summary", "From submission to admission.");
  absl::StrAppend(&out, "gangway_time_to_admit_seconds_sum ",
                  absl::StrFormat("%.3f", admit_wait_seconds_sum_), "\n",
                  "gangway_time_to_admit_seconds_count ", admitted_total_, "\n");
  family("gangway_rendezvous_rounds_total", "counter", "Rendezvous rounds of scheduled jobs.");
  absl::StrAppend(&out, "gangway_rendezvous_rounds_total ", rounds_total_, "\n");
  family("gangway_scheduling_cycle_seconds", "summary", "Time spent in scheduling cycles.");
  absl::StrAppend(&out, "gangway_scheduling_cycle_seconds_sum ",
                  absl::StrFormat("%.6f", cycle_seconds_sum_), "\n",
                  "gangway_scheduling_cycle_seconds_count ", cycles_total_, "\n");
  return out;
}

}  // namespace gangway::scheduler
