// The scheduling policy with an injected clock: gang admission, priorities and FIFO, topology,
// backfill that never delays the head job, preemption (shrink before evict, no more than needed),
// lost nodes, batched and rate-limited growth, queue quotas, and a randomized property test.
#include "gangway/scheduler/admission.h"

#include <random>
#include <set>

#include <gtest/gtest.h>

namespace gangway::scheduler {
namespace {

using Kind = Decision::Kind;

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

void addNodes(ClusterState& s, const std::string& prefix, int n, int gpus,
              const std::string& leaf) {
  for (int i = 0; i < n; ++i) s.nodes[prefix + std::to_string(i)] = {gpus, leaf, "", true, false};
}

JobSpec job(int min, int max, int gpus, int priority = 0, int64_t seq = 0,
            std::string queue = "default") {
  JobSpec j;
  j.min_nodes = min;
  j.max_nodes = max;
  j.gpus_per_node = gpus;
  j.priority = priority;
  j.submit_seq = seq;
  j.queue = std::move(queue);
  return j;
}

std::vector<Decision> cycle(ClusterState& s, absl::Time now, PolicyOptions o = {}) {
  auto d = schedule(s, now, o);
  apply(s, d, now);
  return d;
}

int count(const std::vector<Decision>& d, Kind k) {
  return static_cast<int>(
      std::count_if(d.begin(), d.end(), [&](const Decision& x) { return x.kind == k; }));
}

TEST(Admission, TwoGangsOnNodesForOneRunExactlyOneAtOnce) {  // Volcano #3373
  ClusterState s;
  addNodes(s, "n", 4, 8, "leaf0");
  s.jobs["a"] = job(4, 4, 8, 0, 1);
  s.jobs["b"] = job(4, 4, 8, 0, 2);
  const auto d = cycle(s, kT0);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].kind, Kind::kAdmit);
  EXPECT_EQ(d[0].job, "a");
  EXPECT_EQ(s.assignments["a"].size(), 4u);
  EXPECT_FALSE(s.assignments.contains("b"));  // nothing partial
  EXPECT_TRUE(cycle(s, kT0 + absl::Seconds(1)).empty());
}

TEST(Admission, PriorityThenSubmissionOrder) {
  ClusterState s;
  addNodes(s, "n", 2, 8, "leaf0");
  s.jobs["early-low"] = job(1, 1, 8, 0, 1);
  s.jobs["late-high"] = job(1, 1, 8, 5, 3);
  s.jobs["late-low"] = job(1, 1, 8, 0, 2);
  cycle(s, kT0);
  EXPECT_TRUE(s.assignments.contains("late-high"));
  EXPECT_TRUE(s.assignments.contains("early-low"));
  EXPECT_FALSE(s.assignments.contains("late-low"));
}

TEST(Admission, ChoosesTheTightestLeafAndKeepsNvlinkDomainsTogether) {
  ClusterState s;
  addNodes(s, "a", 4, 8, "leafA");
  addNodes(s, "b", 2, 8, "leafB");
  s.nodes["c0"] = {8, "leafC", "nvl1", true, false};
  s.nodes["c1"] = {8, "leafC", "nvl0", true, false};
  s.nodes["c2"] = {8, "leafC", "nvl1", true, false};
  s.jobs["two"] = job(2, 2, 8, 0, 1);
  cycle(s, kT0);
  for (const std::string& n : s.assignments["two"]) EXPECT_EQ(s.nodes[n].leaf, "leafB");
  s.nodes.erase("b0");
  s.nodes.erase("b1");
  s.assignments.clear();
  s.jobs = {{"two", job(2, 2, 8, 0, 1)}};
  cycle(s, kT0);
  // Leaf C (3 nodes) is now the tightest fit; its two nvl1 nodes go together.
  EXPECT_EQ(s.assignments["two"], (std::vector<std::string>{"c0", "c2"}));
}

