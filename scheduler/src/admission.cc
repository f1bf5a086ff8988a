#include "gangway/scheduler/admission.h"

#include <algorithm>
#include <set>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

namespace gangway::scheduler {
namespace {

bool usable(const ClusterState& s, const std::string& node) {
  const auto it = s.nodes.find(node);
  return it != s.nodes.end() && it->second.healthy && !it->second.draining;
}

// `count` of `candidates`, by topology: the leaf that fits them most tightly (or the largest
// leaves first when none does), nodes of one NVLink domain together. Leaves in `prefer` first.
std::vector<std::string> pickNodes(const ClusterState& s, std::vector<std::string> candidates,
                                   size_t count, const std::set<std::string>& prefer = {}) {
  std::map<std::string, std::vector<std::string>> by_leaf;
  for (const std::string& n : candidates) by_leaf[s.nodes.at(n).leaf].push_back(n);
  for (auto& [leaf, nodes] : by_leaf) {
    std::map<std::string, size_t> domain_size;
    for (const std::string& n : nodes) ++domain_size[s.nodes.at(n).nvlink_domain];
    std::sort(nodes.begin(), nodes.end(), [&](const std::string& a, const std::string& b) {
      const std::string& da = s.nodes.at(a).nvlink_domain;
      const std::string& db = s.nodes.at(b).nvlink_domain;
      if (domain_size[da] != domain_size[db]) return domain_size[da] > domain_size[db];
      return da != db ? da < db : a < b;
    });
  }
  std::vector<std::string> leaves;
  for (const auto& [leaf, nodes] : by_leaf) leaves.push_back(leaf);
  std::sort(leaves.begin(), leaves.end(), [&](const std::string& a, const std::string& b) {
    const bool pa = prefer.contains(a);
    const bool pb = prefer.contains(b);
    if (pa != pb) return pa;
    const size_t sa = by_leaf[a].size();
    const size_t sb = by_leaf[b].size();
    const bool fa = sa >= count;
    const bool fb = sb >= count;
    if (fa != fb) return fa;                    // a leaf that holds the whole job first
    if (fa) return sa != sb ? sa < sb : a < b;  // the tightest such leaf
    return sa != sb ? sa > sb : a < b;          // else the largest leaves
  });
  std::vector<std::string> out;
  for (const std::string& leaf : leaves) {
    for (const std::string& n : by_leaf[leaf]) {
      if (out.size() == count) return out;
      out.push_back(n);
    }
  }
  return out;
}

class Cycle {
 public:
  Cycle(const ClusterState& s, absl::Time now, const PolicyOptions& o)
      : s_(s), now_(now), options_(o), assign_(s.assignments) {}

  std::vector<Decision> run() {
    for (const auto& [job, nodes] : assign_) {
      queue_used_[spec(job).queue] +=
          int64_t{spec(job).gpus_per_node} * static_cast<int64_t>(nodes.size());
    }
    handleLostNodes();
    for (const auto& [node, info] : s_.nodes) {
      if (usable(s_, node) && !assigned_.contains(node)) free_.insert(node);
    }
    admitPending();
    grow();
    return std::move(decisions_);
  }

 private:
  const JobSpec& spec(const std::string& job) const { return s_.jobs.at(job); }

  bool fitsQuota(const std::string& job, size_t nodes) const {
    const JobSpec& j = spec(job);
    const auto q = s_.queue_gpu_quota.find(j.queue);
    if (q == s_.queue_gpu_quota.end() || q->second <= 0) return true;
    const auto used = queue_used_.find(j.queue);
    return (used == queue_used_.end() ? 0 : used->second) +
               int64_t{j.gpus_per_node} * static_cast<int64_t>(nodes) <=
           q->second;
  }

  std::vector<std::string> eligible(const std::string& job) const {
    std::vector<std::string> out;
    for (const std::string& n : free_) {
      if (s_.nodes.at(n).gpus >= spec(job).gpus_per_node && !reserved_.contains(n)) {
        out.push_back(n);
      }
    }
    return out;
  }

  void emit(Decision::Kind kind, const std::string& job, std::vector<std::string> nodes,
            std::string reason) {
    const int64_t gpus = int64_t{spec(job).gpus_per_node} * static_cast<int64_t>(nodes.size());
    auto& mine = assign_[job];
    if (kind == Decision::Kind::kAdmit || kind == Decision::Kind::kGrow) {
      for (const std::string& n : nodes) {
        free_.erase(n);
        assigned_.insert(n);
        mine.push_back(n);
      }
      queue_used_[spec(job).queue] += gpus;
    } else {
      for (const std::string& n : nodes) {
        mine.erase(std::remove(mine.begin(), mine.end(), n), mine.end());
        assigned_.erase(n);
        if (usable(s_, n)) free_.insert(n);
      }
      queue_used_[spec(job).queue] -= gpus;
      if (kind == Decision::Kind::kEvict) assign_.erase(job);
    }
    changed_.insert(job);
    decisions_.push_back({kind, job, std::move(nodes), std::move(reason)});
  }

  void handleLostNodes() {
    for (const auto& [job, nodes] : s_.assignments) {
      for (const std::string& n : nodes) assigned_.insert(n);
    }
    for (const auto& [job, nodes] : s_.assignments) {
      std::vector<std::string> lost;
      std::vector<std::string> kept;
      for (const std::string& n : nodes) {
        (usable(s_, n) ? kept : lost).push_back(n);
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
        if (s_.nodes.at(n).gpus >= j.gpus_per_node) v.all.push_back(n);
      }
      const size_t extra = nodes.size() - static_cast<size_t>(spec(other).min_nodes);
      // Shrinking removes the nodes this job can use first.
      v.extra.assign(v.all.begin(), v.all.begin() + std::min(extra, v.all.size()));
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
             std::vector<std::string>(v.extra.begin(), v.extra.begin() + take),
             absl::StrCat("preempted by ", job, " (priority ", j.priority, ")"));
        left -= take;
      }
      return true;
    }
    // Shrink is not enough: evict whole jobs, the set freeing the fewest nodes that covers the
    // need (the smallest single job that does, else the largest first, then drop what is spare).
    std::vector<const Victim*> order;
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
    for (const auto& [job, j] : s_.jobs) {
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
      std::vector<std::string> can = eligible(job);
      if (can.size() < min && !head_blocked && preemptFor(job, min - can.size())) {
        can = eligible(job);
      }
      if (can.size() >= min) {
        admitted_[job] = decisions_.size();
        emit(Decision::Kind::kAdmit, job, pickNodes(s_, can, min),
             head_blocked ? "backfilled on nodes the first waiting job cannot use" : "admitted");
        continue;
      }
      if (!head_blocked) {
        head_blocked = true;  // the head: keep what it can use for it
        for (const std::string& n : can) reserved_.insert(n);
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
      const auto last = s_.last_resize.find(job);
      if (last != s_.last_resize.end() && now_ - last->second < options_.min_resize_interval) {
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
      const std::vector<std::string> can = eligible(job);
      want = std::min(want, can.size());
      if (want == 0) continue;
      std::set<std::string> leaves;
      for (const std::string& n : assign_.at(job)) leaves.insert(s_.nodes.at(n).leaf);
      std::vector<std::string> more = pickNodes(s_, can, want, leaves);
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

  const ClusterState& s_;
  const absl::Time now_;
  const PolicyOptions& options_;
  std::map<std::string, std::vector<std::string>> assign_;
  std::set<std::string> assigned_;
  std::set<std::string> free_;
  std::set<std::string> reserved_;
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
