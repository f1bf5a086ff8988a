#include "gangway/scheduler/rendezvous.h"

#include <algorithm>
#include <cstdint>
#include <tuple>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>

#include "gangway/common/log.h"
#include "gangway/common/status.h"
#include "gangway/common/text.h"

#include "validate.h"

namespace gangway::scheduler {
namespace {

Logger& log() {
  static Logger& l = logger("rendezvous");
  return l;
}

}  // namespace

std::string formatNnodes(int min, int max) {
  return min == max ? absl::StrCat(min) : absl::StrCat(min, ":", max);
}

std::string masterPortKey(int64_t round) {
  return absl::StrCat("gangway/round/", round, "/master_port");
}
std::string layoutKey(int64_t round) { return absl::StrCat("gangway/round/", round, "/layout"); }

Rendezvous::Job* Rendezvous::findLocked(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : it->second.get();
}

absl::StatusOr<std::pair<Rendezvous::Job*, Rendezvous::Agent*>> Rendezvous::findAgentLocked(
    const std::string& job_id, const std::string& agent_id, const std::string& session) {
  Job* job = findLocked(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  auto it = job->agents.find(agent_id);
  if (it == job->agents.end()) {
    return absl::NotFoundError(
        absl::StrCat("agent '", agent_id, "' is not a member of job '", job_id, "'; join first"));
  }
  if (!sessionMatches(it->second.session, session)) {
    return absl::PermissionDeniedError(absl::StrCat("this call needs the session of agent '",
                                                    agent_id, "' of job '", job_id, "'"));
  }
  return std::pair{job, &it->second};
}

std::unique_ptr<Rendezvous::Job> Rendezvous::newJobLocked(const std::string& job_id,
                                                          const std::string& token) const {
  auto job = std::make_unique<Job>();
  job->id = job_id;
  job->token = token;
  job->store_token = storeTokenFor(token.empty() ? settings_.join_token : token, job_id);
  job->store = std::make_shared<KvStore>(settings_.limits.store);
  return job;
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

bool sessionMatches(const std::string& bound, const std::string& presented) {
  return constantTimeEquals(bound, presented);
}

absl::StatusOr<Rendezvous::Secrets> Rendezvous::secrets(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  const Job& job = *it->second;
  const bool own = !job.token.empty();
  return Secrets{.secret = own ? job.token : settings_.join_token,
                 .own_token = own,
                 .store_token = job.store_token};
}

absl::Status Rendezvous::checkJoin(const v1::JoinRequest& req) const {
  const Limits& limits = settings_.limits;
  GW_RETURN_IF_ERROR(checkSize(req, limits.max_control_request_bytes, "join request"));
  GW_RETURN_IF_ERROR(checkName(req.job_id(), "join: job id"));
  GW_RETURN_IF_ERROR(checkName(req.agent_id(), "join: agent id"));
  GW_RETURN_IF_ERROR(checkAddress(req.address(), "join: address"));
  GW_RETURN_IF_ERROR(checkTopology(req.topology(), limits));
  if (req.local_world_size() < 1 || req.local_world_size() > limits.max_workers_per_node) {
    return absl::InvalidArgumentError(absl::StrCat("join: local_world_size ",
                                                   req.local_world_size(), ": expected 1 to ",
                                                   limits.max_workers_per_node));
  }
  if (req.min_nodes() < 1 || req.max_nodes() < req.min_nodes() ||
      req.max_nodes() > limits.max_nodes_per_job) {
    return absl::InvalidArgumentError(
        absl::StrCat("join: --nnodes ", req.min_nodes(), ":", req.max_nodes(),
                     " is not 1 <= MIN <= MAX <= ", limits.max_nodes_per_job));
  }
  if (req.max_restarts() < 0) {
    return absl::InvalidArgumentError("join: max_restarts must be >= 0");
  }
  if (!isPrintableLine(req.parallelism(), 256)) {
    return absl::InvalidArgumentError(absl::StrCat("join: --parallelism '",
                                                   shown(req.parallelism()),
                                                   "': expected at most 256 printable bytes"));
  }
  return absl::OkStatus();
}

absl::Status Rendezvous::join(const v1::JoinRequest& req, const CallCredentials& caller,
                              absl::Time now) {
  GW_RETURN_IF_ERROR(checkJoin(req));
  const std::string& token = caller.token;
  const Limits& limits = settings_.limits;
  absl::MutexLock lock(&mu_);
  Job* job = findLocked(req.job_id());
  if (job == nullptr && req.scheduled()) {
    return absl::NotFoundError(
        absl::StrCat("job '", req.job_id(), "' is not (or no longer) run by the scheduler"));
  }
  // A new job is created only once the whole request is accepted, so that a refused Join
  // leaves nothing behind.
  std::unique_ptr<Job> created;
  if (job == nullptr) {
    if (jobs_.size() >= limits.max_jobs) {
      return absl::ResourceExhaustedError(absl::StrCat("the control plane holds its limit of ",
                                                       limits.max_jobs, " jobs; job '",
                                                       req.job_id(), "' is not created"));
    }
    if (!settings_.join_token.empty() &&
        !constantTimeEquals(settings_.join_token, caller.join_token)) {
      return absl::PermissionDeniedError(
          absl::StrCat("creating job '", req.job_id(), "' needs the cluster's join token"));
    }
    created = newJobLocked(req.job_id(), token);
    created->min_nodes = req.min_nodes();
    created->max_nodes = req.max_nodes();
    created->max_restarts = req.max_restarts();
    created->parallelism = req.parallelism();
    job = created.get();
  }
  if (job->token.empty() ? !constantTimeEquals(settings_.join_token, caller.join_token)
                         : !constantTimeEquals(job->token, token)) {
    return absl::PermissionDeniedError(
        absl::StrCat("wrong or missing token for job '", job->id, "'"));
  }
  if (job->ended) {
    return absl::FailedPreconditionError(
        absl::StrCat("job '", job->id, "' has already ended: ", job->end.reason()));
  }
  // An agent id another process holds is refused before anything else is compared, so that the
  // answer does not tell a second process with the id about the job's settings.
  if (auto known = job->agents.find(req.agent_id());
      known != job->agents.end() && known->second.sink &&
      !sessionMatches(known->second.session, caller.session)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "agent id '", req.agent_id(), "' of job '", job->id,
        "' is in use by another session whose Watch stream is open (another process with "
        "this agent id?)"));
  }
  if (job->managed) {
    // The scheduler sets this job's size and restarts; the agent's flags are not the job's.
  } else if (req.min_nodes() != job->min_nodes || req.max_nodes() != job->max_nodes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--nnodes ", formatNnodes(req.min_nodes(), req.max_nodes()), " disagrees with job '",
        job->id, "', which has --nnodes ", formatNnodes(job->min_nodes, job->max_nodes)));
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
  if (!job->agents.contains(req.agent_id()) && job->agents.size() >= limits.max_agents_per_job) {
    return absl::ResourceExhaustedError(absl::StrCat("job '", job->id, "' holds its limit of ",
                                                     limits.max_agents_per_job, " agents"));
  }
  if (created != nullptr) {
    log().debug("job {}: created by agent {} (--nnodes {}, --max-restarts {})", req.job_id(),
                req.agent_id(), formatNnodes(req.min_nodes(), req.max_nodes()), req.max_restarts());
    jobs_[req.job_id()] = std::move(created);
  }
  if (auto known = job->agents.find(req.agent_id());
      known != job->agents.end() && !sessionMatches(known->second.session, caller.session)) {
    // The process that held the id is gone (its stream closed): this one takes it over.
    known->second.session = caller.session;
  }
  auto [it, inserted] = job->agents.try_emplace(req.agent_id());
  Agent& agent = it->second;
  agent.last_seen = now;
  if (!inserted) return absl::OkStatus();  // a retried Join
  agent.info = req;
  agent.session = caller.session;
  agent.join_seq = job->join_counter++;
  log().debug("job {}: agent {} joined from {} with {} workers ({} agents)", job->id,
              req.agent_id(), req.address(), req.local_world_size(), job->agents.size());
  evaluateLocked(*job, now);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Rendezvous::watch(const std::string& job_id, const std::string& agent_id,
                                           Sink sink, absl::Time now, Close close,
                                           const std::string& session) {
  absl::MutexLock lock(&mu_);
  auto found = findAgentLocked(job_id, agent_id, session);
  if (!found.ok()) return found.status();
  Agent& agent = *found->second;
  if (agent.close) {
    agent.close(absl::AbortedError(absl::StrCat("another Watch stream for agent '", agent_id,
                                                "' of job '", job_id, "' replaced this one")));
  }
  agent.sink = std::move(sink);
  agent.close = std::move(close);
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
  it->second.close = nullptr;
  it->second.watch_handle = 0;
  if (job->ended || !lost) return;
  removeAgentLocked(*job, agent_id, "its Watch stream closed", now);
  evaluateLocked(*job, now);
}

absl::StatusOr<int64_t> Rendezvous::heartbeat(const std::string& job_id,
                                              const std::string& agent_id, absl::Time now,
                                              const std::string& session) {
  absl::MutexLock lock(&mu_);
  auto found = findAgentLocked(job_id, agent_id, session);
  if (!found.ok()) return found.status();
  found->second->last_seen = now;
  return found->first->round;
}

absl::Status Rendezvous::leave(const std::string& job_id, const std::string& agent_id,
                               const std::string& reason, absl::Time now,
                               const std::string& session) {
  absl::MutexLock lock(&mu_);
  Job* job = findLocked(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  if (!job->agents.contains(agent_id)) return absl::OkStatus();  // already gone
  GW_RETURN_IF_ERROR(findAgentLocked(job_id, agent_id, session).status());
  if (job->ended) {
    job->agents.erase(agent_id);
    return absl::OkStatus();
  }
  removeAgentLocked(*job, agent_id, absl::StrCat("it left (", escapeLine(reason), ")"), now);
  evaluateLocked(*job, now);
  return absl::OkStatus();
}

absl::Status Rendezvous::report(const v1::WorkerReport& report, absl::Time now,
                                const std::string& session) {
  const std::string failure = escapeLine(report.failure());
  absl::MutexLock lock(&mu_);
  auto found = findAgentLocked(report.job_id(), report.agent_id(), session);
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
             report.agent_id(), failure);
  if (job->restart_count >= job->max_restarts) {
    endJobLocked(*job, false,
                 absl::StrCat("workers failed on agent ", report.agent_id(), " (", failure,
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

absl::Status Rendezvous::publishMasterPort(const v1::MasterPortRequest& req, absl::Time now,
                                           const std::string& session) {
  if (req.port() < 1 || req.port() > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("master port ", req.port(), " out of range"));
  }
  absl::MutexLock lock(&mu_);
  Job* job = findLocked(req.job_id());
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no job '", req.job_id(), "'"));
  if (job->agents.contains(req.agent_id())) {
    auto found = findAgentLocked(req.job_id(), req.agent_id(), session);
    if (!found.ok()) return found.status();
    found->second->last_seen = now;
  }
  if (job->ended || req.round() != job->round || !job->round_active ||
      job->pending_assignments.empty()) {
    return absl::OkStatus();  // a stale round: nothing to complete
  }
  if (job->members.empty() || job->members[0] != req.agent_id()) {
    return absl::PermissionDeniedError(
        absl::StrCat("agent '", req.agent_id(), "' is not node rank 0 of round ", job->round));
  }
  job->store->setOwn(masterPortKey(job->round), absl::StrCat(req.port()));
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

absl::Status Rendezvous::manage(const std::string& job_id, const std::string& token,
                                const std::vector<std::string>& members, int max_restarts,
                                absl::Time now, bool restore) {
  if (job_id.empty() || members.empty()) {
    return absl::InvalidArgumentError("manage: a job id and at least one member are required");
  }
  absl::MutexLock lock(&mu_);
  Job* job = findLocked(job_id);
  if (job == nullptr) {
    auto created = newJobLocked(job_id, token);
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
  v.managed = job.managed;
  return v;
}

}  // namespace gangway::scheduler
