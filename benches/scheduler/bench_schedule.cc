// The scheduling policy's cost (gangway/scheduler/admission.h), against the goal: a full
// scheduling cycle under 100 ms with 10,000 nodes and 1,000 pending jobs. Three cycles:
//   cold       every job pending except the running ones (40% of the usable nodes): the cycle
//              that admits a queue's worth of gangs; admit decisions per second.
//   steady     the state the policy itself settles into (cycles applied until one decides
//              nothing, with pending jobs topped up to --jobs): the cluster as full as the policy
//              fills it and every pending job waiting. Nothing changes: the common case.
//   node loss  the steady state with one node of a running elastic job (above its minimum) marked
//              unhealthy: the cycle that produces the shrink.
// Each is the median wall time of schedule() over --reps calls on the same state (schedule() is a
// pure function), timed with std::chrono::steady_clock. See README.md.
//
// Usage: bench_schedule [--nodes N] [--jobs M] [--reps R] [--seed S] [--only csl]
//   --only picks the cycles to time (default csl: cold, steady, node loss).
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <absl/time/time.h>

#include "gangway/scheduler/admission.h"

namespace sched = gangway::scheduler;

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kGpusPerNode = 8;
constexpr int kLeafSize = 32;
constexpr double kRunningShare = 0.4;  // of the usable nodes, running in the cold state
constexpr double kGoalMs = 100.0;

struct Options {
  int nodes = 10000;
  int jobs = 1000;
  int reps = 7;
  uint64_t seed = 1;
  std::string only = "csl";  // cycles to run: c(old), s(teady), l(ost node)
};

struct QueueDef {
  const char* name;
  int weight;          // share of jobs, in percent
  double quota_share;  // of the cluster's GPUs; 0: unlimited
};

constexpr QueueDef kQueues[] = {
    {"prod", 30, 0.40}, {"research", 30, 0.30}, {"batch", 25, 0.20}, {"default", 15, 0.0}};

std::string name(const char* prefix, int i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s-%06d", prefix, i);
  return buf;
}

// Nodes: kGpusPerNode GPUs, leaves of kLeafSize nodes, each leaf's NVLink domains of 4 or 8
// nodes (chosen per leaf); 0.1% unhealthy and 0.05% draining, at random.
void addNodes(sched::ClusterState& s, int n, std::mt19937_64& rng) {
  int domain = 0;
  int domain_size = 8;
  for (int i = 0; i < n; ++i) {
    if (i % kLeafSize == 0) domain_size = (rng() % 2 == 0) ? 4 : 8;
    if (i % domain_size == 0) ++domain;
    sched::NodeInfo info;
    info.gpus = kGpusPerNode;
    info.leaf = name("leaf", i / kLeafSize);
    info.nvlink_domain = name("nvl", domain);
    s.nodes.emplace(name("node", i), std::move(info));
  }
  std::uniform_int_distribution<int> pick(0, n - 1);
  for (int k = 0; k < std::max(1, n / 1000); ++k) {
    s.nodes.at(name("node", pick(rng))).healthy = false;
  }
  for (int k = 0; k < n / 2000; ++k) s.nodes.at(name("node", pick(rng))).draining = true;
}

