// Node ordering on synthetic fat-tree clusters: arrival order (what torchrun does), hostname
// order, and gangway's order, against the lower bound, for the job's ring and for a tp/pp/dp
// traffic model; plus the time gangway takes to plan 4096 nodes.
//
// Clusters: two-level fat trees (leaves of 32 nodes under one spine layer) and three-level ones
// (pods of 8 leaves of 16 nodes under a core layer). A job gets a fragmented allocation, as on a
// busy cluster: leaves in random order, each giving between half and all of its nodes. Host names
// number nodes by physical position (leaf by leaf); nodes join in random order.
//
// Usage: bench_placement [--seeds N] [--timing-runs N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gangway/topology/placement.h"

namespace topo = gangway::topology;

namespace {

struct Cluster {
  std::vector<topo::PlacementNode> nodes;  // in arrival order
};

// Host names: by physical position ("node00042", leaf by leaf), or as clouds name machines, from
// addresses that say nothing of the cabling ("ip-10-3-17-201").
Cluster makeCluster(int n, bool three_level, bool cloud_names, std::mt19937& rng) {
  const int leaf_size = three_level ? 16 : 32;
  const int leaves_per_pod = 8;
  const int total_leaves = (2 * n) / leaf_size + 8;  // enough that allocations fragment
  std::vector<int> leaves(static_cast<std::size_t>(total_leaves));
  for (int i = 0; i < total_leaves; ++i) leaves[static_cast<std::size_t>(i)] = i;
  std::shuffle(leaves.begin(), leaves.end(), rng);
  Cluster c;
  for (int leaf : leaves) {
    if (static_cast<int>(c.nodes.size()) >= n) break;
    std::uniform_int_distribution<int> take(leaf_size / 2, leaf_size);
    int k = std::min(take(rng), n - static_cast<int>(c.nodes.size()));
    std::vector<int> slots(static_cast<std::size_t>(leaf_size));
    for (int s = 0; s < leaf_size; ++s) slots[static_cast<std::size_t>(s)] = s;
    std::shuffle(slots.begin(), slots.end(), rng);
    for (int i = 0; i < k; ++i) {
      const int slot = slots[static_cast<std::size_t>(i)];
      char name[40];
      if (cloud_names) {
        std::uniform_int_distribution<int> octet(0, 255);
        std::snprintf(name, sizeof(name), "ip-10-%d-%d-%d", octet(rng), octet(rng), octet(rng));
      } else {
        std::snprintf(name, sizeof(name), "node%05d", leaf * leaf_size + slot);
      }
      topo::PlacementNode p;
      p.name = name;
      if (three_level) p.path.push_back("pod" + std::to_string(leaf / leaves_per_pod));
      p.path.push_back("leaf" + std::to_string(leaf));
      c.nodes.push_back(std::move(p));
    }
  }
  std::shuffle(c.nodes.begin(), c.nodes.end(), rng);  // arrival order
  return c;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int seeds = 5;
  int timing_runs = 21;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (flag == "--seeds" && v > 0) {
      seeds = v;
    } else if (flag == "--timing-runs" && v > 0) {
      timing_runs = v;
    } else {
      std::fprintf(stderr,
                   "bench_placement: error: unknown flag %s (flags: --seeds N, --timing-runs N)\n",
                   argv[i]);
      return 2;
    }
  }
  const int nproc = 8;
  const topo::TrafficModel model;
  std::printf(
      "# nodes x %d GPUs; parallelism tp=8,pp=4 (dp = the rest); traffic model (GB sent per "
      "rank per step to its ring successor): tp %.0f, dp %.0f, pp %.1f\n",
      nproc, model.tp / 1e9, model.dp / 1e9, model.pp / 1e9);
  std::printf(
      "# medians over %d seeds; ring = leaf crossings of the job's node ring (spine "
      "crossings for 3-level trees after '/'); cost = GB per step crossing leaves + "
      "crossing spines\n",
      seeds);
  std::printf("%-6s %-7s %-8s | %-13s %-13s %-13s %-13s | %-9s %-9s %-9s %-9s | %-8s %-8s %-8s\n",
              "nodes", "tree", "names", "ring arrival", "ring hostname", "ring gangway",
              "ring bound", "arrival", "hostname", "gangway", "bound", "arr/bnd", "host/bnd",
              "gw/bnd");
  for (bool cloud : {false, true}) {
    for (bool three : {false, true}) {
      for (int n : {16, 64, 256, 1024, 4096}) {
        std::vector<double> ring[4];
        std::vector<double> ring_spine[4];
        std::vector<double> cost[4];
        for (int s = 0; s < seeds; ++s) {
          std::mt19937 rng(static_cast<unsigned>(1000 * n + s + (three ? 7 : 0)));
          const Cluster c = makeCluster(n, three, cloud, rng);
          topo::Parallelism p{8, 1, 1, 0, 4};
          if (!topo::resolveParallelism(&p, n * nproc).ok()) return 1;
          std::vector<int> arrival(c.nodes.size());
          for (std::size_t i = 0; i < arrival.size(); ++i) arrival[i] = static_cast<int>(i);
          std::vector<int> host = arrival;
          std::sort(host.begin(), host.end(), [&](int a, int b) {
            return c.nodes[static_cast<std::size_t>(a)].name <
                   c.nodes[static_cast<std::size_t>(b)].name;
          });
          const std::vector<int> ring_order = topo::orderNodes(c.nodes, nproc, nullptr);
          const std::vector<int> job_order = topo::orderNodes(c.nodes, nproc, &p);
          const std::vector<int>* orders[3] = {&arrival, &host, &job_order};
          const std::vector<int>* ring_orders[3] = {&arrival, &host, &ring_order};
          for (int k = 0; k < 3; ++k) {
            const auto r = topo::evaluatePlacement(c.nodes, *ring_orders[k], nproc, nullptr, model);
            ring[k].push_back(r.ring_leaf);
            ring_spine[k].push_back(r.ring_spine);
            cost[k].push_back(topo::evaluatePlacement(c.nodes, *orders[k], nproc, &p, model).cost);
          }
          const auto lb = topo::placementLowerBound(c.nodes, nproc, &p, model);
          ring[3].push_back(lb.ring_leaf);
          ring_spine[3].push_back(lb.ring_spine);
          cost[3].push_back(lb.cost);
        }
        auto ringText = [&](int k) {
          char buf[32];
          if (three) {
            std::snprintf(buf, sizeof(buf), "%.0f/%.0f", median(ring[k]), median(ring_spine[k]));
          } else {
            std::snprintf(buf, sizeof(buf), "%.0f", median(ring[k]));
          }
          return std::string(buf);
        };
        const double bound = median(cost[3]);
        auto ratio = [&](int k) { return bound > 0 ? median(cost[k]) / bound : 0.0; };
        std::printf(
            "%-6d %-7s %-8s | %-13s %-13s %-13s %-13s | %-9.0f %-9.0f %-9.0f %-9.0f | %-8.3f "
            "%-8.3f %-8.3f\n",
            n, three ? "3-level" : "2-level", cloud ? "cloud" : "physical", ringText(0).c_str(),
            ringText(1).c_str(), ringText(2).c_str(), ringText(3).c_str(), median(cost[0]) / 1e9,
            median(cost[1]) / 1e9, median(cost[2]) / 1e9, bound / 1e9, ratio(0), ratio(1),
            ratio(2));
      }
    }
  }
  // How loose is the bound? On 8-node jobs every order can be tried: the exact optimum, against
  // gangway and the bound, on fragmented allocations (leaves giving 1 to 4 nodes).
  for (int stages : {4, 2}) {
    std::vector<double> gw_ratio;
    std::vector<double> bound_ratio;
    int optimal = 0;
    const int trials = 4 * seeds;
    for (int s = 0; s < trials; ++s) {
      std::mt19937 rng(static_cast<unsigned>(77 + s));
      std::vector<topo::PlacementNode> nodes;
      for (int leaf = 0; static_cast<int>(nodes.size()) < 8; ++leaf) {
        std::uniform_int_distribution<int> take(1, 4);
        const int k = std::min(take(rng), 8 - static_cast<int>(nodes.size()));
        for (int i = 0; i < k; ++i) {
          topo::PlacementNode p;
          p.name = "n" + std::to_string(nodes.size());
          p.path = {"spine" + std::to_string(leaf / 2), "leaf" + std::to_string(leaf)};
          nodes.push_back(p);
        }
      }
      std::shuffle(nodes.begin(), nodes.end(), rng);
      topo::Parallelism p{8, 1, 1, 0, stages};
      if (!topo::resolveParallelism(&p, 8 * nproc).ok()) return 1;
      std::vector<int> perm(8);
      for (int i = 0; i < 8; ++i) perm[static_cast<std::size_t>(i)] = i;
      double exact = -1;
      do {
        const double c = topo::evaluatePlacement(nodes, perm, nproc, &p, model).cost;
        if (exact < 0 || c < exact) exact = c;
      } while (std::next_permutation(perm.begin(), perm.end()));
      const double gw =
          topo::evaluatePlacement(nodes, topo::orderNodes(nodes, nproc, &p), nproc, &p, model).cost;
      const double lb = topo::placementLowerBound(nodes, nproc, &p, model).cost;
      if (exact <= 0) continue;
      gw_ratio.push_back(gw / exact);
      bound_ratio.push_back(lb / exact);
      optimal += gw <= exact ? 1 : 0;
    }
    std::sort(gw_ratio.begin(), gw_ratio.end());
    std::printf(
        "%s8-node jobs (tp=8,pp=%d, 2-level leaves of 1-4 nodes, %zu with cross-leaf "
        "traffic): gangway/optimum median %.3f, worst %.3f, optimal in %d; bound/optimum "
        "median %.3f\n",
        stages == 4 ? "\n" : "", stages, gw_ratio.size(), median(gw_ratio),
        gw_ratio.empty() ? 0.0 : gw_ratio.back(), optimal, median(bound_ratio));
  }

  // Planning time at 4096 nodes, three-level tree, with the parallelism.
  std::mt19937 rng(42);
  const Cluster c = makeCluster(4096, true, true, rng);
  topo::Parallelism p{8, 1, 1, 0, 4};
  if (!topo::resolveParallelism(&p, 4096 * nproc).ok()) return 1;
  std::vector<double> ms;
  std::size_t sink = 0;
  for (int i = 0; i < timing_runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    sink += topo::orderNodes(c.nodes, nproc, &p).size();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::printf(
      "\nplan time, 4096 nodes (3-level, tp=8,pp=4): median %.2f ms over %d runs (goal < 50 "
      "ms)%s\n",
      median(ms), timing_runs, sink == 0 ? " (no nodes?)" : "");
  return 0;
}