TEST(Admission, BackfillUsesOnlyNodesTheHeadCannotUse) {
  ClusterState s;
  addNodes(s, "big", 4, 8, "leaf0");
  addNodes(s, "small", 2, 4, "leaf0");
  s.jobs["running"] = job(2, 2, 8, 0, 0);
  s.assignments["running"] = {"big0", "big1"};
  s.jobs["head"] = job(3, 3, 8, 0, 1);         // needs 3 big nodes; 2 free
  s.jobs["would-delay"] = job(1, 1, 8, 0, 2);  // would take a big node the head waits for
  s.jobs["fits-beside"] = job(1, 1, 4, 0, 3);  // fits on a small node
  const auto d = cycle(s, kT0);
  EXPECT_FALSE(s.assignments.contains("head"));
  EXPECT_FALSE(s.assignments.contains("would-delay"));
  ASSERT_TRUE(s.assignments.contains("fits-beside"));
  EXPECT_EQ(s.nodes[s.assignments["fits-beside"][0]].gpus, 4);
  // When the running job ends, the head starts before the job behind it.
  s.jobs.erase("running");
  s.assignments.erase("running");
  cycle(s, kT0 + absl::Seconds(1));
  EXPECT_TRUE(s.assignments.contains("head"));
}

TEST(Admission, PreemptionShrinksElasticJobsBeforeEvicting) {
  ClusterState s;
  addNodes(s, "n", 6, 8, "leaf0");
  s.jobs["elastic-low"] = job(2, 6, 8, 0, 1);
  cycle(s, kT0);  // admitted at the size the free nodes allow, in one decision
  ASSERT_EQ(s.assignments["elastic-low"].size(), 6u);
  s.jobs["high"] = job(3, 3, 8, 10, 2);
  const auto d = cycle(s, kT0 + absl::Minutes(2));
  EXPECT_EQ(count(d, Kind::kEvict), 0);
  EXPECT_EQ(count(d, Kind::kShrink), 1);
  EXPECT_EQ(s.assignments["elastic-low"].size(), 3u);
  EXPECT_EQ(s.assignments["high"].size(), 3u);
}

TEST(Admission, PreemptionEvictsNoMoreThanItNeeds) {  // KAI #1565: 376 GPUs evicted for 48
  ClusterState s;
  addNodes(s, "n", 64, 8, "leaf0");
  for (int i = 0; i < 60; ++i) {
    s.jobs["low" + std::to_string(i)] = job(1, 1, 8, 0, i);
  }
  s.jobs["mid"] = job(4, 4, 8, 0, 100);  // 4 more nodes: the cluster is full
  cycle(s, kT0);
  ASSERT_EQ(s.assignments.size(), 61u);
  s.jobs["high"] = job(6, 6, 8, 10, 200);  // 48 GPUs
  const auto d = cycle(s, kT0 + absl::Minutes(1));
  int64_t evicted_gpus = 0;
  for (const Decision& x : d) {
    if (x.kind == Kind::kEvict) evicted_gpus += 8 * static_cast<int64_t>(x.nodes.size());
  }
  EXPECT_TRUE(s.assignments.contains("high"));
  EXPECT_LE(static_cast<double>(evicted_gpus) / 48.0, 1.1);
  EXPECT_EQ(evicted_gpus, 48);
  // Same priority never preempts.
  s.jobs["peer"] = job(1, 1, 8, 0, 300);
  EXPECT_EQ(count(cycle(s, kT0 + absl::Minutes(2)), Kind::kEvict), 0);
}

TEST(Admission, LostNodesShrinkTheJobOrRequeueItBelowMin) {
  ClusterState s;
  addNodes(s, "n", 4, 8, "leaf0");
  s.jobs["e"] = job(2, 4, 8, 0, 1);
  s.assignments["e"] = {"n0", "n1", "n2", "n3"};
  s.nodes["n3"].healthy = false;
  auto d = cycle(s, kT0);
  ASSERT_EQ(count(d, Kind::kShrink), 1);
  EXPECT_EQ(s.assignments["e"].size(), 3u);
  s.nodes["n1"].draining = true;
  s.nodes["n2"].healthy = false;
  d = cycle(s, kT0 + absl::Seconds(1));
  EXPECT_EQ(count(d, Kind::kEvict), 1);  // 1 node left < min 2: requeued whole
  EXPECT_FALSE(s.assignments.contains("e"));
}

