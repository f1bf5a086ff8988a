// The block manager and the host KV-cache kernels together, as a server runs them: random
// requests are admitted, decoded, forked, swapped and freed; each step executes the manager's
// copy list with swapBlocksHost / copyBlocksHost (one call per run from splitCopyRuns), writes the
// new tokens' keys and values with reshapeAndCacheHost at the manager's slots, and runs
// pagedDecodeAttentionHost over the manager's block tables. Every sequence's attention output is
// compared with attention computed directly from that sequence's own keys and values, so the
// layout contract between runtime/ and kernels/ (slots, block tables, copy directions) is checked
// end to end, including prefix hits, copy-on-write, offload of evicted blocks and swap.
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "gangway/kernels/kv_cache.h"
#include "gangway/kv/manager.h"

namespace gangway::kv {
namespace {

namespace k = gangway::kernels;

constexpr int32_t kBlockSize = 4;
constexpr int32_t kKvHeads = 2;
constexpr int32_t kHeads = 4;  // grouped-query attention: 2 query heads per kv head
constexpr int32_t kHeadDim = 8;
constexpr int32_t kRow = kKvHeads * kHeadDim;

// A token's key (which = 0) or value (1) row: a function of the whole prefix up to the token, as
// in a real model.
std::vector<float> kvRow(const std::vector<int32_t>& tokens, int32_t position, int which) {
  uint64_t h = 1469598103934665603ULL + static_cast<uint64_t>(which);
  for (int32_t i = 0; i <= position; ++i)
    h = (h ^ static_cast<uint64_t>(tokens[i])) * 1099511628211ULL;
  std::vector<float> row(kRow);
  for (int32_t e = 0; e < kRow; ++e) {
    h = h * 6364136223846793005ULL + 1442695040888963407ULL;
    row[e] = static_cast<float>(static_cast<int64_t>(h >> 40) % 2001 - 1000) / 1000.0f;
  }
  return row;
}

class ServingLoop : public ::testing::Test {
 protected:
  void SetUp() override {
    Options o;
    o.num_blocks = 14;
    o.block_size = kBlockSize;
    o.num_host_blocks = 16;
    o.watermark = 0.0;
    m_ = std::move(KvCacheManager::create(o)).value();
    dev_shape_ = {o.num_blocks, kBlockSize, kKvHeads, kHeadDim, k::KvDataType::kFloat32};
    host_shape_ = dev_shape_;
    host_shape_.num_blocks = o.num_host_blocks;
    for (int which = 0; which < 2; ++which) {
      dev_[which].assign(static_cast<size_t>(k::kvCacheSlots(dev_shape_)) * kRow, NAN);
      host_[which].assign(static_cast<size_t>(k::kvCacheSlots(host_shape_)) * kRow, NAN);
    }
  }

  void runCopies() {
    const std::vector<BlockCopy> copies = m_->takeCopies();
    for (const CopyRun& run : splitCopyRuns(copies)) {
      std::vector<k::BlockPair> pairs;
      for (size_t i = run.begin; i < run.end; ++i) pairs.push_back({copies[i].src, copies[i].dst});
      const auto n = static_cast<int32_t>(pairs.size());
      for (int which = 0; which < 2; ++which) {
        absl::Status st;
        if (run.kind == CopyKind::kDeviceToHost) {
          st = k::swapBlocksHost(dev_[which].data(), dev_shape_, host_[which].data(), host_shape_,
                                 pairs.data(), n);
        } else if (run.kind == CopyKind::kHostToDevice) {
          st = k::swapBlocksHost(host_[which].data(), host_shape_, dev_[which].data(), dev_shape_,
                                 pairs.data(), n);
        } else {
          void* caches[1] = {dev_[which].data()};
          st = k::copyBlocksHost(caches, 1, dev_shape_, pairs.data(), n);
        }
        ASSERT_TRUE(st.ok()) << st;
      }
    }
  }

  // The forward pass's cache write for tokens [first, n) of a sequence.
  void writeTokens(SeqId id, int32_t first) {
    const std::vector<int32_t>& t = tokens_.at(id);
    const auto n = static_cast<int32_t>(t.size());
    if (first >= n) return;
    std::vector<int64_t> slots(n - first);
    ASSERT_TRUE(m_->slotMapping(id, first, n - first, slots).ok());
    std::vector<float> keys;
    std::vector<float> values;
    for (int32_t p = first; p < n; ++p) {
      const auto kr = kvRow(t, p, 0);
      const auto vr = kvRow(t, p, 1);
      keys.insert(keys.end(), kr.begin(), kr.end());
      values.insert(values.end(), vr.begin(), vr.end());
    }
    k::ReshapeAndCacheArgs a;
    a.key = keys.data();
    a.value = values.data();
    a.num_tokens = n - first;
    a.input_type = k::KvDataType::kFloat32;
    a.slot_mapping = slots.data();
    a.key_cache = dev_[0].data();
    a.value_cache = dev_[1].data();
    a.cache = dev_shape_;
    ASSERT_TRUE(k::reshapeAndCacheHost(a).ok());
  }

