#include "gangway/scheduler/admission.h"

#include <algorithm>
#include <set>

#include <absl/container/flat_hash_map.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

namespace gangway::scheduler {
namespace {

class Cycle {
 public:
  Cycle(const ClusterState& s, absl::Time now, const PolicyOptions& o)
      : state_(s), now_(now), options_(o), assign_(s.assignments) {
    // Ids in first-seen order, then renumbered in name order (the tie-breaks compare names).
    absl::flat_hash_map<absl::string_view, int> leaf_ids, domain_ids;
    std::vector<absl::string_view> leaves, domains;
    id_of_.reserve(state_.nodes.size());
    for (const auto& [node, info] : state_.nodes) {
      id_of_.emplace(node, static_cast<int>(names_.size()));
      names_.push_back(&node);
      infos_.push_back(&info);
      usable_.push_back(static_cast<char>(info.healthy && !info.draining));
      auto l = leaf_ids.try_emplace(info.leaf, static_cast<int>(leaves.size()));
      if (l.second) leaves.emplace_back(info.leaf);
      leaf_.push_back(l.first->second);
      auto d = domain_ids.try_emplace(info.nvlink_domain, static_cast<int>(domains.size()));
      if (d.second) domains.emplace_back(info.nvlink_domain);
      domain_.push_back(d.first->second);
    }
    auto renumber = [](std::vector<absl::string_view>& names, std::vector<int>& ids) {
      std::vector<int> order(names.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
      std::sort(order.begin(), order.end(), [&](int a, int b) { return names[a] < names[b]; });
      std::vector<int> rank(names.size());
      for (size_t i = 0; i < order.size(); ++i) rank[order[i]] = static_cast<int>(i);
      for (int& id : ids) id = rank[id];
      std::vector<absl::string_view> sorted;
      sorted.reserve(order.size());
      for (const int i : order) sorted.push_back(names[i]);
      names = std::move(sorted);
    };
    renumber(leaves, leaf_);
    renumber(domains, domain_);
    for (const absl::string_view l : leaves) leaf_names_.emplace_back(l);
    reserved_.assign(names_.size(), 0);
    assigned_.assign(names_.size(), 0);
    by_leaf_.resize(leaf_names_.size());
    domain_count_.assign(domains.size(), 0);
  }

  std::vector<Decision> run() {
    for (const auto& [job, nodes] : assign_) {
      queue_used_[spec(job).queue] +=
          int64_t{spec(job).gpus_per_node} * static_cast<int64_t>(nodes.size());
    }
    handleLostNodes();
    for (int i = 0; i < static_cast<int>(names_.size()); ++i) {
      if (usable_[i] && !assigned_[i]) free_.insert(i);
    }
    admitPending();
    grow();
    return std::move(decisions_);
  }

 private:
  const JobSpec& spec(const std::string& job) const { return state_.jobs.at(job); }

  bool fitsQuota(const std::string& job, size_t nodes) const {
    const JobSpec& j = spec(job);
    const auto q = state_.queue_gpu_quota.find(j.queue);
    if (q == state_.queue_gpu_quota.end() || q->second <= 0) return true;
    const auto used = queue_used_.find(j.queue);
    return (used == queue_used_.end() ? 0 : used->second) +
               int64_t{j.gpus_per_node} * static_cast<int64_t>(nodes) <=
           q->second;
  }

  // -1 for a node the state does not know (an assignment may outlive its node's record).
  int idOf(const std::string& n) const {
    const auto it = id_of_.find(n);
    return it == id_of_.end() ? -1 : it->second;
  }
  bool usableId(int id) const { return id >= 0 && usable_[id]; }

  std::vector<int> eligible(const std::string& job) const {
    std::vector<int> out;
    const int32_t need = spec(job).gpus_per_node;
    for (const int n : free_) {
      if (infos_[n]->gpus >= need && !reserved_[n]) out.push_back(n);
    }
    return out;
  }

  // As before: `count` of `candidates` by topology, with integer ids (name order) in place of
  // node, leaf and domain names, and only the leaves taken from sorted inside.
  std::vector<std::string> pickNodes(const std::vector<int>& candidates, size_t count,
                                     const std::set<std::string>& prefer = {}) {
    std::vector<int> leaves;
    for (const int n : candidates) {
      auto& v = by_leaf_[leaf_[n]];
      if (v.empty()) leaves.push_back(leaf_[n]);
      v.push_back(n);
    }
    std::map<int, bool> is_pref;
    for (const int l : leaves) is_pref[l] = prefer.contains(leaf_names_[l]);
    std::sort(leaves.begin(), leaves.end(), [&](int a, int b) {
      const bool pa = is_pref[a];
      const bool pb = is_pref[b];
      if (pa != pb) return pa;
      const size_t sa = by_leaf_[a].size();
      const size_t sb = by_leaf_[b].size();
      const bool fa = sa >= count;
      const bool fb = sb >= count;
      if (fa != fb) return fa;
      if (fa) return sa != sb ? sa < sb : a < b;
      return sa != sb ? sa > sb : a < b;
    });
    std::vector<std::string> out;
    for (const int leaf : leaves) {
      if (out.size() == count) break;
      std::vector<int>& nodes = by_leaf_[leaf];
      for (const int n : nodes) ++domain_count_[domain_[n]];
      std::sort(nodes.begin(), nodes.end(), [&](int a, int b) {
        const int da = domain_[a];
        const int db = domain_[b];
        if (domain_count_[da] != domain_count_[db]) return domain_count_[da] > domain_count_[db];
        return da != db ? da < db : a < b;
      });
      for (const int n : nodes) --domain_count_[domain_[n]];
      for (const int n : nodes) {
        if (out.size() == count) break;
        out.push_back(*names_[n]);
      }
    }
    for (const int leaf : leaves) by_leaf_[leaf].clear();
    return out;
  }

  void emit(Decision::Kind kind, const std::string& job, std::vector<std::string> nodes,
            std::string reason) {
    const int64_t gpus = int64_t{spec(job).gpus_per_node} * static_cast<int64_t>(nodes.size());
    auto& mine = assign_[job];
    if (kind == Decision::Kind::kAdmit || kind == Decision::Kind::kGrow) {
      for (const std::string& n : nodes) {
        const int id = idOf(n);
        free_.erase(id);
        if (id >= 0) assigned_[id] = 1;
        mine.push_back(n);
      }
      queue_used_[spec(job).queue] += gpus;
    } else {
      for (const std::string& n : nodes) {
        mine.erase(std::remove(mine.begin(), mine.end(), n), mine.end());
        const int id = idOf(n);
        if (id >= 0) assigned_[id] = 0;
        if (usableId(id)) free_.insert(id);
      }
      queue_used_[spec(job).queue] -= gpus;
      if (kind == Decision::Kind::kEvict) assign_.erase(job);
    }
    changed_.insert(job);
    decisions_.push_back({kind, job, std::move(nodes), std::move(reason)});
  }

  void handleLostNodes() {
    for (const auto& [job, nodes] : state_.assignments) {
      for (const std::string& n : nodes) {
        if (const int id = idOf(n); id >= 0) assigned_[id] = 1;
      }
    }
    for (const auto& [job, nodes] : state_.assignments) {
      std::vector<std::string> lost;
      std::vector<std::string> kept;
      for (const std::string& n : nodes) {
        (usableId(idOf(n)) ? kept : lost).push_back(n);
      }
      // A job resized below its size gives up its last nodes.
      const auto max = static_cast<size_t>(spec(job).max_nodes);
      const bool over = kept.size() > max;
      if (over) lost.insert(lost.end(), kept.begin() + static_cast<ptrdiff_t>(max), kept.end());
      if (lost.empty()) continue;
      const std::string why =
          over && lost.size() == kept.size() - max
              ? absl::StrCat("resized to ", max, " nodes")
              : absl::StrCat("lost, draining or above the job's size: ", absl::StrJoin(lost, ","));
      if (nodes.size() - lost.size() >= static_cast<size_t>(spec(job).min_nodes)) {
        emit(Decision::Kind::kShrink, job, lost, why);
      } else {
        emit(Decision::Kind::kEvict, job, nodes, absl::StrCat(why, "; below its minimum"));
      }
    }
  }

  // Frees `need` nodes usable by `job` from lower-priority jobs, shrinking elastic ones first and
  // evicting the fewest nodes' worth of whole jobs only if that is not enough. False (and nothing
  // emitted) when even that cannot make room.
  bool preemptFor(const std::string& job, size_t need) {
    const JobSpec& j = spec(job);
    struct Victim {
      std::string job;
      std::vector<std::string> extra;  // usable by `job`, above the victim's min
      std::vector<std::string> all;    // usable by `job`, all of the victim's nodes
    };
    std::vector<Victim> victims;
    for (const auto& [other, nodes] : assign_) {
      if (changed_.contains(other) || spec(other).priority >= j.priority) continue;
      Victim v{other, {}, {}};
      for (const std::string& n : nodes) {
        if (state_.nodes.at(n).gpus >= j.gpus_per_node) v.all.push_back(n);
      }
      const size_t extra = nodes.size() - static_cast<size_t>(spec(other).min_nodes);
      // Shrinking removes the nodes this job can use first.
      v.extra.assign(v.all.begin(),
                     v.all.begin() + static_cast<std::ptrdiff_t>(std::min(extra, v.all.size())));
      if (!v.all.empty()) victims.push_back(std::move(v));
    }
    std::sort(victims.begin(), victims.end(), [&](const Victim& a, const Victim& b) {
      const int32_t pa = spec(a.job).priority;
      const int32_t pb = spec(b.job).priority;
      return pa != pb ? pa < pb : a.job < b.job;
    });
    size_t shrinkable = 0;
    for (const Victim& v : victims) shrinkable += v.extra.size();
    if (shrinkable >= need) {
      size_t left = need;
      for (const Victim& v : victims) {
        if (left == 0) break;
        const size_t take = std::min(left, v.extra.size());
        if (take == 0) continue;
        emit(Decision::Kind::kShrink, v.job,
             std::vector<std::string>(v.extra.begin(),
                                      v.extra.begin() + static_cast<std::ptrdiff_t>(take)),
             absl::StrCat("preempted by ", job, " (priority ", j.priority, ")"));
        left -= take;
      }
      return true;
    }
    // Shrink is not enough: evict whole jobs, the set freeing the fewest nodes that covers the
    // need (the smallest single job that does, else the largest first, then drop what is spare).
    std::vector<const Victim*> order;
    order.reserve(victims.size());
    for (const Victim& v : victims) order.push_back(&v);
    std::sort(order.begin(), order.end(), [](const Victim* a, const Victim* b) {
      return a->all.size() != b->all.size() ? a->all.size() < b->all.size() : a->job < b->job;
    });
    std::vector<const Victim*> chosen;
    for (const Victim* v : order) {
      if (v->all.size() >= need) {
        chosen = {v};
        break;
      }
    }
    if (chosen.empty()) {
      size_t got = 0;
      for (auto it = order.rbegin(); it != order.rend() && got < need; ++it) {
        chosen.push_back(*it);
        got += (*it)->all.size();
      }
      if (got < need) return false;
      // Drop victims that are not needed (smallest first is kept, so try the largest to drop).
      for (auto it = chosen.begin(); it != chosen.end();) {
        if (got - (*it)->all.size() >= need) {
          got -= (*it)->all.size();
          it = chosen.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (const Victim* v : chosen) {
      emit(Decision::Kind::kEvict, v->job, assign_.at(v->job),
           absl::StrCat("preempted by ", job, " (priority ", j.priority, ")"));
    }
    return true;
  }

  void admitPending() {
    std::vector<std::string> pending;
    for (const auto& [job, j] : state_.jobs) {
      if (!assign_.contains(job) && !changed_.contains(job)) pending.push_back(job);
    }
    std::sort(pending.begin(), pending.end(), [&](const std::string& a, const std::string& b) {
      const JobSpec& ja = spec(a);
      const JobSpec& jb = spec(b);
      if (ja.priority != jb.priority) return ja.priority > jb.priority;
      return ja.submit_seq != jb.submit_seq ? ja.submit_seq < jb.submit_seq : a < b;
    });
    bool head_blocked = false;
    for (const std::string& job : pending) {
      const auto min = static_cast<size_t>(spec(job).min_nodes);
      if (!fitsQuota(job, min)) continue;  // waits for its queue, blocks no one
      std::vector<int> can = eligible(job);
      if (can.size() < min && !head_blocked && preemptFor(job, min - can.size())) {
        can = eligible(job);
      }
      if (can.size() >= min) {
        admitted_[job] = decisions_.size();
        emit(Decision::Kind::kAdmit, job, pickNodes(can, min),
             head_blocked ? "backfilled on nodes the first waiting job cannot use" : "admitted");
        continue;
      }
      if (!head_blocked) {
        head_blocked = true;  // the head: keep what it can use for it
        for (const int n : can) reserved_[n] = 1;
      }
    }
  }

  void grow() {
    std::vector<std::string> elastic;
    for (const auto& [job, nodes] : assign_) {
      if ((changed_.contains(job) && !admitted_.contains(job)) ||
          nodes.size() >= static_cast<size_t>(spec(job).max_nodes)) {
        continue;
      }
      const auto last = state_.last_resize.find(job);
      if (last != state_.last_resize.end() && now_ - last->second < options_.min_resize_interval) {
        continue;
      }
      elastic.push_back(job);
    }
    std::sort(elastic.begin(), elastic.end(), [&](const std::string& a, const std::string& b) {
      const JobSpec& ja = spec(a);
      const JobSpec& jb = spec(b);
      if (ja.priority != jb.priority) return ja.priority > jb.priority;
      return ja.submit_seq != jb.submit_seq ? ja.submit_seq < jb.submit_seq : a < b;
    });
    for (const std::string& job : elastic) {
      size_t want = static_cast<size_t>(spec(job).max_nodes) - assign_.at(job).size();
      while (want > 0 && !fitsQuota(job, want)) --want;
      const std::vector<int> can = eligible(job);
      want = std::min(want, can.size());
      if (want == 0) continue;
      std::set<std::string> leaves;
      for (const std::string& n : assign_.at(job)) leaves.insert(state_.nodes.at(n).leaf);
      std::vector<std::string> more = pickNodes(can, want, leaves);
      if (admitted_.contains(job)) {
        // Admitted in this cycle: start at the larger size at once (one round, not two).
        emit(Decision::Kind::kGrow, job, std::move(more), "");
        std::vector<std::string> added = std::move(decisions_.back().nodes);
        decisions_.pop_back();
        Decision& admit = decisions_[admitted_.at(job)];
        admit.nodes.insert(admit.nodes.end(), added.begin(), added.end());
        continue;
      }
      emit(Decision::Kind::kGrow, job, std::move(more), "capacity available");
    }
  }

  const ClusterState& state_;
  const absl::Time now_;
  const PolicyOptions& options_;
  std::map<std::string, std::vector<std::string>> assign_;
  std::vector<char> assigned_;
  std::vector<char> usable_;
  absl::flat_hash_map<absl::string_view, int> id_of_;
  std::set<int> free_;
  std::vector<char> reserved_;
  std::vector<const std::string*> names_;
  std::vector<const NodeInfo*> infos_;
  std::vector<int> leaf_, domain_;
  std::vector<std::string> leaf_names_;
  std::vector<std::vector<int>> by_leaf_;
  std::vector<size_t> domain_count_;
  std::set<std::string> changed_;
  std::map<std::string, size_t> admitted_;  // job admitted in this cycle -> its decision's index
  std::map<std::string, int64_t> queue_used_;
  std::vector<Decision> decisions_;
};

}  // namespace

std::vector<Decision> schedule(const ClusterState& state, absl::Time now,
                               const PolicyOptions& options) {
  return Cycle(state, now, options).run();
}

void apply(ClusterState& state, const std::vector<Decision>& decisions, absl::Time now) {
  for (const Decision& d : decisions) {
    auto& nodes = state.assignments[d.job];
    switch (d.kind) {
      case Decision::Kind::kAdmit:
      case Decision::Kind::kGrow:
        nodes.insert(nodes.end(), d.nodes.begin(), d.nodes.end());
        state.last_resize[d.job] = now;
        break;
      case Decision::Kind::kShrink:
        for (const std::string& n : d.nodes) {
          nodes.erase(std::remove(nodes.begin(), nodes.end(), n), nodes.end());
        }
        state.last_resize[d.job] = now;
        break;
      case Decision::Kind::kEvict:
        state.assignments.erase(d.job);
        state.last_resize.erase(d.job);
        break;
    }
  }
}

}  // namespace gangway::scheduler
