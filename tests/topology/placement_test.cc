#include "gangway/topology/placement.h"

#include <algorithm>
#include <random>

#include <absl/strings/str_cat.h>
#include <gtest/gtest.h>

namespace gangway::topology {
namespace {

// A fat tree: `spines` spines of `leaves` leaves, `per_leaf[i]` nodes on leaf i (cycled), nodes
// in a shuffled arrival order.
std::vector<PlacementNode> cluster(int spines, int leaves, const std::vector<int>& per_leaf,
                                   unsigned seed, int domain_size = 0) {
  std::vector<PlacementNode> nodes;
  int leaf_index = 0;
  int counter = 0;
  for (int s = 0; s < spines; ++s) {
    for (int l = 0; l < leaves; ++l, ++leaf_index) {
      const int n = per_leaf[static_cast<std::size_t>(leaf_index) % per_leaf.size()];
      for (int k = 0; k < n; ++k, ++counter) {
        PlacementNode p;
        p.name = absl::StrCat("node", counter);
        p.path = {absl::StrCat("spine", s), absl::StrCat("leaf", leaf_index)};
        if (domain_size > 0) p.domain = absl::StrCat("rack", leaf_index, "-", k / domain_size);
        nodes.push_back(p);
      }
    }
  }
  std::mt19937 rng(seed);
  std::shuffle(nodes.begin(), nodes.end(), rng);
  return nodes;
}

bool isPermutation(std::vector<int> order, std::size_t n) {
  std::sort(order.begin(), order.end());
  for (std::size_t i = 0; i < n; ++i) {
    if (order.size() != n || order[i] != static_cast<int>(i)) return false;
  }
  return true;
}

TEST(Placement, RingReachesTheLowerBound) {
  const TrafficModel model;
  for (unsigned seed = 1; seed <= 20; ++seed) {
    const auto nodes = cluster(3, 4, {5, 3, 8, 1}, seed);
    const auto order = orderNodes(nodes, 8, nullptr);
    ASSERT_TRUE(isPermutation(order, nodes.size()));
    const auto got = evaluatePlacement(nodes, order, 8, nullptr, model);
    const auto lb = placementLowerBound(nodes, 8, nullptr, model);
    EXPECT_EQ(lb.ring_leaf, 12);
    EXPECT_EQ(lb.ring_spine, 3);
    EXPECT_EQ(got.ring_leaf, lb.ring_leaf) << seed;
    EXPECT_EQ(got.ring_spine, lb.ring_spine) << seed;
  }
}

TEST(Placement, ArrivalOrderCrossesMore) {
  const TrafficModel model;
  const auto nodes = cluster(2, 4, {8}, 7);
  std::vector<int> arrival(nodes.size());
  for (std::size_t i = 0; i < arrival.size(); ++i) arrival[i] = static_cast<int>(i);
  const auto random = evaluatePlacement(nodes, arrival, 8, nullptr, model);
  const auto ours = evaluatePlacement(nodes, orderNodes(nodes, 8, nullptr), 8, nullptr, model);
  EXPECT_GT(random.ring_leaf, ours.ring_leaf);
  EXPECT_EQ(ours.ring_leaf, 8);
  EXPECT_EQ(ours.ring_spine, 2);
}

TEST(Placement, PipelineStagesFitLeavesWhereTheyCan) {
  // Leaves of 6, 6 and 4 nodes; 16 nodes x 8 GPUs, tp=8, pp=4: each stage (data-parallel block)
  // spans 4 nodes. Three blocks fit whole; the fourth must combine the two leftovers of 2.
  const TrafficModel model;
  const auto nodes = cluster(1, 3, {6, 6, 4}, 3);
  Parallelism p = *parseParallelism("tp=8,pp=4");
  ASSERT_TRUE(resolveParallelism(&p, 16 * 8).ok());
  EXPECT_EQ(p.dp, 4);
  const auto order = orderNodes(nodes, 8, &p);
  ASSERT_TRUE(isPermutation(order, nodes.size()));
  const auto got = evaluatePlacement(nodes, order, 8, &p, model);
  const auto lb = placementLowerBound(nodes, 8, &p, model);
  EXPECT_GT(lb.bytes_leaf, 0);
  // Data-parallel traffic alone reaches its bound (one block must combine two leaves).
  Parallelism dp_only = p;
  TrafficModel dp_model;
  dp_model.pp = 0;
  EXPECT_DOUBLE_EQ(evaluatePlacement(nodes, order, 8, &dp_only, dp_model).bytes_leaf,
                   placementLowerBound(nodes, 8, &dp_only, dp_model).bytes_leaf);
  EXPECT_LE(got.cost, lb.cost * 1.5);
  // Hostname order on the same nodes (names follow leaves here) cuts blocks across leaves more.
  std::vector<int> by_leaf(nodes.size());
  for (std::size_t i = 0; i < by_leaf.size(); ++i) by_leaf[i] = static_cast<int>(i);
  std::sort(by_leaf.begin(), by_leaf.end(), [&](int a, int b) {
    return nodes[static_cast<std::size_t>(a)].path < nodes[static_cast<std::size_t>(b)].path;
  });
  const auto sorted = evaluatePlacement(nodes, by_leaf, 8, &p, model);
  EXPECT_GE(sorted.cost, got.cost);
}

TEST(Placement, TensorParallelGroupsStayInsideNvlinkDomains) {
  // Domains of 4 nodes x 4 GPUs; tp=8 spans 2 nodes: every TP group must sit in one domain.
  const TrafficModel model;
  const auto nodes = cluster(1, 2, {8}, 5, /*domain_size=*/4);
  Parallelism p = *parseParallelism("tp=8,pp=2");
  ASSERT_TRUE(resolveParallelism(&p, 16 * 4).ok());
  const auto order = orderNodes(nodes, 4, &p);
  for (std::size_t r = 0; r < order.size(); r += 2) {
    EXPECT_EQ(nodes[static_cast<std::size_t>(order[r])].domain,
              nodes[static_cast<std::size_t>(order[r + 1])].domain)
        << r;
  }
  std::vector<int> arrival(nodes.size());
  for (std::size_t i = 0; i < arrival.size(); ++i) arrival[i] = static_cast<int>(i);
  const auto got = evaluatePlacement(nodes, order, 4, &p, model);
  EXPECT_LT(got.bytes_off_domain, evaluatePlacement(nodes, arrival, 4, &p, model).bytes_off_domain);
}

TEST(Placement, NodesWithoutLocationKeepHostnameOrder) {
  std::vector<PlacementNode> nodes{{"b", {}, ""}, {"a10", {}, ""}, {"a9", {}, ""}};
  EXPECT_EQ(orderNodes(nodes, 1, nullptr), (std::vector<int>{2, 1, 0}));
}

TEST(Placement, ParallelismErrors) {
  EXPECT_FALSE(parseParallelism("tp=0").ok());
  EXPECT_FALSE(parseParallelism("tp=2,tp=4").ok());
  EXPECT_FALSE(parseParallelism("zz=2").ok());
  auto bad = parseParallelism("tp8");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "--parallelism: 'tp8' is not NAME=N with NAME one of tp, cp, ep, dp, pp (each once) "
            "and N a positive integer");
  Parallelism p = *parseParallelism("tp=8,pp=3");
  auto s = resolveParallelism(&p, 64);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "--parallelism tp=8,pp=3: tp*cp*ep*pp = 24 does not divide the world size 64");
  Parallelism q = *parseParallelism("tp=8,dp=2,pp=2");
  EXPECT_FALSE(resolveParallelism(&q, 64).ok());
}

}  // namespace
}  // namespace gangway::topology
