#include "gangway/scheduler/rendezvous.h"

#include <algorithm>
#include <cstdint>
#include <tuple>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>

#include "gangway/common/log.h"
#include "gangway/topology/network_path.h"
#include "gangway/topology/placement.h"

namespace gangway::scheduler {
namespace {

Logger& log() {
  static Logger& l = logger("rendezvous");
  return l;
}

std::string nnodes(int min, int max) {
  return min == max ? absl::StrCat(min) : absl::StrCat(min, ":", max);
}

}  // namespace

std::string masterPortKey(int64_t round) {
  return absl::StrCat("gangway/round/", round, "/master_port");
}
std::string layoutKey(int64_t round) { return absl::StrCat("gangway/round/", round, "/layout"); }

Rendezvous::Job* Rendezvous::findLocked(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : it->second.get();
}

absl::StatusOr<std::pair<Rendezvous::Job*, Rendezvous::Agent*>> Rendezvous::findAgentLocked(
    const std::string& job_id, const std::string& agent_id) {
  Job* job = findLocked(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  auto it = job->agents.find(agent_id);
  if (it == job->agents.end()) {
    return absl::NotFoundError(
        absl::StrCat("agent '", agent_id, "' is not a member of job '", job_id, "'; join first"));
  }
  return std::pair{job, &it->second};
}

void Rendezvous::sendLocked(Agent& agent, v1::RoundEvent event) {
  agent.last_event = std::move(event);
  agent.has_event = true;
  if (agent.sink) agent.sink(agent.last_event);
}

bool constantTimeEquals(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = std::max(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

absl::Status Rendezvous::authorize(const std::string& job_id, const std::string& token) const {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  if (!constantTimeEquals(it->second->token, token)) {
    return absl::PermissionDeniedError(
        absl::StrCat("wrong or missing token for job '", job_id, "'"));
  }
  return absl::OkStatus();
}

absl::Status Rendezvous::join(const v1::JoinRequest& req, const std::string& token,
                              absl::Time now) {
  if (req.job_id().empty() || req.agent_id().empty()) {
    return absl::InvalidArgumentError("join: job_id and agent_id are required");
  }
  if (req.local_world_size() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("join: local_world_size must be >= 1, got ", req.local_world_size()));
  }
  if (req.min_nodes() < 1 || req.max_nodes() < req.min_nodes()) {
    return absl::InvalidArgumentError(absl::StrCat("join: --nnodes ", req.min_nodes(), ":",
                                                   req.max_nodes(), " is not 1 <= MIN <= MAX"));
  }
  if (req.max_restarts() < 0) {
    return absl::InvalidArgumentError("join: max_restarts must be >= 0");
  }
  absl::MutexLock lock(&mu_);
  Job* job = findLocked(req.job_id());
  if (job == nullptr && req.scheduled()) {
    return absl::NotFoundError(
        absl::StrCat("job '", req.job_id(), "' is not (or no longer) run by the scheduler"));
  }
  if (job == nullptr) {
    auto created = std::make_unique<Job>();
    created->id = req.job_id();
    created->token = token;
    created->min_nodes = req.min_nodes();
    created->max_nodes = req.max_nodes();
    created->max_restarts = req.max_restarts();
    created->parallelism = req.parallelism();
    job = created.get();
    jobs_[req.job_id()] = std::move(created);
    log().debug("job {}: created by agent {} (--nnodes {}, --max-restarts {})", req.job_id(),
                req.agent_id(), nnodes(req.min_nodes(), req.max_nodes()), req.max_restarts());
  }
  if (!constantTimeEquals(job->token, token)) {
    return absl::PermissionDeniedError(
        absl::StrCat("wrong or missing token for job '", job->id, "'"));
  }
  if (job->ended) {
    return absl::FailedPreconditionError(
        absl::StrCat("job '", job->id, "' has already ended: ", job->end.reason()));
  }
  if (job->managed) {
    // The scheduler sets this job's size and restarts; the agent's flags are not the job's.
  } else if (req.min_nodes() != job->min_nodes || req.max_nodes() != job->max_nodes) {
    return absl::FailedPreconditionError(
        absl::StrCat("--nnodes ", nnodes(req.min_nodes(), req.max_nodes()), " disagrees with job '",
                     job->id, "', which has --nnodes ", nnodes(job->min_nodes, job->max_nodes)));
  }
  if (!job->managed && req.max_restarts() != job->max_restarts) {
    return absl::FailedPreconditionError(
        absl::StrCat("--max-restarts ", req.max_restarts(), " disagrees with job '", job->id,
                     "', which has --max-restarts ", job->max_restarts));
  }
  if (!job->managed && req.parallelism() != job->parallelism) {
    return absl::FailedPreconditionError(absl::StrCat("--parallelism '", req.parallelism(),
                                                      "' disagrees with job '", job->id,
                                                      "', which has '", job->parallelism, "'"));
  }
  if (req.has_node_rank()) {
    if (req.node_rank() < 0 || req.node_rank() >= job->max_nodes) {
      return absl::InvalidArgumentError(
          absl::StrCat("--node-rank ", req.node_rank(), " is not below --nnodes ", job->max_nodes));
    }
    for (const auto& [id, other] : job->agents) {
      if (id != req.agent_id() && other.info.has_node_rank() &&
          other.info.node_rank() == req.node_rank()) {
        return absl::FailedPreconditionError(
            absl::StrCat("--node-rank ", req.node_rank(), " is already taken in job '", job->id,
                         "' by agent ", id, " at ", other.info.address()));
      }
    }
  }
  auto [it, inserted] = job->agents.try_emplace(req.agent_id());
  Agent& agent = it->second;
  agent.last_seen = now;
  if (!inserted) return absl::OkStatus();  // a retried Join
  agent.info = req;
  agent.join_seq = job->join_counter++;
  log().debug("job {}: agent {} joined from {} with {} workers ({} agents)", job->id,
              req.agent_id(), req.address(), req.local_world_size(), job->agents.size());
  evaluateLocked(*job, now);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Rendezvous::watch(const std::string& job_id, const std::string& agent_id,
                                           Sink sink, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto found = findAgentLocked(job_id, agent_id);
  if (!found.ok()) return found.status();
  Agent& agent = *found->second;
  agent.sink = std::move(sink);
  agent.watch_handle = next_handle_++;
  agent.last_seen = now;
  if (agent.has_event) agent.sink(agent.last_event);
  return agent.watch_handle;
}

void Rendezvous::unwatch(const std::string& job_id, const std::string& agent_id, uint64_t handle,
                         bool lost, absl::Time now) {
  absl::MutexLock lock(&mu_);
  Job* job = findLocked(job_id);
  if (job == nullptr) return;
  auto it = job->agents.find(agent_id);
  if (it == job->agents.end() || it->second.watch_handle != handle) return;
  it->second.sink = nullptr;
  it->second.watch_handle = 0;
  if (job->ended || !lost) return;
  removeAgentLocked(*job, agent_id, "its Watch stream closed", now);
  evaluateLocked(*job, now);
}

absl::StatusOr<int64_t> Rendezvous::heartbeat(const std::string& job_id,
                                              const std::string& agent_id, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto found = findAgentLocked(job_id, agent_id);
  if (!found.ok()) return found.status();
  found->second->last_seen = now;
  return found->first->round;
}

absl::Status Rendezvous::leave(const std::string& job_id, const std::string& agent_id,
                               const std::string& reason, absl::Time now) {
  absl::MutexLock lock(&mu_);
  Job* job = findLocked(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  if (!job->agents.contains(agent_id)) return absl::OkStatus();  // already gone
  if (job->ended) {
    job->agents.erase(agent_id);
    return absl::OkStatus();
  }
  removeAgentLocked(*job, agent_id, absl::StrCat("it left (", reason, ")"), now);
  evaluateLocked(*job, now);
  return absl::OkStatus();
}

absl::Status Rendezvous::report(const v1::WorkerReport& report, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto found = findAgentLocked(report.job_id(), report.agent_id());
  if (!found.ok()) return found.status();
  Job* job = found->first;
  found->second->last_seen = now;
  // Reports for an earlier round, or from a standby, change nothing.
  if (job->ended || report.round() != job->round || !job->round_active ||
      std::find(job->members.begin(), job->members.end(), report.agent_id()) ==
          job->members.end()) {
    return absl::OkStatus();
  }
  if (report.succeeded()) {
    if (std::find(job->succeeded.begin(), job->succeeded.end(), report.agent_id()) ==
        job->succeeded.end()) {
      job->succeeded.push_back(report.agent_id());
    }
    if (job->succeeded.size() == job->members.size()) {
      endJobLocked(*job, true, absl::StrCat("all ", job->members.size(), " nodes succeeded"), now);
    }
    return absl::OkStatus();
  }
  log().warn("job {} round {}: workers failed on agent {}: {}", job->id, job->round,
             report.agent_id(), report.failure());
  if (job->restart_count >= job->max_restarts) {
    endJobLocked(*job, false,
                 absl::StrCat("workers failed on agent ", report.agent_id(), " (", report.failure(),
                              ") and --max-restarts ", job->max_restarts, " restarts are spent"),
                 now);
    return absl::OkStatus();
  }
  ++job->restart_count;
  job->restart_pending = true;
  evaluateLocked(*job, now);
  return absl::OkStatus();
}

void Rendezvous::removeAgentLocked(Job& job, const std::string& agent_id, const std::string& reason,
                                   absl::Time now) {
  (void)now;
  job.agents.erase(agent_id);
  const bool member =
      std::find(job.members.begin(), job.members.end(), agent_id) != job.members.end();
  log().warn("job {}: agent {} removed: {} ({} agents left)", job.id, agent_id, reason,
             job.agents.size());
  if (!member || !job.round_active) return;
  // The round is broken: stop the other members now; the next round forms in evaluateLocked.
  job.round_active = false;
  v1::RoundEvent stop;
  stop.mutable_stop()->set_round(job.round);
  stop.mutable_stop()->set_reason(absl::StrCat("agent ", agent_id, " is gone: ", reason));
  for (const auto& id : job.members) {
    auto it = job.agents.find(id);
    if (it != job.agents.end()) sendLocked(it->second, stop);
  }
}

std::vector<std::string> Rendezvous::chooseMembersLocked(const Job& job) const {
  std::vector<const Agent*> ordered;
  ordered.reserve(job.agents.size());
  for (const auto& [id, a] : job.agents) {
    if (job.managed && std::find(job.allowed.begin(), job.allowed.end(), id) == job.allowed.end()) {
      continue;  // the scheduler has not given this agent's node to the job (or took it back)
    }
    ordered.push_back(&a);
  }
  // Previous members first, in their node-rank order; then everyone else in join order.
  absl::flat_hash_map<std::string, int> previous_rank;
  for (size_t i = 0; i < job.members.size(); ++i)
    previous_rank[job.members[i]] = static_cast<int>(i);
  // Agents that asked for a node rank (static rendezvous) come in that order, before all others;
  // newcomers by their rank hint (a pod's index), then in join order.
  using Key = std::tuple<int, int64_t, int64_t>;
  auto key = [&](const Agent* a) {
    if (a->info.has_node_rank()) return Key{-1, a->info.node_rank(), 0};
    auto it = previous_rank.find(a->info.agent_id());
    if (it != previous_rank.end()) return Key{0, it->second, 0};
    return Key{1, a->info.has_rank_hint() ? a->info.rank_hint() : INT64_MAX, a->join_seq};
  };
  std::sort(ordered.begin(), ordered.end(),
            [&](const Agent* a, const Agent* b) { return key(a) < key(b); });
  std::vector<std::string> chosen;
  const size_t n = std::min(ordered.size(), static_cast<size_t>(job.max_nodes));
  chosen.reserve(n);
  for (size_t i = 0; i < n; ++i) chosen.push_back(ordered[i]->info.agent_id());
  return orderByTopology(job, chosen);
}

std::vector<std::string> Rendezvous::orderByTopology(const Job& job,
                                                     std::vector<std::string> chosen) const {
  // Static node ranks are the user's; with no location and no parallelism, stability wins.
  bool located = !job.parallelism.empty();
  std::vector<topology::PlacementNode> nodes;
  nodes.reserve(chosen.size());
  int world = 0;
  int nproc = -1;
  for (const auto& id : chosen) {
    const v1::JoinRequest& info = job.agents.at(id).info;
    if (info.has_node_rank()) return chosen;
    const v1::NodeTopology& t = info.topology();
    located = located || !t.network_path().empty() || !t.nvlink_domain().empty();
    topology::PlacementNode p;
    p.name = t.hostname().empty() ? id : t.hostname();
    if (auto path = topology::parseNetworkPath(t.network_path()); path.ok()) p.path = *path;
    p.domain = t.nvlink_domain();
    nodes.push_back(std::move(p));
    world += info.local_world_size();
    nproc = nproc < 0 || nproc == info.local_world_size() ? info.local_world_size() : 0;
  }
  if (!located || chosen.size() < 2) return chosen;
  topology::Parallelism parallelism;
  const topology::Parallelism* p = nullptr;
  if (!job.parallelism.empty() && nproc > 0) {
    auto parsed = topology::parseParallelism(job.parallelism);
    if (parsed.ok() && topology::resolveParallelism(&*parsed, world).ok()) {
      parallelism = *parsed;
      p = &parallelism;
    }
  }
  std::vector<std::string> out;
  out.reserve(chosen.size());
  for (int i : topology::orderNodes(nodes, std::max(nproc, 1), p)) {
    out.push_back(chosen[static_cast<size_t>(i)]);
  }
  return out;
}

void Rendezvous::evaluateLocked(Job& job, absl::Time now) {
  if (job.ended) return;
  int present = static_cast<int>(job.agents.size());
  if (job.managed) {
    present = 0;
    for (const std::string& id : job.allowed) present += job.agents.contains(id) ? 1 : 0;
  }
  if (present < job.min_nodes) {
    job.last_call_deadline = absl::InfiniteFuture();
    if (job.join_deadline == absl::InfiniteFuture())
      job.join_deadline = now + settings_.join_timeout;
    if (now >= job.join_deadline) {
      endJobLocked(job, false,
                   absl::StrFormat("only %d of the %d nodes that --nnodes %s needs joined job "
                                   "'%s' within join_timeout (%s)",
                                   present, job.min_nodes, nnodes(job.min_nodes, job.max_nodes),
                                   job.id, absl::FormatDuration(settings_.join_timeout)),
                   now);
    }
    return;
  }
  job.join_deadline = absl::InfiniteFuture();
  if (job.restoring && adoptRoundLocked(job)) return;
  std::vector<std::string> chosen = chooseMembersLocked(job);
  if (job.restart_pending) {
    formRoundLocked(job, std::move(chosen));
    return;
  }
  if (job.round_active && chosen == job.members) {
    job.last_call_deadline = absl::InfiniteFuture();  // nothing would change
    return;
  }
  if (static_cast<int>(chosen.size()) == job.max_nodes) {
    formRoundLocked(job, std::move(chosen));
    return;
  }
  if (job.last_call_deadline == absl::InfiniteFuture()) {
    job.last_call_deadline = now + settings_.last_call;
  }
  if (now >= job.last_call_deadline) formRoundLocked(job, std::move(chosen));
}

void Rendezvous::formRoundLocked(Job& job, std::vector<std::string> members) {
  job.round += 1;
  // Members of the previous round that are not in this one (a managed job shrank) stop.
  for (const std::string& id : job.members) {
    auto it = job.agents.find(id);
    if (it == job.agents.end() || std::find(members.begin(), members.end(), id) != members.end()) {
      continue;
    }
    v1::RoundEvent stop;
    stop.mutable_stop()->set_round(job.round);
    stop.mutable_stop()->set_reason("the scheduler took this node from the job");
    sendLocked(it->second, std::move(stop));
  }
  job.members = std::move(members);
  job.succeeded.clear();
  job.round_active = true;
  job.restart_pending = false;
  job.last_call_deadline = absl::InfiniteFuture();

  v1::RoundLayout layout;
  layout.set_round(job.round);
  int offset = 0;
  for (size_t i = 0; i < job.members.size(); ++i) {
    const Agent& a = job.agents.at(job.members[i]);
    v1::NodeAssignment* n = layout.add_nodes();
    n->set_node_rank(static_cast<int>(i));
    n->set_agent_id(a.info.agent_id());
    n->set_address(a.info.address());
    n->set_local_world_size(a.info.local_world_size());
    n->set_rank_offset(offset);
    offset += a.info.local_world_size();
  }
  job.store->set(layoutKey(job.round), layout.SerializeAsString());
  log().debug("job {}: round {} formed with {} nodes, {} workers (restart {})", job.id, job.round,
              job.members.size(), offset, job.restart_count);

  const bool with_layout =
      static_cast<int>(job.members.size()) <= settings_.max_layout_in_assignment;
  job.pending_assignments.clear();
  for (const auto& node : layout.nodes()) {
    v1::RoundEvent event;
    v1::Assignment* a = event.mutable_assignment();
    a->set_round(job.round);
    a->set_restart_count(job.restart_count);
    a->set_node_rank(node.node_rank());
    a->set_num_nodes(layout.nodes_size());
    a->set_world_size(offset);
    a->set_rank_offset(node.rank_offset());
    if (with_layout) *a->mutable_nodes() = layout.nodes();
    a->set_master_addr(layout.nodes(0).address());
    a->set_master_port_key(masterPortKey(job.round));
    a->set_layout_key(layoutKey(job.round));
    job.pending_assignments.push_back(std::move(event));
  }
  // Node rank 0 first: it picks MASTER_PORT; the others get theirs when it has.
  v1::RoundEvent first = job.pending_assignments[0];
  first.mutable_assignment()->set_choose_master_port(true);
  sendLocked(job.agents.at(job.members[0]), std::move(first));
}

absl::Status Rendezvous::publishMasterPort(const v1::MasterPortRequest& req, absl::Time now) {
  if (req.port() < 1 || req.port() > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("master port ", req.port(), " out of range"));
  }
  absl::MutexLock lock(&mu_);
  Job* job = findLocked(req.job_id());
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", req.job_id(), "'"));
  auto it = job->agents.find(req.agent_id());
  if (it != job->agents.end()) it->second.last_seen = now;
  if (job->ended || req.round() != job->round || !job->round_active ||
      job->pending_assignments.empty()) {
    return absl::OkStatus();  // a stale round: nothing to complete
  }
  if (job->members.empty() || job->members[0] != req.agent_id()) {
    return absl::PermissionDeniedError(
        absl::StrCat("agent '", req.agent_id(), "' is not node rank 0 of round ", job->round));
  }
  job->store->set(masterPortKey(job->round), absl::StrCat(req.port()));
  std::vector<v1::RoundEvent> pending = std::move(job->pending_assignments);
  job->pending_assignments.clear();
  for (size_t i = 0; i < pending.size(); ++i) {
    pending[i].mutable_assignment()->set_master_port(req.port());
    if (i == 0) {
      // Node rank 0 already acts on its assignment; record the completed one for a replay.
      Agent& a = job->agents.at(job->members[0]);
      a.last_event = std::move(pending[i]);
      continue;
    }
    sendLocked(job->agents.at(job->members[i]), std::move(pending[i]));
  }
  return absl::OkStatus();
}

void Rendezvous::endJobLocked(Job& job, bool succeeded, const std::string& reason, absl::Time now) {
  job.ended = true;
  job.ended_at = now;
  job.round_active = false;
  job.end.set_succeeded(succeeded);
  job.end.set_reason(reason);
  if (succeeded) {
    log().debug("job {}: succeeded: {}", job.id, reason);
  } else {
    log().error("job {}: failed: {}", job.id, reason);
  }
  v1::RoundEvent event;
  *event.mutable_job_end() = job.end;
  for (auto& [id, agent] : job.agents) sendLocked(agent, event);
}

bool Rendezvous::adoptRoundLocked(Job& job) {
  job.restoring = false;
  std::vector<std::string> by_rank(job.allowed.size());
  int64_t round = -1;
  bool agree = true;
  for (const std::string& id : job.allowed) {
    const v1::JoinRequest& info = job.agents.at(id).info;
    job.round = std::max(job.round, info.current_round());
    const int rank = info.current_node_rank();
    if (round == -1) round = info.current_round();
    if (info.current_round() != round || round <= 0 || rank < 0 ||
        rank >= static_cast<int>(by_rank.size()) || !by_rank[rank].empty()) {
      agree = false;
      continue;
    }
    by_rank[rank] = id;
  }
  if (!agree) {
    log().info("job {}: restored, its agents run different rounds: a new round", job.id);
    return false;
  }
  job.members = std::move(by_rank);
  job.round_active = true;
  job.last_call_deadline = absl::InfiniteFuture();
  log().info("job {}: restored, its {} nodes go on with round {}", job.id, job.members.size(),
             job.round);
  return true;
}

absl::Status Rendezvous::manage(const std::string& job_id, const std::string& token,
                                const std::vector<std::string>& members, int max_restarts,
                                absl::Time now, bool restore) {
  if (job_id.empty() || members.empty()) {
    return absl::InvalidArgumentError("manage: a job id and at least one member are required");
  }
  absl::MutexLock lock(&mu_);
  Job* job = findLocked(job_id);
  if (job == nullptr) {
    auto created = std::make_unique<Job>();
    created->id = job_id;
    created->token = token;
    created->managed = true;
    created->max_restarts = max_restarts;
    created->restoring = restore;
    job = created.get();
    jobs_[job_id] = std::move(created);
  }
  if (!job->managed) {
    return absl::FailedPreconditionError(
        absl::StrCat("job '", job_id, "' was started by its agents, not by the scheduler"));
  }
  if (job->ended) {
    return absl::FailedPreconditionError(
        absl::StrCat("job '", job_id, "' has already ended: ", job->end.reason()));
  }
  job->allowed = members;
  job->min_nodes = job->max_nodes = static_cast<int>(members.size());
  // Members the scheduler took away leave the round at once: the others need a new one.
  if (job->round_active) {
    for (const std::string& id : job->members) {
      if (std::find(members.begin(), members.end(), id) == members.end()) {
        job->round_active = false;
        break;
      }
    }
  }
  evaluateLocked(*job, now);
  return absl::OkStatus();
}

void Rendezvous::forget(const std::string& job_id, const std::string& reason) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  Job& job = *it->second;
  if (!job.ended) {
    v1::RoundEvent event;
    event.mutable_job_end()->set_succeeded(false);
    event.mutable_job_end()->set_reason(reason);
    for (auto& [id, agent] : job.agents) sendLocked(agent, event);
  }
  jobs_.erase(it);
}

absl::Time Rendezvous::tick(absl::Time now) {
  absl::MutexLock lock(&mu_);
  absl::Time next = absl::InfiniteFuture();
  std::vector<std::string> gone;
  for (auto& [job_id, job_ptr] : jobs_) {
    Job& job = *job_ptr;
    if (job.ended) {
      if (now >= job.ended_at + settings_.ended_job_retention) {
        gone.push_back(job_id);
      } else {
        next = std::min(next, job.ended_at + settings_.ended_job_retention);
      }
      continue;
    }
    std::vector<std::string> expired;
    for (const auto& [id, a] : job.agents) {
      const absl::Time limit = a.last_seen + settings_.heartbeat_timeout;
      if (now >= limit) {
        expired.push_back(id);
      } else {
        next = std::min(next, limit);
      }
    }
    for (const auto& id : expired) {
      removeAgentLocked(
          job, id,
          absl::StrCat("no heartbeat for ", absl::FormatDuration(settings_.heartbeat_timeout)),
          now);
    }
    evaluateLocked(job, now);
    if (!job.ended) next = std::min({next, job.last_call_deadline, job.join_deadline});
  }
  for (const auto& id : gone) jobs_.erase(id);
  return next;
}

absl::StatusOr<std::shared_ptr<KvStore>> Rendezvous::store(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  Job* job = findLocked(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  return job->store;
}

std::vector<std::shared_ptr<KvStore>> Rendezvous::stores() {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<KvStore>> out;
  out.reserve(jobs_.size());
  for (auto& [id, job] : jobs_) out.push_back(job->store);
  return out;
}

absl::StatusOr<Rendezvous::JobView> Rendezvous::view(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  const Job& job = *it->second;
  JobView v;
  v.round = job.round;
  v.restart_count = job.restart_count;
  v.members = job.members;
  v.agents = static_cast<int>(job.agents.size());
  v.ended = job.ended;
  v.succeeded = job.ended && job.end.succeeded();
  v.end_reason = job.end.reason();
  return v;
}

}  // namespace gangway::scheduler
