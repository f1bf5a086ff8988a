// How the rendezvous forms rounds: which agents are members, in which node order (join order,
// or the topology's), when a round forms, what each member is assigned, and whether a restored
// job's members may keep the round they report. The rest of the state machine is rendezvous.cc.
#include <algorithm>
#include <cstdint>
#include <tuple>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>

#include "gangway/common/log.h"
#include "gangway/scheduler/rendezvous.h"
#include "gangway/topology/network_path.h"
#include "gangway/topology/placement.h"

namespace gangway::scheduler {

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
      endJobLocked(
          job, false,
          absl::StrFormat("only %d of the %d nodes that --nnodes %s needs joined job "
                          "'%s' within join_timeout (%s)",
                          present, job.min_nodes, formatNnodes(job.min_nodes, job.max_nodes),
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
  static Logger& log = logger("rendezvous");
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
  job.store->setOwn(layoutKey(job.round), layout.SerializeAsString());
  // The round before this one may still be read by workers that are stopping; older ones are
  // dropped, so that a job restarted over and over does not grow its store.
  if (job.round > 2) {
    job.store->remove(layoutKey(job.round - 2));
    job.store->remove(masterPortKey(job.round - 2));
  }
  log.debug("job {}: round {} formed with {} nodes, {} workers (restart {})", job.id, job.round,
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

bool Rendezvous::adoptRoundLocked(Job& job) {
  static Logger& log = logger("rendezvous");
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
    log.info("job {}: restored, its agents run different rounds: a new round", job.id);
    return false;
  }
  job.members = std::move(by_rank);
  job.round_active = true;
  job.last_call_deadline = absl::InfiniteFuture();
  log.info("job {}: restored, its {} nodes go on with round {}", job.id, job.members.size(),
           job.round);
  return true;
}

}  // namespace gangway::scheduler