  // Decode attention for every running sequence through the manager's block tables, against the
  // same attention over each sequence's own rows.
  void checkAttention() {
    std::vector<SeqId> running;
    for (const auto& [id, t] : tokens_) {
      if (!*m_->isSwapped(id)) running.push_back(id);
    }
    if (running.empty()) return;
    const int32_t max_blocks = dev_shape_.num_blocks;
    const auto ns = static_cast<int32_t>(running.size());
    std::vector<int32_t> tables(static_cast<size_t>(ns) * max_blocks, 0);
    std::vector<int32_t> lens(ns);
    std::vector<float> query(static_cast<size_t>(ns) * kHeads * kHeadDim);
    for (auto& q : query) q = std::uniform_real_distribution<float>(-1, 1)(rng_);
    for (int32_t s = 0; s < ns; ++s) {
      const auto t = *m_->blockTable(running[s]);
      std::copy(t.begin(), t.end(), tables.begin() + static_cast<ptrdiff_t>(s) * max_blocks);
      lens[s] = *m_->numTokens(running[s]);
    }
    std::vector<float> out(query.size());
    k::PagedAttentionArgs a;
    a.out = out.data();
    a.query = query.data();
    a.io_type = k::KvDataType::kFloat32;
    a.num_seqs = ns;
    a.num_heads = kHeads;
    a.key_cache = dev_[0].data();
    a.value_cache = dev_[1].data();
    a.cache = dev_shape_;
    a.block_tables = tables.data();
    a.max_blocks_per_seq = max_blocks;
    a.seq_lens = lens.data();
    a.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
    ASSERT_TRUE(k::pagedDecodeAttentionHost(a).ok());
    for (int32_t s = 0; s < ns; ++s) {
      const std::vector<int32_t>& t = tokens_.at(running[s]);
      for (int32_t h = 0; h < kHeads; ++h) {
        const int32_t kvh = h / (kHeads / kKvHeads);
        const float* q = &query[(static_cast<size_t>(s) * kHeads + h) * kHeadDim];
        std::vector<double> score(t.size());
        double top = -INFINITY;
        for (size_t i = 0; i < t.size(); ++i) {
          const auto kr = kvRow(t, static_cast<int32_t>(i), 0);
          double dot = 0;
          for (int32_t d = 0; d < kHeadDim; ++d) dot += double{q[d]} * kr[kvh * kHeadDim + d];
          score[i] = dot * a.scale;
          top = std::max(top, score[i]);
        }
        double sum = 0;
        for (double& x : score) sum += (x = std::exp(x - top));
        for (int32_t d = 0; d < kHeadDim; ++d) {
          double want = 0;
          for (size_t i = 0; i < t.size(); ++i) {
            want += score[i] / sum * kvRow(t, static_cast<int32_t>(i), 1)[kvh * kHeadDim + d];
          }
          const float got = out[(static_cast<size_t>(s) * kHeads + h) * kHeadDim + d];
          ASSERT_NEAR(got, want, 1e-4)
              << "sequence " << running[s] << " head " << h << " dim " << d << " at step " << step_;
        }
      }
    }
  }

  std::vector<int32_t> prompt() {
    std::vector<int32_t> p(shared_.begin(), shared_.begin() + rng_() % (shared_.size() + 1));
    const size_t extra = 1 + rng_() % 9;
    for (size_t i = 0; i < extra; ++i) p.push_back(static_cast<int32_t>(rng_() % 50));
    return p;
  }

  SeqId any() {
    auto it = tokens_.begin();
    std::advance(it, rng_() % tokens_.size());
    return it->first;
  }

  std::unique_ptr<KvCacheManager> m_;
  k::KvCacheShape dev_shape_;
  k::KvCacheShape host_shape_;
  std::vector<float> dev_[2];
  std::vector<float> host_[2];
  std::map<SeqId, std::vector<int32_t>> tokens_;
  std::mt19937_64 rng_{2026};
  std::vector<int32_t> shared_ = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  int step_ = 0;
};

TEST_F(ServingLoop, AttentionThroughTheManagersTablesMatchesEachSequencesOwnKeysAndValues) {
  SeqId next = 1;
  int64_t hits = 0;
  for (step_ = 0; step_ < 1500; ++step_) {
    const uint64_t op = rng_() % 100;
    if (op < 25 || tokens_.empty()) {
      const std::vector<int32_t> p = prompt();
      auto r = m_->allocate(next, p);
      if (r.ok()) {
        hits += r->cached_tokens;
        tokens_[next] = p;
        ASSERT_NO_FATAL_FAILURE(runCopies());
        ASSERT_NO_FATAL_FAILURE(writeTokens(next, r->cached_tokens));
        ++next;
      }
    } else if (op < 70) {
      const SeqId id = any();
      const int32_t tok = static_cast<int32_t>(rng_() % 50);
      if (m_->appendToken(id, tok).ok()) {
        tokens_[id].push_back(tok);
        ASSERT_NO_FATAL_FAILURE(runCopies());
        ASSERT_NO_FATAL_FAILURE(writeTokens(id, static_cast<int32_t>(tokens_[id].size()) - 1));
      }
    } else if (op < 78) {
      const SeqId id = any();
      if (m_->fork(id, next).ok()) tokens_[next++] = tokens_[id];
    } else if (op < 90) {
      const SeqId id = any();
      if (!*m_->isSwapped(id)) {
        ASSERT_TRUE(m_->setComputed(id, static_cast<int32_t>(tokens_[id].size())).ok());
      }
      ASSERT_TRUE(m_->free(id).ok());
      tokens_.erase(id);
    } else if (op < 95) {
      if (m_->swapOut(any()).ok()) {
        ASSERT_NO_FATAL_FAILURE(runCopies());
      }
    } else {
      if (m_->swapIn(any()).ok()) {
        ASSERT_NO_FATAL_FAILURE(runCopies());
      }
    }
    ASSERT_NO_FATAL_FAILURE(checkAttention());
  }
  const Stats st = m_->stats();
  EXPECT_GT(hits, 0);
  EXPECT_GT(st.cow_copies, 0);
  EXPECT_GT(st.offloaded_blocks, 0);
  EXPECT_GT(st.swapped_in_blocks, 0);
  EXPECT_GT(st.host_hit_blocks, 0);
}

}  // namespace
}  // namespace gangway::kv
