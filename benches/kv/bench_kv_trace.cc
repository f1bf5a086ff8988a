// A chat-serving trace replayed through a block manager by a continuous-batching scheduler
// simulated on the CPU: gangway's KvCacheManager (default options; and with a host tier and swap
// preemption) against LruBlockManager, a naive LRU baseline (lru_baseline.h). Reports the prefix
// hit rate, preemptions, evictions and the simulated steps to finish the trace. See README.md.
//
// Trace: `system_prompts` system prompts of 500..2000 tokens; sessions arrive as a Poisson process
// (exponential inter-arrival times in steps) and pick a system prompt (Zipf-like: the first ones
// more often); each has 2..8 turns; turn k's prompt = the system prompt + every earlier user
// message and response + a new user message (32..512 tokens); its response has 32..512 tokens; the
// next turn arrives an exponential think time after the response ends. All from one seed.
//
// Scheduler, once per step: swapped-out sequences come back first (FCFS, while canSwapIn), and no
// new request is admitted while any is still swapped out; then waiting requests are admitted FCFS
// while canAdmit() says so, the batch holds fewer than max_batch and the step's prefill budget (in
// uncached prompt tokens) lasts; then every running sequence appends one token, and when canAppend
// fails the newest running sequence is preempted: swapOut() with a host tier, else free() and
// re-queued at the front with its generated tokens as part of its prompt (recompute). A finished
// sequence calls setComputed(all its tokens) and free().
//
// Usage: bench_kv_trace [--seed S] [--sessions N] [--blocks N] [--interarrival STEPS]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <queue>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "gangway/kv/manager.h"
#include "gangway/kv/types.h"

#include "lru_baseline.h"

namespace kv = gangway::kv;

namespace {

constexpr int32_t kBlockSize = 16;
constexpr int32_t kVocab = 32000;

void check(const absl::Status& status, const char* what) {
  if (!status.ok()) {
    std::fprintf(stderr, "bench_kv_trace: %s: %s\n", what, std::string(status.message()).c_str());
    std::exit(1);
  }
}

// ---------------------------------------------------------------------------------------------
// The block manager as the scheduler loop sees it.

class TraceCache {
 public:
  virtual ~TraceCache() = default;
  virtual kv::AdmitCheck canAdmit(std::span<const int32_t> prompt) = 0;
  virtual absl::StatusOr<kv::AllocateResult> allocate(kv::SeqId seq,
                                                      std::span<const int32_t> prompt) = 0;
  virtual bool canAppend(kv::SeqId seq) = 0;
  virtual absl::Status appendToken(kv::SeqId seq, int32_t token) = 0;
  virtual absl::Status setComputed(kv::SeqId seq, int32_t num_tokens) = 0;
  virtual absl::Status free(kv::SeqId seq) = 0;
  // Swap preemption: only with a host tier.
  virtual bool swaps() const { return false; }
  virtual absl::Status swapOut(kv::SeqId /*seq*/) { return absl::UnimplementedError("no swap"); }
  virtual bool canSwapIn(kv::SeqId /*seq*/) { return false; }
  virtual absl::Status swapIn(kv::SeqId /*seq*/) { return absl::UnimplementedError("no swap"); }
  virtual int64_t evictedBlocks() const = 0;
  virtual int64_t offloadedBlocks() const { return 0; }
  // Device and host blocks held by sequences: 0 once the trace is done.
  virtual int32_t usedBlocks() const = 0;
};

class GangwayCache : public TraceCache {
 public:
  GangwayCache(const kv::Options& options, bool swap) : swap_(swap) {
    absl::StatusOr<std::unique_ptr<kv::KvCacheManager>> m = kv::KvCacheManager::create(options);
    check(m.status(), "create");
    mgr_ = *std::move(m);
  }
  kv::AdmitCheck canAdmit(std::span<const int32_t> prompt) override {
    return mgr_->canAdmit(prompt);
  }
  absl::StatusOr<kv::AllocateResult> allocate(kv::SeqId seq,
                                              std::span<const int32_t> prompt) override {
    return mgr_->allocate(seq, prompt);
  }
  bool canAppend(kv::SeqId seq) override { return mgr_->canAppend(seq, 1); }
  absl::Status appendToken(kv::SeqId seq, int32_t token) override {
    return mgr_->appendToken(seq, token);
  }
  absl::Status setComputed(kv::SeqId seq, int32_t n) override { return mgr_->setComputed(seq, n); }
  absl::Status free(kv::SeqId seq) override {
    mgr_->takeCopies();  // the copies a server would execute; nothing to do with them here
    return mgr_->free(seq);
  }
  bool swaps() const override { return swap_; }
  absl::Status swapOut(kv::SeqId seq) override { return mgr_->swapOut(seq); }
  bool canSwapIn(kv::SeqId seq) override { return mgr_->canSwapIn(seq); }
  absl::Status swapIn(kv::SeqId seq) override { return mgr_->swapIn(seq); }
  int64_t evictedBlocks() const override { return mgr_->stats().evicted_blocks; }
  int64_t offloadedBlocks() const override { return mgr_->stats().offloaded_blocks; }
  int32_t usedBlocks() const override {
    const kv::Stats s = mgr_->stats();
    return s.used_blocks + s.host_used_blocks;
  }