// A job as users submit them: min 1..64 nodes (mostly small), 30% elastic up to twice their
// minimum, 80% take 8 GPUs per node and 20% take 4, priorities 0 (60%), 1, 5 and 10 (5%).
sched::JobSpec makeJob(std::mt19937_64& rng, int64_t seq) {
  struct Bucket {
    int lo, hi, weight;
  };
  constexpr Bucket kSizes[] = {{1, 1, 25},  {2, 4, 25},   {5, 8, 20},
                               {9, 16, 15}, {17, 32, 10}, {33, 64, 5}};
  sched::JobSpec j;
  int r = static_cast<int>(rng() % 100);
  for (const Bucket& b : kSizes) {
    if (r < b.weight) {
      j.min_nodes = b.lo + static_cast<int>(rng() % static_cast<uint64_t>(b.hi - b.lo + 1));
      break;
    }
    r -= b.weight;
  }
  j.max_nodes = j.min_nodes;
  if (rng() % 100 < 30) {
    j.max_nodes = j.min_nodes + 1 + static_cast<int>(rng() % static_cast<uint64_t>(j.min_nodes));
  }
  j.gpus_per_node = rng() % 100 < 80 ? 8 : 4;
  const int p = static_cast<int>(rng() % 100);
  j.priority = p < 60 ? 0 : p < 85 ? 1 : p < 95 ? 5 : 10;
  int q = static_cast<int>(rng() % 100);
  for (const QueueDef& def : kQueues) {
    if (q < def.weight) {
      j.queue = def.name;
      break;
    }
    q -= def.weight;
  }
  j.submit_seq = seq;
  return j;
}

bool usable(const sched::NodeInfo& n) { return n.healthy && !n.draining; }

std::vector<std::string> pendingJobs(const sched::ClusterState& s) {
  std::vector<std::string> out;
  for (const auto& [job, spec] : s.jobs) {
    if (!s.assignments.contains(job)) out.push_back(job);
  }
  return out;
}

// The cold state: running jobs on 40% of the usable nodes, in runs of consecutive nodes with
// small gaps between jobs (a busy cluster's fragmentation), then `jobs` pending jobs.
sched::ClusterState coldState(const Options& o, absl::Time now, std::mt19937_64& rng,
                              int64_t* next_seq) {
  sched::ClusterState s;
  addNodes(s, o.nodes, rng);
  const int64_t total_gpus = int64_t{kGpusPerNode} * o.nodes;
  for (const QueueDef& q : kQueues) {
    if (q.quota_share > 0) {
      s.queue_gpu_quota[q.name] =
          static_cast<int64_t>(q.quota_share * static_cast<double>(total_gpus));
    }
  }
  std::vector<std::string> free_nodes;
  for (const auto& [node, info] : s.nodes) {
    if (usable(info)) free_nodes.push_back(node);
  }
  const auto target = static_cast<size_t>(kRunningShare * static_cast<double>(free_nodes.size()));
  size_t cursor = 0;
  size_t used = 0;
  int64_t seq = 0;
  while (used < target) {
    sched::JobSpec j = makeJob(rng, seq);
    const int size = j.min_nodes +
                     static_cast<int>(rng() % static_cast<uint64_t>(j.max_nodes - j.min_nodes + 1));
    if (cursor + static_cast<size_t>(size) > free_nodes.size()) break;
    const std::string job = name("job", static_cast<int>(seq));
    std::vector<std::string>& nodes = s.assignments[job];
    nodes.assign(free_nodes.begin() + static_cast<std::ptrdiff_t>(cursor),
                 free_nodes.begin() + static_cast<std::ptrdiff_t>(cursor) + size);
    cursor += static_cast<size_t>(size) + rng() % 5;
    used += static_cast<size_t>(size);
    s.last_resize[job] = now - (rng() % 2 == 0 ? absl::Hours(1) : absl::Seconds(10));
    s.jobs.emplace(job, j);
    ++seq;
  }
  for (int i = 0; i < o.jobs; ++i, ++seq) {
    s.jobs.emplace(name("job", static_cast<int>(seq)), makeJob(rng, seq));
  }
  *next_seq = seq;
  return s;
}

// Applies cycles until one decides nothing, with the clock 31 s on per cycle (past the growth
// anti-thrash interval). Returns whether a fixed point was reached within `max_cycles`.
bool converge(sched::ClusterState& s, absl::Time& now, int max_cycles) {
  for (int i = 0; i < max_cycles; ++i) {
    const std::vector<sched::Decision> d = sched::schedule(s, now);
    if (d.empty()) return true;
    sched::apply(s, d, now);
    now += absl::Seconds(31);
  }
  return false;
}

