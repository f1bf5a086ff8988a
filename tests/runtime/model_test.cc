// A randomized model-based test of KvCacheManager. Thousands of random allocate / append / fork /
// free / setComputed / evict / swapOut / swapIn operations (and invalid ones) run against the
// manager while the test plays the server: it executes every copy list in order on simulated device
// and host memory, and "computes" each new token by writing, into the token's slot, a value that
// stands for its key/value: a hash of the whole prefix up to that token (keys and values depend on
// every earlier token) and the sequence's extra key. After every operation the test checks, for
// every sequence, that reading its blocks gives exactly its own prefix values, so a wrong cache
// hit, a stale block after eviction, a missed or misordered copy, or a write into a shared block
// shows up as wrong content; and that the manager's reference counts and gauges equal the model's.
#include <array>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "gangway/kv/manager.h"

namespace gangway::kv {
namespace {

struct ModelSeq {
  std::vector<int32_t> tokens;
  uint64_t salt = 0;  // extra key at position 0 (0: none)
  bool swapped = false;
};

uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdULL;
}

// The value a computed token leaves in its slot: a function of every token up to it and the salt.
uint64_t kvValue(const ModelSeq& s, int32_t position) {
  uint64_t h = mix(1, s.salt);
  for (int32_t i = 0; i <= position; ++i) h = mix(h, static_cast<uint64_t>(s.tokens[i]) + 7);
  return h | 1;  // never 0, which marks an unwritten slot
}

struct Config {
  const char* name;
  int32_t blocks;
  int32_t block_size;
  int32_t host_blocks;
  bool prefix_caching;
  int32_t hash_bits;
  uint64_t seed;
};

class ModelTest : public ::testing::TestWithParam<Config> {
 protected:
  void SetUp() override {
    const Config& c = GetParam();
    Options o;
    o.num_blocks = c.blocks;
    o.block_size = c.block_size;
    o.num_host_blocks = c.host_blocks;
    o.enable_prefix_caching = c.prefix_caching;
    o.hash_bits = c.hash_bits;
    o.watermark = 0.0;
    auto m = KvCacheManager::create(o);
    ASSERT_TRUE(m.ok()) << m.status();
    m_ = std::move(m).value();
    bs_ = c.block_size;
    device_.assign(static_cast<size_t>(c.blocks) * bs_, 0);
    host_.assign(static_cast<size_t>(c.host_blocks) * bs_, 0);
    rng_.seed(c.seed);
    for (auto& f : families_) {
      f.resize(3 * bs_ + 3);
      for (auto& t : f) t = static_cast<int32_t>(rng_() % 4);  // few symbols: many equal blocks
    }
  }

  int32_t pick(int32_t lo, int32_t hi) {  // inclusive
    return lo + static_cast<int32_t>(rng_() % static_cast<uint64_t>(hi - lo + 1));
  }

  // Runs the manager's copies in order, as a server does before its forward pass.
  void runCopies() {
    for (const BlockCopy& c : m_->takeCopies()) {
      const std::vector<uint64_t>& from = c.kind == CopyKind::kHostToDevice ? host_ : device_;
      std::vector<uint64_t>& to = c.kind == CopyKind::kDeviceToHost ? host_ : device_;
      for (int32_t i = 0; i < bs_; ++i) {
        to[static_cast<size_t>(c.dst) * bs_ + i] = from[static_cast<size_t>(c.src) * bs_ + i];
      }
    }
  }

  // The forward pass: writes tokens [first, n) of a running sequence into their slots.
  void compute(SeqId id, int32_t first) {
    const ModelSeq& s = model_.at(id);
    const int32_t n = static_cast<int32_t>(s.tokens.size());
    if (first >= n) return;
    std::vector<int64_t> slots(n - first);
    ASSERT_TRUE(m_->slotMapping(id, first, n - first, slots).ok());
    for (int32_t p = first; p < n; ++p) {
      const int64_t slot = slots[p - first];
      ASSERT_EQ(m_->deviceRefCount(static_cast<BlockId>(slot / bs_)), 1)
          << "token " << p << " of sequence " << id << " would be written into a shared block";
      device_[slot] = kvValue(s, p);
    }
  }