 private:
  std::unique_ptr<kv::KvCacheManager> mgr_;
  bool swap_;
};

class LruCache : public TraceCache {
 public:
  explicit LruCache(int32_t num_blocks) : lru_(num_blocks, kBlockSize), num_blocks_(num_blocks) {}
  kv::AdmitCheck canAdmit(std::span<const int32_t> prompt) override {
    return lru_.canAdmit(prompt);
  }
  absl::StatusOr<kv::AllocateResult> allocate(kv::SeqId seq,
                                              std::span<const int32_t> prompt) override {
    return lru_.allocate(seq, prompt);
  }
  bool canAppend(kv::SeqId seq) override { return lru_.canAppend(seq); }
  absl::Status appendToken(kv::SeqId seq, int32_t token) override {
    return lru_.appendToken(seq, token);
  }
  absl::Status setComputed(kv::SeqId seq, int32_t n) override { return lru_.setComputed(seq, n); }
  absl::Status free(kv::SeqId seq) override { return lru_.free(seq); }
  int64_t evictedBlocks() const override { return lru_.evictedBlocks(); }
  int32_t usedBlocks() const override { return num_blocks_ - lru_.numFree(); }

 private:
  kv::bench::LruBlockManager lru_;
  int32_t num_blocks_;
};

// ---------------------------------------------------------------------------------------------
// The trace.

struct TraceConfig {
  uint64_t seed = 1;
  int32_t sessions = 2000;
  int32_t blocks = 4096;
  double interarrival = 60.0;  // mean steps between session arrivals
  double think = 300.0;        // mean steps between a response and the next turn
  int32_t system_prompts = 16;
  int32_t max_batch = 256;
  int32_t prefill_budget = 8192;  // uncached prompt tokens per step
};

struct Turn {
  std::vector<int32_t> user;
  std::vector<int32_t> response;
  int64_t think = 0;  // steps from this turn's last token to the next turn's arrival
};

struct Session {
  int64_t arrival = 0;
  int32_t system = 0;
  std::vector<Turn> turns;
};

struct Trace {
  std::vector<std::vector<int32_t>> system;
  std::vector<Session> sessions;
  int64_t turns = 0;
};

std::vector<int32_t> randomTokens(std::mt19937_64& rng, int32_t n) {
  std::uniform_int_distribution<int32_t> token(0, kVocab - 1);
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int32_t& t : out) t = token(rng);
  return out;
}