// The steady state: from the cold one, cycles applied to a fixed point, the pending jobs topped up
// (or the newest removed) to exactly `jobs`, again until both hold.
bool steadyState(sched::ClusterState& s, absl::Time& now, const Options& o, std::mt19937_64& rng,
                 int64_t* next_seq) {
  for (int round = 0; round < 40; ++round) {
    const bool fixed = converge(s, now, 200);
    std::vector<std::string> pending = pendingJobs(s);
    if (fixed && pending.size() == static_cast<size_t>(o.jobs)) return true;
    for (size_t k = pending.size(); k < static_cast<size_t>(o.jobs); ++k, ++*next_seq) {
      s.jobs.emplace(name("job", static_cast<int>(*next_seq)), makeJob(rng, *next_seq));
    }
    if (pending.size() > static_cast<size_t>(o.jobs)) {
      std::sort(pending.begin(), pending.end(), [&](const std::string& a, const std::string& b) {
        return s.jobs.at(a).submit_seq > s.jobs.at(b).submit_seq;
      });
      for (size_t k = 0; k < pending.size() - static_cast<size_t>(o.jobs); ++k) {
        s.jobs.erase(pending[k]);
        s.last_resize.erase(pending[k]);
      }
    }
  }
  return false;
}

// Pending jobs whose minimum does not fit their queue's GPU quota (they wait for the queue, not
// for nodes).
size_t overQuota(const sched::ClusterState& s) {
  std::map<std::string, int64_t> used;
  for (const auto& [job, nodes] : s.assignments) {
    const sched::JobSpec& j = s.jobs.at(job);
    used[j.queue] += int64_t{j.gpus_per_node} * static_cast<int64_t>(nodes.size());
  }
  size_t n = 0;
  for (const std::string& job : pendingJobs(s)) {
    const sched::JobSpec& j = s.jobs.at(job);
    const auto q = s.queue_gpu_quota.find(j.queue);
    if (q != s.queue_gpu_quota.end() && q->second > 0 &&
        used[j.queue] + int64_t{j.gpus_per_node} * j.min_nodes > q->second) {
      ++n;
    }
  }
  return n;
}

struct Counts {
  int admit = 0, grow = 0, shrink = 0, evict = 0;
  size_t nodes = 0;  // nodes named by the decisions
  int total() const { return admit + grow + shrink + evict; }
};

Counts count(const std::vector<sched::Decision>& d) {
  Counts c;
  for (const sched::Decision& x : d) {
    switch (x.kind) {
      case sched::Decision::Kind::kAdmit:
        ++c.admit;
        break;
      case sched::Decision::Kind::kGrow:
        ++c.grow;
        break;
      case sched::Decision::Kind::kShrink:
        ++c.shrink;
        break;
      case sched::Decision::Kind::kEvict:
        ++c.evict;
        break;
    }
    c.nodes += x.nodes.size();
  }
  return c;
}

struct Timing {
  double median_ms = 0;
  double min_ms = 0;
  std::vector<sched::Decision> decisions;  // of the last call
};

Timing timeSchedule(const sched::ClusterState& s, absl::Time now, int reps) {
  Timing t;
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    std::vector<sched::Decision> d = sched::schedule(s, now);
    const auto t1 = Clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    t.decisions = std::move(d);
  }
  std::sort(ms.begin(), ms.end());
  t.median_ms = ms[ms.size() / 2];
  t.min_ms = ms.front();
  return t;
}

struct Shape {
  size_t running = 0, pending = 0, busy_nodes = 0, free_nodes = 0;
};

// busy: usable nodes with a job; free: usable nodes without one.
Shape shapeOf(const sched::ClusterState& s) {
  Shape sh;
  sh.running = s.assignments.size();
  sh.pending = s.jobs.size() - s.assignments.size();
  size_t usable_nodes = 0;
  for (const auto& [node, info] : s.nodes) usable_nodes += usable(info) ? 1 : 0;
  for (const auto& [job, nodes] : s.assignments) {
    for (const std::string& n : nodes) sh.busy_nodes += usable(s.nodes.at(n)) ? 1 : 0;
  }
  sh.free_nodes = usable_nodes - sh.busy_nodes;
  return sh;
}