  void checkAll() {
    std::map<BlockId, int32_t> dev_refs;
    std::map<BlockId, int32_t> host_refs;
    for (const auto& [id, s] : model_) {
      auto t = m_->blockTable(id);
      ASSERT_TRUE(t.ok()) << t.status();
      const int32_t n = static_cast<int32_t>(s.tokens.size());
      ASSERT_EQ(static_cast<int32_t>(t->size()), (n + bs_ - 1) / bs_) << "sequence " << id;
      ASSERT_EQ(*m_->isSwapped(id), s.swapped);
      const std::vector<uint64_t>& mem = s.swapped ? host_ : device_;
      for (BlockId b : *t) ++(s.swapped ? host_refs : dev_refs)[b];
      for (int32_t p = 0; p < n; ++p) {
        const uint64_t got = mem[static_cast<size_t>((*t)[p / bs_]) * bs_ + p % bs_];
        ASSERT_EQ(got, kvValue(s, p)) << "sequence " << id << " token " << p << " of " << n
                                      << (s.swapped ? " (swapped)" : "") << " after op " << op_;
      }
    }
    for (const auto& [b, refs] : dev_refs) ASSERT_EQ(m_->deviceRefCount(b), refs) << "block " << b;
    for (const auto& [b, refs] : host_refs) ASSERT_EQ(m_->hostRefCount(b), refs) << "host " << b;
    const Stats st = m_->stats();
    ASSERT_EQ(st.used_blocks, static_cast<int32_t>(dev_refs.size()));
    ASSERT_EQ(st.used_blocks + st.free_blocks, st.num_blocks);
    ASSERT_LE(st.cached_blocks, st.free_blocks);
    ASSERT_EQ(st.host_used_blocks, static_cast<int32_t>(host_refs.size()));
    ASSERT_EQ(st.host_used_blocks + st.host_free_blocks, st.num_host_blocks);
    ASSERT_EQ(m_->pendingCopies(), 0u);
  }

  std::vector<int32_t> randomPrompt() {
    const auto& f = families_[rng_() % families_.size()];
    std::vector<int32_t> p(f.begin(), f.begin() + pick(0, static_cast<int32_t>(f.size())));
    const int32_t extra = pick(p.empty() ? 1 : 0, 2 * bs_);
    for (int32_t i = 0; i < extra; ++i) p.push_back(static_cast<int32_t>(rng_() % 4));
    return p;
  }

  SeqId randomLive() {
    auto it = model_.begin();
    std::advance(it, rng_() % model_.size());
    return it->first;
  }

  void step() {
    const int32_t kind = pick(0, 99);
    if (kind < 22 || model_.empty()) {  // allocate
      ModelSeq s;
      s.tokens = randomPrompt();
      s.salt = rng_() % 5 == 0 ? 1 + rng_() % 2 : 0;
      std::vector<ExtraKey> extras;
      if (s.salt != 0) extras.push_back({0, s.salt});
      const SeqId id = next_id_++;
      const AdmitCheck check = m_->canAdmit(s.tokens, extras);
      auto r = m_->allocate(id, s.tokens, extras);
      if (!r.ok()) {
        ASSERT_TRUE(r.status().code() == absl::StatusCode::kResourceExhausted ||
                    r.status().code() == absl::StatusCode::kInvalidArgument)
            << r.status();
        ASSERT_FALSE(check.admissible);
        return;
      }
      ASSERT_EQ(r->cached_tokens, check.cached_tokens);
      ASSERT_LT(r->cached_tokens, static_cast<int32_t>(s.tokens.size()));
      ASSERT_EQ(r->cached_tokens % bs_, 0);
      hits_ += r->cached_tokens;
      model_[id] = s;
      runCopies();
      compute(id, r->cached_tokens);
    } else if (kind < 55) {  // append (decode or a chunk)
      const SeqId id = randomLive();
      ModelSeq& s = model_[id];
      std::vector<int32_t> tokens(pick(1, bs_ + 1));
      for (auto& t : tokens) t = static_cast<int32_t>(rng_() % 4);
      const bool could = m_->canAppend(id, static_cast<int32_t>(tokens.size()));
      const absl::Status st = m_->append(id, tokens);
      if (s.swapped) {
        ASSERT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
        ASSERT_FALSE(could);
        return;
      }
      if (!st.ok()) {
        ASSERT_TRUE(st.code() == absl::StatusCode::kResourceExhausted ||
                    st.code() == absl::StatusCode::kInvalidArgument)
            << st;
        ASSERT_FALSE(could);
        return;
      }
      ASSERT_TRUE(could);
      const int32_t first = static_cast<int32_t>(s.tokens.size());
      s.tokens.insert(s.tokens.end(), tokens.begin(), tokens.end());
      runCopies();
      compute(id, first);
    } else if (kind < 63) {  // fork
      const SeqId id = randomLive();
      const SeqId child = next_id_++;
      const absl::Status st = m_->fork(id, child);
      if (model_[id].swapped) {
        ASSERT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
        return;
      }
      ASSERT_TRUE(st.ok()) << st;
      model_[child] = model_[id];
    } else if (kind < 80) {  // free, usually after marking the last step computed
      const SeqId id = randomLive();
      if (!model_[id].swapped && rng_() % 3 != 0) {
        ASSERT_TRUE(m_->setComputed(id, static_cast<int32_t>(model_[id].tokens.size())).ok());
      }
      ASSERT_TRUE(m_->free(id).ok());
      model_.erase(id);
      ASSERT_EQ(m_->free(id).code(), absl::StatusCode::kNotFound);  // twice
    } else if (kind < 85) {  // setComputed part-way (chunked prefill)
      const SeqId id = randomLive();
      const int32_t n = static_cast<int32_t>(model_[id].tokens.size());
      const absl::Status st = m_->setComputed(id, pick(0, n));
      ASSERT_EQ(st.ok(), !model_[id].swapped) << st;
    } else if (kind < 89) {
      m_->evictCached(pick(1, 4));
      runCopies();
    } else if (kind < 95) {  // swap out
      const SeqId id = randomLive();
      const absl::Status st = m_->swapOut(id);
      if (st.ok()) {
        ASSERT_FALSE(model_[id].swapped);
        model_[id].swapped = true;
        runCopies();
      } else {
        ASSERT_TRUE(model_[id].swapped || GetParam().host_blocks == 0 ||
                    st.code() == absl::StatusCode::kResourceExhausted ||
                    st.code() == absl::StatusCode::kInvalidArgument)
            << st;
      }
    } else if (kind < 99) {  // swap in
      const SeqId id = randomLive();
      const bool could = m_->canSwapIn(id);
      const absl::Status st = m_->swapIn(id);
      ASSERT_EQ(st.ok(), could) << st;
      if (st.ok()) {
        model_[id].swapped = false;
        runCopies();
      }
    } else {  // invalid operations on ids that do not exist
      ASSERT_EQ(m_->appendToken(next_id_ + 1000, 1).code(), absl::StatusCode::kNotFound);
      ASSERT_EQ(m_->swapIn(next_id_ + 1000).code(), absl::StatusCode::kNotFound);
    }
  }

