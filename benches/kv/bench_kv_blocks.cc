// The block manager's cost on the CPU (libgangway_kv's KvCacheManager), against the goals:
//   (a) churn: sequences allocated with a prompt, decoded token by token, freed and replaced, at
//       256 and 4096 concurrent sequences. Block operations (blocks allocated + blocks freed) and
//       calls per second. Goal: > 10 million block operations per second.
//   (b) longest-prefix lookup of a 32768-token prompt (2048 blocks of 16 tokens): canAdmit() and
//       allocate() + free(), fully cached, half cached and not cached. Goal: < 50 us cached.
//   (c) one decode step of 256 running sequences: canAppend + appendToken for each, the padded
//       block table, the sequence lengths, the new tokens' slots and takeCopies(). Goal: < 1% of a
//       20 ms decode step (200 us).
// Medians over repetitions, timed with std::chrono::steady_clock. See README.md.
// Usage: bench_kv_blocks [--reps N] [--seed S] [--only abc] [--seqs 256|4096]
//   --only picks sections (default abc); --seqs runs (a) at that many sequences only.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "gangway/kv/manager.h"
#include "gangway/kv/types.h"

namespace kv = gangway::kv;

namespace {

using Clock = std::chrono::steady_clock;

constexpr int32_t kBlockSize = 16;
constexpr int32_t kVocab = 32000;

void check(const absl::Status& status, const char* what) {
  if (!status.ok()) {
    std::fprintf(stderr, "bench_kv_blocks: %s: %s\n", what, std::string(status.message()).c_str());
    std::exit(1);
  }
}

template <typename T>
T valueOf(absl::StatusOr<T> v, const char* what) {
  check(v.status(), what);
  return *std::move(v);
}

double secondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const auto i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

double median(std::vector<double> v) { return percentile(std::move(v), 0.5); }

std::unique_ptr<kv::KvCacheManager> makeManager(int32_t num_blocks) {
  kv::Options options;
  options.num_blocks = num_blocks;
  options.block_size = kBlockSize;
  options.enable_prefix_caching = true;
  return valueOf(kv::KvCacheManager::create(options), "create");
}

std::vector<int32_t> randomTokens(std::mt19937_64& rng, size_t n) {
  std::uniform_int_distribution<int32_t> token(0, kVocab - 1);
  std::vector<int32_t> out(n);
  for (int32_t& t : out) t = token(rng);
  return out;
}

const char* verdict(bool met) { return met ? "met" : "MISSED"; }

// ---------------------------------------------------------------------------------------------
// (a) churn

// A ring of prompts of 64..1024 tokens: half begin with one of 8 shared system prompts (96..384
// tokens), the rest is random. Every use overwrites the first token after the shared part with a
// value never used before, so only the system prompt can hit the cache. Built before timing.
class PromptSource {
 public:
  PromptSource(std::mt19937_64& rng, int32_t count) {
    std::uniform_int_distribution<int32_t> sys_len(96, 384);
    std::vector<std::vector<int32_t>> system;
    for (int i = 0; i < 8; ++i) system.push_back(randomTokens(rng, sys_len(rng)));
    std::uniform_int_distribution<int32_t> len(64, 1024);
    std::uniform_int_distribution<size_t> which(0, system.size() - 1);
    std::bernoulli_distribution shared(0.5);
    for (int32_t i = 0; i < count; ++i) {
      const auto n = static_cast<size_t>(len(rng));
      std::vector<int32_t> p = randomTokens(rng, n);
      int32_t unique_at = 0;
      if (shared(rng)) {
        const std::vector<int32_t>& s = system[which(rng)];
        if (s.size() + 16 <= n) {
          std::copy(s.begin(), s.end(), p.begin());
          unique_at = static_cast<int32_t>(s.size());
        }
      }
      prompts_.push_back(std::move(p));
      unique_at_.push_back(unique_at);
    }
  }

  std::span<const int32_t> next() {
    const size_t i = cursor_++ % prompts_.size();
    prompts_[i][unique_at_[i]] = fresh_++;
    return prompts_[i];
  }

  double meanTokens() const {
    double sum = 0;
    for (const auto& p : prompts_) sum += static_cast<double>(p.size());
    return sum / static_cast<double>(prompts_.size());
  }