const char* verdict(double ms) { return ms < kGoalMs ? "met" : "MISSED"; }

void printRow(const char* label, const Shape& sh, const Timing& t) {
  const Counts c = count(t.decisions);
  char decisions[48];
  std::snprintf(decisions, sizeof(decisions), "%d/%d/%d/%d", c.admit, c.grow, c.shrink, c.evict);
  const double secs = t.median_ms / 1000.0;
  char admits[32] = "-";
  if (c.admit > 0) std::snprintf(admits, sizeof(admits), "%.0f", c.admit / secs);
  std::printf("%-10s %8zu %8zu %7zu %6zu %17s %6zu %10.2f %9.2f %11.0f %9s  %s\n", label,
              sh.running, sh.pending, sh.busy_nodes, sh.free_nodes, decisions, c.nodes, t.median_ms,
              t.min_ms, c.total() / secs, admits, verdict(t.median_ms));
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "bench_schedule: %s (usage: bench_schedule [--nodes N>=64] [--jobs M>=1] "
               "[--reps R>=5] [--seed S] [--only csl])\n",
               why.c_str());
  std::exit(2);
}

template <typename T>
T parseNumber(std::string_view flag, std::string_view text, T lo) {
  T v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < lo) {
    usage("bad value for " + std::string(flag) + ": '" + std::string(text) + "'");
  }
  return v;
}