  std::unique_ptr<KvCacheManager> m_;
  int32_t bs_ = 0;
  std::vector<uint64_t> device_;
  std::vector<uint64_t> host_;
  std::mt19937_64 rng_;
  std::array<std::vector<int32_t>, 4> families_;
  std::map<SeqId, ModelSeq> model_;
  SeqId next_id_ = 1;
  int64_t hits_ = 0;
  int op_ = 0;
};

TEST_P(ModelTest, RandomOperationsKeepEverySequencesContent) {
  constexpr int kOps = 6000;
  for (op_ = 0; op_ < kOps; ++op_) {
    ASSERT_NO_FATAL_FAILURE(step());
    ASSERT_NO_FATAL_FAILURE(checkAll());
    if (model_.size() > 12) {  // keep the pool under pressure but moving
      const SeqId id = randomLive();
      ASSERT_TRUE(m_->free(id).ok());
      model_.erase(id);
    }
  }
  const Stats st = m_->stats();
  if (GetParam().prefix_caching && GetParam().hash_bits == 64) {
    EXPECT_GT(hits_, 0) << "the run never hit the prefix cache: the test would prove nothing";
    EXPECT_GT(st.evicted_blocks, 0);
  }
  if (GetParam().host_blocks > 0) {
    EXPECT_GT(st.swapped_out_blocks, 0);
    EXPECT_GT(st.swapped_in_blocks, 0);
  }
  if (GetParam().block_size > 1) {
    EXPECT_GT(st.cow_copies, 0);
  }
  std::printf("%s: hit tokens %lld, %s\n", GetParam().name, static_cast<long long>(hits_),
              formatStats(st).c_str());
  for (const auto& [id, s] : model_) ASSERT_TRUE(m_->free(id).ok());
  EXPECT_EQ(m_->stats().used_blocks, 0);
  EXPECT_EQ(m_->stats().host_used_blocks, 0);
}

INSTANTIATE_TEST_SUITE_P(Configs, ModelTest,
                         ::testing::Values(Config{"cache_host", 24, 4, 16, true, 64, 1},
                                           Config{"cache_host_seed2", 24, 4, 16, true, 64, 2},
                                           Config{"cache_no_host", 24, 4, 0, true, 64, 3},
                                           Config{"collisions", 24, 4, 16, true, 3, 4},
                                           Config{"collisions_block2", 32, 2, 0, true, 2, 8},
                                           Config{"no_cache", 24, 4, 16, false, 64, 5},
                                           Config{"block1", 40, 1, 20, true, 64, 6},
                                           Config{"big_host", 16, 2, 64, true, 64, 7}),
                         [](const ::testing::TestParamInfo<Config>& i) {
                           return std::string(i.param.name);
                         });

}  // namespace
}  // namespace gangway::kv