 private:
  std::vector<std::vector<int32_t>> prompts_;
  std::vector<int32_t> unique_at_;
  size_t cursor_ = 0;
  int32_t fresh_ = kVocab;
};

struct ChurnSpec {
  int32_t seqs;
  int32_t min_decode;
  int32_t max_decode;
};

struct ChurnResult {
  double block_ops_per_s = 0;
  double calls_per_s = 0;
  double ns_per_call = 0;
  double block_ops_per_call = 0;
  int32_t pool_blocks = 0;
  double hit_share = 0;  // hit blocks / queried blocks over the timed reps
  int64_t exhausted = 0;
  // From one more repetition with every call timed (the timer's own cost subtracted): mean ns
  // per call of allocate, setComputed, free, appendToken, their share of the time, and the mean
  // blocks that allocate() takes (new + hit) and free() releases.
  double call_ns[4] = {};
  double time_share[4] = {};
  double alloc_blocks = 0;
  double free_blocks = 0;
};

// Mean cost of one Clock::now() call (a timed call pays for two halves of it).
double timerCostNs() {
  std::vector<double> v;
  for (int r = 0; r < 7; ++r) {
    constexpr int kN = 100000;
    const Clock::time_point t0 = Clock::now();
    for (int i = 0; i < kN; ++i) (void)Clock::now();
    v.push_back(secondsBetween(t0, Clock::now()) * 1e9 / kN);
  }
  return median(v);
}

ChurnResult runChurn(const ChurnSpec& spec, int reps, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int32_t max_seq_blocks = (1024 + spec.max_decode + kBlockSize - 1) / kBlockSize;
  const int32_t pool_blocks = spec.seqs * (max_seq_blocks + max_seq_blocks / 4);
  auto mgr = makeManager(pool_blocks);
  PromptSource prompts(rng, 2 * spec.seqs);
  std::vector<int32_t> decode_lengths(4096);
  std::uniform_int_distribution<int32_t> decode(spec.min_decode, spec.max_decode);
  for (int32_t& d : decode_lengths) d = decode(rng);

  struct Slot {
    kv::SeqId seq = 0;  // 0: no sequence (its allocate() ran out of blocks)
    int32_t tokens = 0;
    int32_t decode_left = 0;
  };
  std::vector<Slot> slots(static_cast<size_t>(spec.seqs));
  kv::SeqId next_id = 1;
  size_t next_decode = 0;
  int64_t calls = 0;
  int64_t exhausted = 0;
  // The breakdown: per kind (allocate, setComputed, free, appendToken) calls and nanoseconds.
  bool timed = false;
  int64_t kind_calls[4] = {};
  double kind_ns[4] = {};
  int64_t alloc_blocks = 0;
  int64_t free_blocks = 0;
  Clock::time_point mark;
  auto begin = [&] {
    if (timed) mark = Clock::now();
  };
  auto end = [&](int kind) {
    if (!timed) return;
    kind_ns[kind] += std::chrono::duration<double, std::nano>(Clock::now() - mark).count();
    ++kind_calls[kind];
  };

  auto start = [&](Slot& s) {
    const std::span<const int32_t> prompt = prompts.next();
    const kv::SeqId id = next_id++;
    begin();
    absl::StatusOr<kv::AllocateResult> r = mgr->allocate(id, prompt);
    end(0);
    ++calls;
    if (!r.ok()) {
      if (!absl::IsResourceExhausted(r.status())) check(r.status(), "allocate");
      ++exhausted;
      s.seq = 0;
      return;
    }
    s.seq = id;
    s.tokens = static_cast<int32_t>(prompt.size());
    if (timed) alloc_blocks += r->new_blocks + r->device_hit_blocks;
    s.decode_left = decode_lengths[next_decode++ % decode_lengths.size()];
  };
  // One tick: every sequence decodes one token, or (when done) is marked computed, freed and
  // replaced by a new prompt.
  auto tick = [&] {
    for (Slot& s : slots) {
      if (s.seq == 0) {
        start(s);
      } else if (s.decode_left > 0) {
        begin();
        const absl::Status st = mgr->appendToken(s.seq, s.tokens & 0x7fff);
        end(3);
        check(st, "appendToken");
        ++s.tokens;
        --s.decode_left;
        ++calls;
      } else {
        begin();
        const absl::Status sc = mgr->setComputed(s.seq, s.tokens);
        end(1);
        check(sc, "setComputed");
        begin();
        const absl::Status sf = mgr->free(s.seq);
        end(2);
        check(sf, "free");
        if (timed) free_blocks += (s.tokens + kBlockSize - 1) / kBlockSize;
        calls += 2;
        start(s);
      }
    }
  };

  for (Slot& s : slots) start(s);
  // Warm up until every slot has been replaced a few times and the cache is full.
  for (int32_t i = 0; i < 4 * (spec.max_decode + 1) + 4; ++i) tick();

  // Repetitions of about 0.25 s each: count the ticks that take that long (still warming up).
  int64_t ticks = 0;
  for (const Clock::time_point t0 = Clock::now(); secondsBetween(t0, Clock::now()) < 0.25;) {
    tick();
    ++ticks;
  }
  std::vector<double> ops_rate;
  std::vector<double> call_rate;
  std::vector<double> ops_per_call;
  int64_t queried = 0;
  int64_t hits = 0;
  exhausted = 0;
  for (int r = 0; r < reps; ++r) {
    const kv::Stats before = mgr->stats();
    const int64_t calls_before = calls;
    const Clock::time_point t0 = Clock::now();
    for (int64_t i = 0; i < ticks; ++i) tick();
    const Clock::time_point t1 = Clock::now();
    const kv::Stats after = mgr->stats();
    const double s = secondsBetween(t0, t1);
    const auto ops = static_cast<double>((after.allocated_blocks - before.allocated_blocks) +
                                         (after.freed_blocks - before.freed_blocks));
    const auto c = static_cast<double>(calls - calls_before);
    ops_rate.push_back(ops / s);
    call_rate.push_back(c / s);
    ops_per_call.push_back(ops / c);
    queried += after.queried_blocks - before.queried_blocks;
    hits += after.hit_blocks - before.hit_blocks;
  }
  ChurnResult out;
  out.pool_blocks = pool_blocks;
  out.block_ops_per_s = median(ops_rate);
  out.calls_per_s = median(call_rate);
  out.ns_per_call = 1e9 / out.calls_per_s;
  out.block_ops_per_call = median(ops_per_call);
  out.hit_share = queried > 0 ? static_cast<double>(hits) / static_cast<double>(queried) : 0.0;
  out.exhausted = exhausted;

  timed = true;
  for (int64_t i = 0; i < ticks; ++i) tick();
  const double timer_ns = timerCostNs();
  double total_ns = 0;
  for (int k = 0; k < 4; ++k) {
    kind_ns[k] = std::max(0.0, kind_ns[k] - timer_ns * static_cast<double>(kind_calls[k]));
    total_ns += kind_ns[k];
  }
  for (int k = 0; k < 4; ++k) {
    out.call_ns[k] = kind_calls[k] > 0 ? kind_ns[k] / static_cast<double>(kind_calls[k]) : 0.0;
    out.time_share[k] = total_ns > 0 ? kind_ns[k] / total_ns : 0.0;
  }
  out.alloc_blocks = kind_calls[0] > 0
                         ? static_cast<double>(alloc_blocks) / static_cast<double>(kind_calls[0])
                         : 0.0;
  out.free_blocks = kind_calls[2] > 0
                        ? static_cast<double>(free_blocks) / static_cast<double>(kind_calls[2])
                        : 0.0;
  return out;
}

// ---------------------------------------------------------------------------------------------
// (b) lookup of a 32k-token prompt

struct LookupResult {
  int32_t cached_tokens = 0;
  double admit_us = 0;
  double alloc_free_us = 0;
  double alloc_us = 0;
  double free_us = 0;
};

LookupResult timeLookup(kv::KvCacheManager& mgr, std::span<const int32_t> prompt, int reps) {
  constexpr kv::SeqId kSeq = 1u << 30;
  LookupResult out;
  out.cached_tokens = mgr.canAdmit(prompt).cached_tokens;
  std::vector<double> admit;
  std::vector<double> both;
  std::vector<double> alloc;
  std::vector<double> freed;
  for (int r = -5; r < reps; ++r) {  // 5 warm-up rounds
    const Clock::time_point t0 = Clock::now();
    const kv::AdmitCheck c = mgr.canAdmit(prompt);
    const Clock::time_point t1 = Clock::now();
    if (!c.admissible || c.cached_tokens != out.cached_tokens) {
      std::fprintf(stderr, "bench_kv_blocks: canAdmit changed its answer\n");
      std::exit(1);
    }
    const Clock::time_point t2 = Clock::now();
    const kv::AllocateResult a = valueOf(mgr.allocate(kSeq, prompt), "allocate");
    const Clock::time_point t3 = Clock::now();
    check(mgr.free(kSeq), "free");
    const Clock::time_point t4 = Clock::now();
    if (a.cached_tokens != out.cached_tokens) {
      std::fprintf(stderr, "bench_kv_blocks: allocate found %d cached tokens, canAdmit %d\n",
                   a.cached_tokens, out.cached_tokens);
      std::exit(1);
    }
    if (r < 0) continue;
    admit.push_back(secondsBetween(t0, t1) * 1e6);
    alloc.push_back(secondsBetween(t2, t3) * 1e6);
    freed.push_back(secondsBetween(t3, t4) * 1e6);
    both.push_back(secondsBetween(t2, t4) * 1e6);
  }
  out.admit_us = median(admit);
  out.alloc_us = median(alloc);
  out.free_us = median(freed);
  out.alloc_free_us = median(both);
  return out;
}

// ---------------------------------------------------------------------------------------------
// (c) block management per decode step

struct StepResult {
  double total_us = 0;
  double p90_us = 0;
  double append_us = 0;
  double tables_us = 0;
  double slots_us = 0;
  double copies_us = 0;
  int32_t width = 0;  // padded block-table width at the end
};

StepResult runDecodeSteps(int32_t batch, int reps, int32_t steps_per_rep, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int32_t total_steps = 16 + reps * steps_per_rep;
  auto mgr = makeManager(batch * ((1024 + total_steps) / kBlockSize + 2));
  std::uniform_int_distribution<int32_t> len(64, 1024);
  std::vector<kv::SeqId> seqs;
  std::vector<int32_t> seq_lens;
  for (int32_t i = 0; i < batch; ++i) {
    const std::vector<int32_t> prompt = randomTokens(rng, static_cast<size_t>(len(rng)));
    const auto id = static_cast<kv::SeqId>(i + 1);
    valueOf(mgr->allocate(id, prompt), "allocate");
    seqs.push_back(id);
    seq_lens.push_back(static_cast<int32_t>(prompt.size()));
  }

  std::vector<std::span<const kv::BlockId>> tables(static_cast<size_t>(batch));
  std::vector<int32_t> block_tables;  // [batch, width], padded with 0
  std::vector<int64_t> slots(static_cast<size_t>(batch));
  block_tables.reserve(static_cast<size_t>(batch) * ((1024 + total_steps) / kBlockSize + 2));
  int32_t width = 0;
  size_t copies_seen = 0;

  std::vector<double> total;
  std::vector<double> append;
  std::vector<double> build;
  std::vector<double> slot;
  std::vector<double> copies;
  for (int32_t step = 0; step < total_steps; ++step) {
    const Clock::time_point t0 = Clock::now();
    for (int32_t i = 0; i < batch; ++i) {
      if (!mgr->canAppend(seqs[i], 1)) {
        std::fprintf(stderr, "bench_kv_blocks: decode step: pool too small\n");
        std::exit(1);
      }
      check(mgr->appendToken(seqs[i], step & 0x7fff), "appendToken");
      ++seq_lens[i];
    }
    const Clock::time_point t1 = Clock::now();
    width = 0;
    for (int32_t i = 0; i < batch; ++i) {
      tables[i] = valueOf(mgr->blockTable(seqs[i]), "blockTable");
      width = std::max(width, static_cast<int32_t>(tables[i].size()));
    }
    block_tables.resize(static_cast<size_t>(batch) * width);
    for (int32_t i = 0; i < batch; ++i) {
      int32_t* row = block_tables.data() + static_cast<size_t>(i) * width;
      std::copy(tables[i].begin(), tables[i].end(), row);
      std::fill(row + tables[i].size(), row + width, 0);
    }
    const Clock::time_point t2 = Clock::now();
    for (int32_t i = 0; i < batch; ++i) {
      check(mgr->slotMapping(seqs[i], seq_lens[i] - 1, 1, std::span<int64_t>(&slots[i], 1)),
            "slotMapping");
    }
    const Clock::time_point t3 = Clock::now();
    const std::vector<kv::BlockCopy> c = mgr->takeCopies();
    const Clock::time_point t4 = Clock::now();
    copies_seen += c.size();
    if (step < 16) continue;  // warm-up
    total.push_back(secondsBetween(t0, t4) * 1e6);
    append.push_back(secondsBetween(t0, t1) * 1e6);
    build.push_back(secondsBetween(t1, t2) * 1e6);
    slot.push_back(secondsBetween(t2, t3) * 1e6);
    copies.push_back(secondsBetween(t3, t4) * 1e6);
  }
  // Keep the outputs alive so that the compiler cannot drop the work.
  int64_t sink = static_cast<int64_t>(copies_seen);
  for (int32_t b : block_tables) sink += b;
  for (int64_t s : slots) sink += s;
  if (sink == -1) std::printf("%lld\n", static_cast<long long>(sink));

  StepResult out;
  out.total_us = median(total);
  out.p90_us = percentile(total, 0.9);
  out.append_us = median(append);
  out.tables_us = median(build);
  out.slots_us = median(slot);
  out.copies_us = median(copies);
  out.width = width;
  return out;
}

bool sectionChurn(int reps, uint64_t seed, int32_t only_seqs) {
  constexpr double kOpsGoal = 10e6;
  std::printf(
      "(a) churn: prompts of 64..1024 tokens (half behind one of 8 shared system prompts),\n"
      "    decode, setComputed + free, replace. block op = block allocated or freed.\n");
  std::printf("%6s %9s %7s %14s %12s %9s %12s %7s  %s\n", "seqs", "decode", "pool", "block ops/s",
              "calls/s", "ns/call", "blk ops/call", "hit %", "goal > 10 M block ops/s");
  bool churn_met = true;
  std::vector<std::pair<ChurnSpec, ChurnResult>> results;
  for (const ChurnSpec spec : {ChurnSpec{256, 0, 0}, ChurnSpec{256, 16, 256}, ChurnSpec{4096, 0, 0},
                               ChurnSpec{4096, 16, 256}}) {
    if (only_seqs != 0 && spec.seqs != only_seqs) continue;
    const ChurnResult r = runChurn(spec, reps, seed);
    results.emplace_back(spec, r);
    const bool met = r.block_ops_per_s > kOpsGoal;
    churn_met = churn_met && met;
    const std::string decode =
        std::to_string(spec.min_decode) + ".." + std::to_string(spec.max_decode);
    std::printf("%6d %9s %7d %12.2f M %10.2f M %9.1f %12.2f %7.1f  %s%s\n", spec.seqs,
                decode.c_str(), r.pool_blocks, r.block_ops_per_s / 1e6, r.calls_per_s / 1e6,
                r.ns_per_call, r.block_ops_per_call, 100.0 * r.hit_share, verdict(met),
                r.exhausted > 0 ? " (allocate ran out of blocks)" : "");
    std::fflush(stdout);
  }
  std::printf(
      "    where the time goes (one more repetition, every call timed, timer cost subtracted):\n");
  std::printf("%6s %9s %22s %15s %22s %13s  %s\n", "seqs", "decode", "allocate ns (blocks)",
              "setComputed ns", "free ns (blocks)", "append ns", "time: alloc/setComp/free/append");
  for (const auto& [spec, r] : results) {
    const std::string decode =
        std::to_string(spec.min_decode) + ".." + std::to_string(spec.max_decode);
    std::printf(
        "%6d %9s %13.0f (%5.1f) %15.0f %13.0f (%5.1f) %13.1f  %2.0f%% / %2.0f%% / %2.0f%% / "
        "%2.0f%%\n",
        spec.seqs, decode.c_str(), r.call_ns[0], r.alloc_blocks, r.call_ns[1], r.call_ns[2],
        r.free_blocks, r.call_ns[3], 100 * r.time_share[0], 100 * r.time_share[1],
        100 * r.time_share[2], 100 * r.time_share[3]);
  }
  return churn_met;
}

bool sectionLookup(int reps, uint64_t seed) {
  constexpr double kLookupGoalUs = 50.0;
  std::printf("(b) lookup of a 32768-token prompt (2048 blocks), median us over %d calls\n",
              50 * reps);
  std::printf("%-14s %8s %10s %16s %12s %9s  %s\n", "case", "cached", "canAdmit", "allocate+free",
              "allocate", "free", "goal < 50 us");
  std::mt19937_64 rng(seed + 1);
  constexpr size_t kLong = 32768;
  auto mgr = makeManager(4 * 2048 + 64);
  const std::vector<int32_t> full = randomTokens(rng, kLong);
  check(mgr->allocate(1, full).status(), "allocate");
  check(mgr->setComputed(1, static_cast<int32_t>(kLong)), "setComputed");
  check(mgr->free(1), "free");
  std::vector<int32_t> half = randomTokens(rng, kLong);
  std::copy(full.begin(), full.begin() + kLong / 2, half.begin());
  const std::vector<int32_t> cold = randomTokens(rng, kLong);
  bool lookup_met = true;
  for (const auto& [name, prompt] :
       {std::pair<const char*, const std::vector<int32_t>*>{"fully cached", &full},
        {"half cached", &half},
        {"cold", &cold}}) {
    const LookupResult r = timeLookup(*mgr, *prompt, 50 * reps);
    const bool goal = prompt == &full;
    const bool met = r.admit_us < kLookupGoalUs && r.alloc_free_us < kLookupGoalUs;
    if (goal) lookup_met = met;
    std::printf("%-14s %8d %7.2f us %13.2f us %9.2f us %6.2f us  %s\n", name, r.cached_tokens,
                r.admit_us, r.alloc_free_us, r.alloc_us, r.free_us,
                goal ? verdict(met) : "(no goal)");
    std::fflush(stdout);
  }

  return lookup_met;
}

bool sectionStep(int reps, uint64_t seed) {
  constexpr double kStepUs = 20000.0;
  constexpr int32_t kBatch = 256;
  const StepResult s = runDecodeSteps(kBatch, reps, 128, seed + 2);
  std::printf(
      "(c) one decode step of %d sequences (prompts 64..1024 tokens), median over %d steps\n",
      kBatch, 128 * reps);
  std::printf("    canAppend + appendToken x %d   %8.1f us\n", kBatch, s.append_us);
  std::printf("    block table [%d, %d] + seq lens %8.1f us\n", kBatch, s.width, s.tables_us);
  std::printf("    slotMapping x %d               %8.1f us\n", kBatch, s.slots_us);
  std::printf("    takeCopies                      %8.1f us\n", s.copies_us);
  const bool step_met = s.total_us < 0.01 * kStepUs;
  std::printf(
      "    total                           %8.1f us (p90 %.1f us) = %.2f%% of 20 ms  "
      "goal < 1%% (200 us): %s\n",
      s.total_us, s.p90_us, 100.0 * s.total_us / kStepUs, verdict(step_met));

  return step_met;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 7;
  uint64_t seed = 1;
  std::string only = "abc";
  int32_t only_seqs = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--reps" && i + 1 < argc && std::atoi(argv[i + 1]) >= 7) {
      reps = std::atoi(argv[++i]);
    } else if (arg == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--seqs" && i + 1 < argc) {
      only_seqs = std::atoi(argv[++i]);
    } else if (arg == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else {
      std::fprintf(
          stderr,
          "bench_kv_blocks: error: unknown flag %s (flags: --reps N (>= 7), --seed S, --only "
          "[abc], --seqs 256|4096)\n",
          argv[i]);
      return 2;
    }
  }
  std::printf("bench_kv_blocks: block_size %d, prefix caching on, %d repetitions, seed %llu\n\n",
              kBlockSize, reps, static_cast<unsigned long long>(seed));

  const char* verdicts[3] = {"skipped", "skipped", "skipped"};
  if (only.find('a') != std::string::npos) {
    verdicts[0] = verdict(sectionChurn(reps, seed, only_seqs));
    std::printf("\n");
  }
  if (only.find('b') != std::string::npos) {
    verdicts[1] = verdict(sectionLookup(reps, seed));
    std::printf("\n");
  }
  if (only.find('c') != std::string::npos) {
    verdicts[2] = verdict(sectionStep(reps, seed));
    std::printf("\n");
  }
  std::printf("goals: (a) %s, (b) %s, (c) %s\n", verdicts[0], verdicts[1], verdicts[2]);
  return 0;
}