Options parseFlags(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") usage("help");
    if (arg != "--nodes" && arg != "--jobs" && arg != "--reps" && arg != "--seed" &&
        arg != "--only") {
      usage("unknown flag '" + std::string(arg) + "'");
    }
    if (i + 1 >= argc) usage(std::string(arg) + " needs a value");
    const std::string_view value = argv[++i];
    if (arg == "--nodes") o.nodes = parseNumber<int>(arg, value, 64);
    if (arg == "--jobs") o.jobs = parseNumber<int>(arg, value, 1);
    if (arg == "--reps") o.reps = parseNumber<int>(arg, value, 5);
    if (arg == "--seed") o.seed = parseNumber<uint64_t>(arg, value, 0);
    if (arg == "--only") {
      if (value.empty() || value.find_first_not_of("csl") != std::string_view::npos) {
        usage("bad value for --only: '" + std::string(value) + "' (letters of csl)");
      }
      o.only = value;
    }
  }
  if (o.nodes > 999999) usage("--nodes: at most 999999");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parseFlags(argc, argv);
  const bool want_cold = o.only.find('c') != std::string::npos;
  const bool want_steady = o.only.find('s') != std::string::npos;
  const bool want_lost = o.only.find('l') != std::string::npos;
  std::mt19937_64 rng(o.seed);
  const absl::Time start = absl::FromUnixSeconds(1800000000);
  int64_t next_seq = 0;

  const sched::ClusterState cold = coldState(o, start, rng, &next_seq);
  size_t unhealthy = 0, draining = 0;
  for (const auto& [node, info] : cold.nodes) {
    unhealthy += info.healthy ? 0 : 1;
    draining += info.draining ? 1 : 0;
  }
  std::printf(
      "bench_schedule: %d nodes x %d GPUs, leaves of %d, NVLink domains of 4 or 8 (%zu unhealthy, "
      "%zu draining); %d pending jobs; seed %llu, %d reps\n",
      o.nodes, kGpusPerNode, kLeafSize, unhealthy, draining, o.jobs,
      static_cast<unsigned long long>(o.seed), o.reps);
  std::printf("  queues (GPU quota):");
  for (const QueueDef& q : kQueues) {
    const auto it = cold.queue_gpu_quota.find(q.name);
    if (it == cold.queue_gpu_quota.end()) {
      std::printf(" %s unlimited", q.name);
    } else {
      std::printf(" %s %lld,", q.name, static_cast<long long>(it->second));
    }
  }
  std::printf(
      "\n  jobs: min 1..64 nodes (mostly small), 30%% elastic up to 2x min, 8 or 4 GPUs per node, "
      "priorities 0/1/5/10\n\n");
  std::fflush(stdout);

  std::optional<Timing> t_cold, t_steady, t_lost;
  if (want_cold) t_cold = timeSchedule(cold, start, o.reps);

  sched::ClusterState steady;
  sched::ClusterState lost;
  absl::Time now = start;
  bool fixed = true;
  bool shrank = true;
  std::string victim_job, victim_node;
  if (want_steady || want_lost) {
    steady = cold;
    fixed = steadyState(steady, now, o, rng, &next_seq);
    if (want_steady) t_steady = timeSchedule(steady, now, o.reps);
  }
  if (want_lost) {
    // The first running job (in name order) above its minimum loses its first node.
    lost = steady;
    for (const auto& [job, nodes] : lost.assignments) {
      if (nodes.size() > static_cast<size_t>(lost.jobs.at(job).min_nodes)) {
        victim_job = job;
        victim_node = nodes.front();
        break;
      }
    }
    if (victim_job.empty()) {
      std::fprintf(stderr, "bench_schedule: no running elastic job above its minimum\n");
      return 1;
    }
    lost.nodes.at(victim_node).healthy = false;
    t_lost = timeSchedule(lost, now, o.reps);
    const std::vector<sched::Decision>& d = t_lost->decisions;
    shrank = !d.empty() && d.front().kind == sched::Decision::Kind::kShrink &&
             d.front().job == victim_job &&
             d.front().nodes == std::vector<std::string>{victim_node};
  }

  std::printf("%-10s %8s %8s %7s %6s %17s %6s %10s %9s %11s %9s  %s\n", "cycle", "running",
              "pending", "busy", "free", "admit/grow/shr/ev", "nodes", "median ms", "min ms",
              "decisions/s", "admits/s", "goal < 100 ms");
  if (t_cold) printRow("cold", shapeOf(cold), *t_cold);
  if (t_steady) printRow("steady", shapeOf(steady), *t_steady);
  if (t_lost) printRow("node loss", shapeOf(lost), *t_lost);

  std::printf(
      "\n  busy/free: usable nodes with/without a job; nodes: nodes named by the decisions\n");
  if (want_steady || want_lost) {
    std::printf(
        "  steady: %s after %.0f simulated minutes of cycles; %zu of %zu pending jobs "
        "wait for their queue's quota, the rest for nodes\n",
        fixed ? "a fixed point (the cycle decides nothing)" : "NOT a fixed point",
        absl::ToDoubleMinutes(now - start), overQuota(steady), shapeOf(steady).pending);
  }
  if (want_lost) {
    std::printf("  node loss: %s (%d..%d nodes, had %zu) lost %s: %s\n", victim_job.c_str(),
                steady.jobs.at(victim_job).min_nodes, steady.jobs.at(victim_job).max_nodes,
                steady.assignments.at(victim_job).size(), victim_node.c_str(),
                shrank ? "shrunk off it" : "NO SHRINK (unexpected)");
  }

  bool all_met = true;
  std::string parts;
  for (const auto& [label, t] :
       {std::pair<const char*, const std::optional<Timing>*>{"cold", &t_cold},
        {"steady", &t_steady},
        {"node loss", &t_lost}}) {
    if (!t->has_value()) continue;
    char part[64];
    std::snprintf(part, sizeof(part), "%s%s %.1f ms %s", parts.empty() ? "" : ", ", label,
                  (*t)->median_ms, verdict((*t)->median_ms));
    parts += part;
    all_met = all_met && (*t)->median_ms < kGoalMs;
  }
  std::printf("\ngoal: cycle < 100 ms: %s (%s)\n", all_met ? "met" : "MISSED", parts.c_str());
  return fixed && shrank ? 0 : 1;
}
