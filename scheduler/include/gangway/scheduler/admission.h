// The scheduling policy of `gangway scheduler`, as a pure function of the cluster's state and the
// time (injected), so that every rule is a unit test:
//
//   1. Lost capacity first: a running job on an unhealthy or draining node shrinks off it; a job
//      left below its minimum is taken down whole and queued again (no gang ever runs below min).
//      A job above its max_nodes (an operator's resize) shrinks off its last nodes.
//   2. Gang admission, all or nothing: pending jobs by priority (high first), then submission
//   order;
//      a job starts only when min_nodes nodes (each with gpus_per_node GPUs, within its queue's GPU
//      quota) are free for it. Nodes are chosen by topology: the leaf switch that fits the job most
//      tightly, NVLink domains kept together.
//   3. Preemption for a higher-priority job that does not fit: lower-priority elastic jobs shrink
//      toward their minimum first, lowest priority first; only if that is not enough are whole
//      lower-priority jobs evicted, choosing the set that frees the fewest nodes.
//   4. The first job that still cannot start (the head) reserves the free nodes it could use:
//      later jobs are backfilled only onto nodes the head cannot use, so they never delay it.
//   5. Elastic growth: running elastic jobs below max_nodes take the remaining free nodes, all in
//      one decision per job (one new rendezvous round), at most once per min_resize_interval.
//      A job admitted in the same cycle starts with them (its admission takes them: one round).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <absl/time/time.h>

namespace gangway::scheduler {

struct NodeInfo {
  int32_t gpus = 0;
  std::string leaf;           // the node's leaf switch (its network location)
  std::string nvlink_domain;  // "" when the node has none
  bool healthy = true;        // false after a missed heartbeat
  bool draining = false;      // `gangway drain`
};

struct JobSpec {
  std::string queue = "default";
  int32_t priority = 0;  // higher runs first and may preempt lower
  int32_t min_nodes = 1;
  int32_t max_nodes = 1;  // > min_nodes: elastic
  int32_t gpus_per_node = 0;
  int64_t submit_seq = 0;  // submission order
};

struct ClusterState {
  std::map<std::string, NodeInfo> nodes;
  std::map<std::string, JobSpec> jobs;                          // every job not finished
  std::map<std::string, std::vector<std::string>> assignments;  // running job -> its nodes
  std::map<std::string, absl::Time> last_resize;                // running job -> last change
  std::map<std::string, int64_t> queue_gpu_quota;               // missing or 0: unlimited
};

struct Decision {
  enum class Kind { kAdmit, kGrow, kShrink, kEvict };
  Kind kind = Kind::kAdmit;
  std::string job;
  std::vector<std::string> nodes;  // added (admit, grow) or removed (shrink, evict)
  std::string reason;
};

struct PolicyOptions {
  absl::Duration min_resize_interval = absl::Seconds(30);  // anti-thrash, for growth
};

// One scheduling cycle: the decisions, in the order to carry them out.
std::vector<Decision> schedule(const ClusterState& state, absl::Time now,
                               const PolicyOptions& options = {});
// Applies decisions to the state (what the scheduler persists once they are acknowledged).
void apply(ClusterState& state, const std::vector<Decision>& decisions, absl::Time now);

}  // namespace gangway::scheduler
