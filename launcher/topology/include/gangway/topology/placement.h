// Cluster ordering: node ranks chosen so that rings and parallel groups cross the fewest switches.
//
// Each node reports its switch path (top first: "spine2/leaf7") and its NVLink domain. The order
// packs nodes bottom-up through that tree: within an NVLink domain into tensor-parallel chunks
// (nodes per TP group), then within each leaf, then each spine, into blocks of the nodes that one
// data-parallel group spans (one pipeline stage in Megatron's order: tp, cp, ep, dp, pp, tp
// fastest). A block that fits a leaf never straddles two; leftovers of sibling subtrees are
// combined largest first. With no --parallelism the block is the whole job, which orders nodes by
// domain, leaf and spine: the job's ring enters each leaf and spine once, the lower bound.
#pragma once

#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <absl/strings/string_view.h>

namespace gangway::topology {

struct PlacementNode {
  std::string name;               // host name (the tie-breaker)
  std::vector<std::string> path;  // switch path, top first; empty: unknown (one shared leaf)
  std::string domain;             // NVLink domain; empty: none
};

// Megatron's parallel dimensions. dp = 0 means "whatever the world size leaves".
struct Parallelism {
  int tp = 1;
  int cp = 1;
  int ep = 1;
  int dp = 0;
  int pp = 1;
};
// "tp=8,pp=4[,dp=16,cp=..,ep=..]"; InvalidArgument naming the bad item.
absl::StatusOr<Parallelism> parseParallelism(absl::string_view text);
// Fills dp from the world size and checks tp*cp*ep*dp*pp == world_size.
absl::Status resolveParallelism(Parallelism* p, int world_size);
std::string formatParallelism(const Parallelism& p);

// Node indexes by node rank. `parallelism` null: one ring over the whole job.
std::vector<int> orderNodes(const std::vector<PlacementNode>& nodes, int nproc_per_node,
                            const Parallelism* parallelism);

// The traffic model: bytes each rank sends to its ring successor in each kind of group per
// training step (ring collectives in rank order; a pipeline stage sends to the next stage, and
// the last stage to none). The default
// is an order-of-magnitude model of a large dense transformer; the numbers are a stated model,
// not a measurement.
struct TrafficModel {
  double tp = 16e9;
  double cp = 4e9;
  double ep = 8e9;
  double dp = 4e9;
  double pp = 0.5e9;
};

struct PlacementCost {
  int ring_leaf = 0;            // edges of the whole-job node ring that cross leaves
  int ring_spine = 0;           // ... that cross spines
  double bytes_node = 0;        // bytes per step leaving a node
  double bytes_off_domain = 0;  // ... between nodes of different NVLink domains (or none)
  double bytes_leaf = 0;        // ... between leaves
  double bytes_spine = 0;       // ... between spines
  // What the ordering changes: traffic leaving NVLink domains where the cluster has any, plus
  // traffic crossing leaves and spines (a spine crossing counts twice: it crosses both tiers).
  double cost = 0;
};

// `order` as from orderNodes (every index once). `parallelism` null: ring metrics only.
PlacementCost evaluatePlacement(const std::vector<PlacementNode>& nodes,
                                const std::vector<int>& order, int nproc_per_node,
                                const Parallelism* parallelism, const TrafficModel& model);
// A lower bound no ordering can beat: rings must enter every leaf and spine; a group of b nodes
// that no leaf (domain, spine) can hold whole crosses at least max(2, ceil(b / largest)) times
// (a pipeline chain: max(1, ceil(b / largest) - 1)), and at most sum(floor(capacity / b)) such
// node sets fit whole. Each kind of group is bounded on its own (a relaxation): where the kinds
// compete for the same switches, no order may reach it.
PlacementCost placementLowerBound(const std::vector<PlacementNode>& nodes, int nproc_per_node,
                                  const Parallelism* parallelism, const TrafficModel& model);

}  // namespace gangway::topology