Trace makeTrace(const TraceConfig& c) {
  std::mt19937_64 rng(c.seed);
  Trace t;
  std::uniform_int_distribution<int32_t> sys_len(500, 2000);
  for (int32_t i = 0; i < c.system_prompts; ++i)
    t.system.push_back(randomTokens(rng, sys_len(rng)));
  std::vector<double> weights;  // Zipf-like, s = 1
  for (int32_t i = 0; i < c.system_prompts; ++i) weights.push_back(1.0 / (i + 1));
  std::discrete_distribution<int32_t> which(weights.begin(), weights.end());
  std::exponential_distribution<double> gap(1.0 / c.interarrival);
  std::exponential_distribution<double> think(1.0 / c.think);
  std::uniform_int_distribution<int32_t> turns(2, 8);
  std::uniform_int_distribution<int32_t> msg(32, 512);
  double now = 0;
  for (int32_t s = 0; s < c.sessions; ++s) {
    now += gap(rng);
    Session session;
    session.arrival = std::llround(now);
    session.system = which(rng);
    const int32_t n = turns(rng);
    for (int32_t k = 0; k < n; ++k) {
      Turn turn;
      turn.user = randomTokens(rng, msg(rng));
      turn.response = randomTokens(rng, msg(rng));
      turn.think = std::llround(think(rng));
      session.turns.push_back(std::move(turn));
    }
    t.turns += n;
    t.sessions.push_back(std::move(session));
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// The scheduler loop.

struct Result {
  int64_t allocations = 0;
  int64_t prompt_tokens = 0;
  int64_t hit_tokens = 0;
  int64_t host_hit_tokens = 0;
  int64_t first_prompt_tokens = 0;  // over each turn's first admission only
  int64_t first_hit_tokens = 0;
  int64_t swap_preemptions = 0;
  int64_t recompute_preemptions = 0;
  int64_t evicted_blocks = 0;
  int64_t offloaded_blocks = 0;
  int64_t steps = 0;
  int64_t busy_steps = 0;
  int64_t dropped = 0;
  int64_t max_running = 0;
  int64_t first_admissions = 0;
  int64_t wait_steps = 0;  // arrival to first admission, summed over turns
  double wall_s = 0;

  double hitRate() const {
    return prompt_tokens > 0 ? static_cast<double>(hit_tokens) / static_cast<double>(prompt_tokens)
                             : 0.0;
  }
  double firstHitRate() const {
    return first_prompt_tokens > 0
               ? static_cast<double>(first_hit_tokens) / static_cast<double>(first_prompt_tokens)
               : 0.0;
  }
  int64_t preemptions() const { return swap_preemptions + recompute_preemptions; }
  int64_t prefillTokens() const { return prompt_tokens - hit_tokens; }
  double meanWait() const {
    return first_admissions > 0
               ? static_cast<double>(wait_steps) / static_cast<double>(first_admissions)
               : 0.0;
  }
};

struct Request {
  int32_t session = 0;
  int32_t turn = 0;
  std::vector<int32_t> prompt;  // what the next allocate() gets
  int32_t turn_prompt = 0;      // the turn's own prompt length (without generated tokens)
  int32_t generated = 0;
  kv::SeqId seq = 0;
  int64_t arrival = 0;
  bool admitted_once = false;
};

Result replay(const Trace& trace, const TraceConfig& config, TraceCache& cache) {
  const auto t0 = std::chrono::steady_clock::now();
  Result r;
  std::vector<Request> requests;  // one per turn, in order of creation: index = request id
  std::vector<std::vector<int32_t>> context(trace.sessions.size());
  using Arrival = std::pair<int64_t, int32_t>;  // (step, request)
  std::priority_queue<Arrival, std::vector<Arrival>, std::greater<>> arrivals;
  kv::SeqId next_seq = 1;

  auto newTurn = [&](int32_t session, int32_t turn, int64_t at) {
    const Session& s = trace.sessions[session];
    std::vector<int32_t>& ctx = context[session];
    if (turn == 0) ctx = trace.system[s.system];
    const std::vector<int32_t>& user = s.turns[turn].user;
    ctx.insert(ctx.end(), user.begin(), user.end());
    Request q;
    q.session = session;
    q.turn = turn;
    q.prompt = ctx;
    q.turn_prompt = static_cast<int32_t>(ctx.size());
    q.arrival = at;
    requests.push_back(std::move(q));
    arrivals.emplace(at, static_cast<int32_t>(requests.size() - 1));
  };
  for (int32_t s = 0; s < static_cast<int32_t>(trace.sessions.size()); ++s) {
    newTurn(s, 0, trace.sessions[s].arrival);
  }

  std::deque<int32_t> waiting;
  std::deque<int32_t> swapped;
  std::vector<int32_t> running;  // in admission order: the back is the newest
  int64_t finished = 0;
  int64_t step = 0;

  // A request that cannot fit in the pool, and the later turns of its session.
  auto drop = [&](int32_t id) {
    const Request& q = requests[id];
    r.dropped += static_cast<int64_t>(trace.sessions[q.session].turns.size()) - q.turn;
    requests[id].prompt = {};
  };
  auto preempt = [&](int32_t id) {
    Request& q = requests[id];
    if (cache.swaps() && cache.swapOut(q.seq).ok()) {
      swapped.push_back(id);
      ++r.swap_preemptions;
      return;
    }
    check(cache.free(q.seq), "free (preempt)");
    const std::vector<int32_t>& response = trace.sessions[q.session].turns[q.turn].response;
    q.prompt.resize(static_cast<size_t>(q.turn_prompt));
    q.prompt.insert(q.prompt.end(), response.begin(), response.begin() + q.generated);
    waiting.push_front(id);
    ++r.recompute_preemptions;
  };

  while (finished + r.dropped < trace.turns) {
    if (running.empty() && waiting.empty() && swapped.empty()) {
      if (arrivals.empty()) {
        std::fprintf(stderr, "bench_kv_trace: requests lost: %lld of %lld turns finished\n",
                     static_cast<long long>(finished), static_cast<long long>(trace.turns));
        std::exit(1);
      }
      step = std::max(step, arrivals.top().first);  // idle until the next arrival
    }
    while (!arrivals.empty() && arrivals.top().first <= step) {
      waiting.push_back(arrivals.top().second);
      arrivals.pop();
    }
    // Swapped-out sequences first.
    while (!swapped.empty() && static_cast<int32_t>(running.size()) < config.max_batch &&
           cache.canSwapIn(requests[swapped.front()].seq)) {
      check(cache.swapIn(requests[swapped.front()].seq), "swapIn");
      running.push_back(swapped.front());
      swapped.pop_front();
    }
    // New (and recomputed) requests, FCFS.
    int32_t budget = config.prefill_budget;
    while (swapped.empty() && !waiting.empty() &&
           static_cast<int32_t>(running.size()) < config.max_batch) {
      const int32_t id = waiting.front();
      Request& q = requests[id];
      const kv::AdmitCheck check_admit = cache.canAdmit(q.prompt);
      if (!check_admit.ever_fits) {
        drop(id);
        waiting.pop_front();
        continue;
      }
      const int32_t uncached = static_cast<int32_t>(q.prompt.size()) - check_admit.cached_tokens;
      if (uncached > budget && budget < config.prefill_budget) break;
      if (!check_admit.admissible && !running.empty()) break;
      q.seq = next_seq++;
      absl::StatusOr<kv::AllocateResult> a = cache.allocate(q.seq, q.prompt);
      if (!a.ok()) {
        if (!absl::IsResourceExhausted(a.status())) check(a.status(), "allocate");
        if (!running.empty()) break;
        drop(id);  // does not fit even in an idle pool
        waiting.pop_front();
        continue;
      }
      ++r.allocations;
      r.prompt_tokens += static_cast<int64_t>(q.prompt.size());
      r.hit_tokens += a->cached_tokens;
      r.host_hit_tokens += static_cast<int64_t>(a->host_hit_blocks) * kBlockSize;
      if (!q.admitted_once) {
        q.admitted_once = true;
        r.first_prompt_tokens += static_cast<int64_t>(q.prompt.size());
        r.first_hit_tokens += a->cached_tokens;
        ++r.first_admissions;
        r.wait_steps += step - q.arrival;
      }
      budget -= uncached;
      running.push_back(id);
      waiting.pop_front();
    }
    if (!running.empty()) ++r.busy_steps;
    r.max_running = std::max<int64_t>(r.max_running, static_cast<int64_t>(running.size()));

    // Decode: one token for every running sequence; preempt the newest when out of blocks.
    for (size_t i = 0; i < running.size(); ++i) {
      Request& q = requests[running[i]];
      bool preempted_self = false;
      while (!cache.canAppend(q.seq)) {
        const int32_t victim = running.back();
        running.pop_back();
        if (running.size() > i) {
          preempt(victim);
          continue;
        }
        // The newest running sequence is this one.
        if (running.empty()) {
          // Alone on the device and still out of blocks: it can never finish in this pool.
          check(cache.free(q.seq), "free (drop)");
          drop(victim);
        } else {
          preempt(victim);
        }
        preempted_self = true;
        break;
      }
      if (preempted_self) break;
      const std::vector<int32_t>& response = trace.sessions[q.session].turns[q.turn].response;
      check(cache.appendToken(q.seq, response[q.generated]), "appendToken");
      ++q.generated;
    }
    // Finished sequences: mark everything computed, free, schedule the session's next turn.
    std::vector<int32_t> still;
    still.reserve(running.size());
    for (int32_t id : running) {
      Request& q = requests[id];
      const Session& s = trace.sessions[q.session];
      const std::vector<int32_t>& response = s.turns[q.turn].response;
      if (q.generated < static_cast<int32_t>(response.size())) {
        still.push_back(id);
        continue;
      }
      const int32_t tokens = q.turn_prompt + q.generated;
      check(cache.setComputed(q.seq, tokens), "setComputed");
      check(cache.free(q.seq), "free");
      ++finished;
      q.prompt = {};
      std::vector<int32_t>& ctx = context[q.session];
      ctx.insert(ctx.end(), response.begin(), response.end());
      if (q.turn + 1 < static_cast<int32_t>(s.turns.size())) {
        const int32_t session = q.session;
        const int32_t turn = q.turn + 1;
        newTurn(session, turn, step + 1 + s.turns[turn - 1].think);  // q may move
      } else {
        context[q.session] = {};
      }
    }
    running = std::move(still);
    ++step;
    if (step > int64_t{1} << 40) {
      std::fprintf(stderr, "bench_kv_trace: the trace does not finish\n");
      std::exit(1);
    }
  }
  r.steps = step;
  if (cache.usedBlocks() != 0) {
    std::fprintf(stderr, "bench_kv_trace: %d blocks still used after the trace\n",
                 cache.usedBlocks());
    std::exit(1);
  }
  r.evicted_blocks = cache.evictedBlocks();
  r.offloaded_blocks = cache.offloadedBlocks();
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

double ratio(double a, double b) { return b != 0 ? a / b : NAN; }

}  // namespace

int main(int argc, char** argv) {
  TraceConfig config;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--seed" && has_value) {
      config.seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--sessions" && has_value && std::atoi(argv[i + 1]) > 0) {
      config.sessions = std::atoi(argv[++i]);
    } else if (arg == "--blocks" && has_value && std::atoi(argv[i + 1]) > 0) {
      config.blocks = std::atoi(argv[++i]);
    } else if (arg == "--interarrival" && has_value && std::atof(argv[i + 1]) > 0) {
      config.interarrival = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "bench_kv_trace: error: unknown flag %s (flags: --seed S, --sessions N, "
                   "--blocks N, --interarrival STEPS)\n",
                   argv[i]);
      return 2;
    }
  }
  const Trace trace = makeTrace(config);
  int64_t turn_tokens = 0;
  for (const Session& s : trace.sessions) {
    for (const Turn& t : s.turns) {
      turn_tokens += static_cast<int64_t>(t.user.size() + t.response.size());
    }
  }
  std::printf(
      "bench_kv_trace: seed %llu, %d sessions (%lld turns, %lld user+response tokens), %d system "
      "prompts of 500..2000 tokens\n"
      "  pool %d blocks of %d tokens (%d tokens); arrivals every %.0f steps on average, think "
      "time %.0f steps; max batch %d, prefill budget %d tokens/step\n\n",
      static_cast<unsigned long long>(config.seed), config.sessions,
      static_cast<long long>(trace.turns), static_cast<long long>(turn_tokens),
      config.system_prompts, config.blocks, kBlockSize, config.blocks * kBlockSize,
      config.interarrival, config.think, config.max_batch, config.prefill_budget);

  kv::Options plain;
  plain.num_blocks = config.blocks;
  plain.block_size = kBlockSize;
  kv::Options host = plain;
  host.num_host_blocks = 2 * config.blocks;
  host.offload_evicted = true;

  struct Row {
    const char* name;
    Result result;
  };
  std::vector<Row> rows;
  {
    GangwayCache cache(plain, /*swap=*/false);
    rows.push_back({"gangway", replay(trace, config, cache)});
  }
  {
    GangwayCache cache(host, /*swap=*/true);
    rows.push_back({"gangway + host tier", replay(trace, config, cache)});
  }
  {
    LruCache cache(config.blocks);
    rows.push_back({"LRU baseline", replay(trace, config, cache)});
  }

  std::printf("%-20s %7s %8s %7s %11s %8s %7s %9s %9s %8s %8s %7s %7s %6s\n", "policy", "hit %",
              "1st hit%", "host %", "prefill tok", "preempt", "(swap)", "evicted", "offloaded",
              "steps", "busy", "wait", "dropped", "wall s");
  for (const Row& row : rows) {
    const Result& x = row.result;
    std::printf(
        "%-20s %7.2f %8.2f %7.2f %11lld %8lld %7lld %9lld %9lld %8lld %8lld %7.1f %7lld %6.2f\n",
        row.name, 100.0 * x.hitRate(), 100.0 * x.firstHitRate(),
        100.0 * ratio(static_cast<double>(x.host_hit_tokens), static_cast<double>(x.prompt_tokens)),
        static_cast<long long>(x.prefillTokens()), static_cast<long long>(x.preemptions()),
        static_cast<long long>(x.swap_preemptions), static_cast<long long>(x.evicted_blocks),
        static_cast<long long>(x.offloaded_blocks), static_cast<long long>(x.steps),
        static_cast<long long>(x.busy_steps), x.meanWait(), static_cast<long long>(x.dropped),
        x.wall_s);
  }
  const Result& base = rows.back().result;
  std::printf("\nagainst the LRU baseline:\n");
  for (size_t i = 0; i + 1 < rows.size(); ++i) {
    const Result& x = rows[i].result;
    std::printf(
        "  %-20s hit rate x%.2f, prefill tokens x%.2f, preemptions %lld vs %lld (x%.2f), "
        "steps x%.3f, wait x%.2f\n",
        rows[i].name, ratio(x.hitRate(), base.hitRate()),
        ratio(static_cast<double>(x.prefillTokens()), static_cast<double>(base.prefillTokens())),
        static_cast<long long>(x.preemptions()), static_cast<long long>(base.preemptions()),
        ratio(static_cast<double>(x.preemptions()), static_cast<double>(base.preemptions())),
        ratio(static_cast<double>(x.steps), static_cast<double>(base.steps)),
        ratio(x.meanWait(), base.meanWait()));
  }
  return 0;
}