TEST(Admission, GrowthIsOneBatchAndRateLimited) {
  ClusterState s;
  addNodes(s, "n", 2, 8, "leaf0");
  s.jobs["e"] = job(2, 8, 8, 0, 1);
  cycle(s, kT0);
  ASSERT_EQ(s.assignments["e"].size(), 2u);
  addNodes(s, "m", 3, 8, "leaf0");  // three nodes arrive
  PolicyOptions o;
  o.min_resize_interval = absl::Seconds(30);
  EXPECT_TRUE(cycle(s, kT0 + absl::Seconds(10), o).empty());  // too soon after the admission
  const auto d = cycle(s, kT0 + absl::Seconds(40), o);
  ASSERT_EQ(d.size(), 1u);  // one decision (one rendezvous round) for all three
  EXPECT_EQ(d[0].kind, Kind::kGrow);
  EXPECT_EQ(d[0].nodes.size(), 3u);
  s.nodes["x"] = {8, "leaf0", "", true, false};
  EXPECT_TRUE(cycle(s, kT0 + absl::Seconds(50), o).empty());
  EXPECT_EQ(cycle(s, kT0 + absl::Seconds(80), o).size(), 1u);
}

TEST(Admission, QueueQuotaHoldsAJobWithoutBlockingOthers) {
  ClusterState s;
  addNodes(s, "n", 4, 8, "leaf0");
  s.queue_gpu_quota["small"] = 16;
  s.jobs["too-big"] = job(3, 3, 8, 0, 1, "small");
  s.jobs["other"] = job(1, 1, 8, 0, 2);
  cycle(s, kT0);
  EXPECT_FALSE(s.assignments.contains("too-big"));
  EXPECT_TRUE(s.assignments.contains("other"));
}

TEST(Admission, RandomizedNoGangEverHoldsFewerThanItsMinimum) {
  std::mt19937 rng(42);
  ClusterState s;
  for (int i = 0; i < 24; ++i) {
    s.nodes["n" + std::to_string(i)] = {i % 3 == 0 ? 4 : 8, "leaf" + std::to_string(i % 4), "",
                                        true, false};
  }
  s.queue_gpu_quota["q1"] = 64;
  absl::Time now = kT0;
  int64_t seq = 0;
  int admitted = 0;
  for (int step = 0; step < 3000; ++step) {
    now += absl::Seconds(1 + rng() % 20);
    const int op = static_cast<int>(rng() % 10);
    if (op < 4) {
      const int min = 1 + static_cast<int>(rng() % 4);
      const int max = min + static_cast<int>(rng() % 4);
      s.jobs["j" + std::to_string(seq)] =
          job(min, max, rng() % 2 ? 8 : 4, static_cast<int>(rng() % 3), seq,
              rng() % 3 ? "default" : "q1");
      ++seq;
    } else if (op < 6 && !s.jobs.empty()) {
      auto it = s.jobs.begin();
      std::advance(it, rng() % s.jobs.size());
      s.assignments.erase(it->first);
      s.last_resize.erase(it->first);
      s.jobs.erase(it);
    } else if (op < 8) {
      auto it = s.nodes.begin();
      std::advance(it, rng() % s.nodes.size());
      it->second.healthy = !it->second.healthy;
    } else if (op < 9) {
      auto it = s.nodes.begin();
      std::advance(it, rng() % s.nodes.size());
      it->second.draining = !it->second.draining;
    }
    const auto d = cycle(s, now);
    admitted += count(d, Kind::kAdmit);
    std::set<std::string> used;
    std::map<std::string, int64_t> queue_gpus;
    for (const auto& [id, nodes] : s.assignments) {
      const JobSpec& j = s.jobs.at(id);
      ASSERT_GE(nodes.size(), static_cast<size_t>(j.min_nodes)) << id << " at step " << step;
      ASSERT_LE(nodes.size(), static_cast<size_t>(j.max_nodes)) << id;
      for (const std::string& n : nodes) {
        ASSERT_TRUE(used.insert(n).second) << n << " is in two jobs";
        ASSERT_TRUE(s.nodes.at(n).healthy && !s.nodes.at(n).draining) << n;
        ASSERT_GE(s.nodes.at(n).gpus, j.gpus_per_node);
      }
      queue_gpus[j.queue] += int64_t{j.gpus_per_node} * static_cast<int64_t>(nodes.size());
    }
    ASSERT_LE(queue_gpus["q1"], 64);
  }
  EXPECT_GT(admitted, 100);
}

}  // namespace
}  // namespace gangway::scheduler
