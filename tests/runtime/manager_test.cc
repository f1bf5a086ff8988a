// KvCacheManager and BlockPool: every operation and every error, one behaviour per test.
#include "gangway/kv/manager.h"

#include <numeric>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gangway::kv {
namespace {

using ::testing::HasSubstr;

std::vector<int32_t> iota(int32_t n, int32_t start = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

std::unique_ptr<KvCacheManager> make(int32_t blocks, int32_t block_size = 4, int32_t host = 0,
                                     double watermark = 0.0) {
  Options o;
  o.num_blocks = blocks;
  o.block_size = block_size;
  o.num_host_blocks = host;
  o.watermark = watermark;
  auto m = KvCacheManager::create(o);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(m).value();
}

std::vector<BlockId> table(const KvCacheManager& m, SeqId s) {
  auto t = m.blockTable(s);
  EXPECT_TRUE(t.ok()) << t.status();
  return {t->begin(), t->end()};
}

TEST(BlockPool, EmptyBlocksFirstThenLeastRecentlyUsedCached) {
  BlockPool p(4);
  EXPECT_EQ(p.numFree(), 4);
  const BlockId a = p.allocate();
  const BlockId b = p.allocate();
  const BlockId c = p.allocate();
  EXPECT_EQ(p.numUsed(), 3);
  p.setNode(a, 7);
  p.setNode(b, 8);
  p.unref(a);  // cached, older
  p.unref(b);  // cached, newer
  p.unref(c);  // empty: reused first
  EXPECT_EQ(p.numCached(), 2);
  EXPECT_EQ(p.allocate(), c);
  const BlockId d = p.allocate();  // the never-used fourth block
  EXPECT_NE(d, a);
  EXPECT_EQ(p.oldestCached(), a);
  EXPECT_EQ(p.allocate(), a);  // node left for the caller to detach
  EXPECT_EQ(p.node(a), 7);
  p.ref(b);  // a cache hit leaves the free lists
  EXPECT_EQ(p.numFree(), 0);
  EXPECT_EQ(p.peekFree(), kNoBlock);
  EXPECT_FALSE(p.unref(b) && false);
  EXPECT_EQ(p.numCached(), 1);
  p.makeEmpty(b);
  EXPECT_EQ(p.numCached(), 0);
  EXPECT_EQ(p.node(b), kNoNode);
}

TEST(Options, RejectsBadValuesNamingTheField) {
  Options o;
  o.num_blocks = 0;
  EXPECT_THAT(KvCacheManager::create(o).status().message(), HasSubstr("num_blocks is 0"));
  o.num_blocks = 8;
  for (int32_t bs : {0, -4, 3, 24, 1024}) {
    o.block_size = bs;
    const auto s = KvCacheManager::create(o).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("does not divide 512"));
  }
  o.block_size = 1;
  EXPECT_TRUE(KvCacheManager::create(o).ok());
  o.block_size = 512;
  EXPECT_TRUE(KvCacheManager::create(o).ok());
  o.num_host_blocks = -1;
  EXPECT_THAT(KvCacheManager::create(o).status().message(), HasSubstr("num_host_blocks"));
  o.num_host_blocks = 0;
  o.watermark = 1.5;
  EXPECT_THAT(KvCacheManager::create(o).status().message(), HasSubstr("watermark"));
  o.watermark = 0.01;
  o.hash_bits = 65;
  EXPECT_THAT(KvCacheManager::create(o).status().message(), HasSubstr("hash_bits"));
}

TEST(Allocate, TakesCeilTokensOverBlockSizeAndMapsSlots) {
  auto m = make(8);
  auto r = m->allocate(1, iota(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->cached_tokens, 0);
  EXPECT_EQ(r->new_blocks, 3);
  const auto t = table(*m, 1);
  ASSERT_EQ(t.size(), 3u);
  std::vector<int64_t> slots(10);
  ASSERT_TRUE(m->slotMapping(1, 0, 10, slots).ok());
  for (int p = 0; p < 10; ++p) EXPECT_EQ(slots[p], int64_t{t[p / 4]} * 4 + p % 4);
  EXPECT_EQ(m->stats().used_blocks, 3);
  EXPECT_EQ(*m->numTokens(1), 10);
  EXPECT_EQ(*m->numComputed(1), 0);
}

TEST(Allocate, ErrorsChangeNothing) {
  auto m = make(4);
  ASSERT_TRUE(m->allocate(1, iota(8)).ok());
  const Stats before = m->stats();
  EXPECT_EQ(m->allocate(1, iota(4)).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(m->allocate(2, {}).status().code(), absl::StatusCode::kInvalidArgument);
  // Larger than the whole pool: never fits (InvalidArgument), unlike a full pool
  // (ResourceExhausted).
  const auto never = m->allocate(2, iota(17));
  EXPECT_EQ(never.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(never.status().message(), HasSubstr("needs 5 blocks"));
  const auto full = m->allocate(2, iota(9, 100));
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("needs 3 free blocks; 2 of 4 are free"));
  const std::vector<ExtraKey> bad = {{9, 1}};
  EXPECT_EQ(m->allocate(2, iota(4), bad).status().code(), absl::StatusCode::kInvalidArgument);
  const Stats after = m->stats();
  EXPECT_EQ(after.used_blocks, before.used_blocks);
  EXPECT_EQ(after.allocated_blocks, before.allocated_blocks);
  EXPECT_FALSE(m->contains(2));
  EXPECT_EQ(m->pendingCopies(), 0u);
}

TEST(Append, TakesABlockWhenTheLastFills) {
  auto m = make(8);
  ASSERT_TRUE(m->allocate(1, iota(3)).ok());
  EXPECT_EQ(table(*m, 1).size(), 1u);
  ASSERT_TRUE(m->appendToken(1, 3).ok());
  EXPECT_EQ(table(*m, 1).size(), 1u);
  ASSERT_TRUE(m->appendToken(1, 4).ok());
  EXPECT_EQ(table(*m, 1).size(), 2u);
  ASSERT_TRUE(m->append(1, iota(7, 5)).ok());
  EXPECT_EQ(*m->numTokens(1), 12);
  EXPECT_EQ(table(*m, 1).size(), 3u);
  EXPECT_EQ(*m->numComputed(1), 5);  // append marks what came before its tokens computed
  EXPECT_TRUE(m->append(1, {}).ok());
}

TEST(Append, ErrorsChangeNothing) {
  auto m = make(3);
  ASSERT_TRUE(m->allocate(1, iota(4)).ok());
  ASSERT_TRUE(m->allocate(2, iota(8, 50)).ok());
  EXPECT_FALSE(m->canAppend(1, 1));
  const auto full = m->appendToken(1, 9);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(*m->numTokens(1), 4);
  EXPECT_EQ(*m->numComputed(1), 0);  // nothing marked computed either
  EXPECT_EQ(m->append(1, iota(9)).code(), absl::StatusCode::kInvalidArgument);  // > pool
  EXPECT_EQ(m->appendToken(99, 1).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(m->free(2).ok());
  EXPECT_EQ(m->appendToken(2, 1).code(), absl::StatusCode::kNotFound);  // appending to a freed one
  EXPECT_TRUE(m->canAppend(1, 1));
}

TEST(Free, TwiceIsNotFoundAndReturnsBlocks) {
  auto m = make(4);
  ASSERT_TRUE(m->allocate(1, iota(7)).ok());
  ASSERT_TRUE(m->free(1).ok());
  EXPECT_EQ(m->stats().used_blocks, 0);
  const auto again = m->free(1);
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(again.message(), HasSubstr("already freed"));
  EXPECT_EQ(m->stats().freed_blocks, 2);
}

TEST(PrefixCache, SharesComputedFullBlocksOnly) {
  auto m = make(16);
  const auto prompt = iota(10);
  ASSERT_TRUE(m->allocate(1, prompt).ok());
  // Not computed yet: another request with the same prompt shares nothing.
  auto r2 = m->allocate(2, prompt);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->cached_tokens, 0);
  ASSERT_TRUE(m->free(2).ok());
  ASSERT_TRUE(m->setComputed(1, 10).ok());
  auto r3 = m->allocate(3, prompt);
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->cached_tokens, 8);  // the two full blocks; the partial third is not cached
  EXPECT_EQ(r3->device_hit_blocks, 2);
  const auto t1 = table(*m, 1);
  const auto t3 = table(*m, 3);
  EXPECT_EQ(t1[0], t3[0]);
  EXPECT_EQ(t1[1], t3[1]);
  EXPECT_NE(t1[2], t3[2]);
  EXPECT_EQ(m->deviceRefCount(t1[0]), 2);
}

TEST(PrefixCache, NeverSharesTheLastTokensBlock) {
  auto m = make(16);
  ASSERT_TRUE(m->allocate(1, iota(8)).ok());
  ASSERT_TRUE(m->setComputed(1, 8).ok());
  auto r = m->allocate(2, iota(8));  // all 8 cached, but the last token must be recomputed
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->cached_tokens, 4);
  EXPECT_NE(table(*m, 1)[1], table(*m, 2)[1]);
  auto r3 = m->allocate(3, iota(9));
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->cached_tokens, 8);
}

TEST(PrefixCache, ExtraKeysSeparateEqualTokens) {
  auto m = make(16);
  const std::vector<ExtraKey> adapter_a = {{0, 111}};
  const std::vector<ExtraKey> adapter_b = {{0, 222}};
  const std::vector<ExtraKey> image = {{5, 0xabc}};
  ASSERT_TRUE(m->allocate(1, iota(9), adapter_a).ok());
  ASSERT_TRUE(m->setComputed(1, 9).ok());
  EXPECT_EQ(m->allocate(2, iota(9), adapter_b)->cached_tokens, 0);
  EXPECT_EQ(m->allocate(3, iota(9))->cached_tokens, 0);
  EXPECT_EQ(m->allocate(4, iota(9), adapter_a)->cached_tokens, 8);
  // A key at position 5 changes block 1's key (and later ones), not block 0's.
  ASSERT_TRUE(m->setComputed(3, 9).ok());
  EXPECT_EQ(m->allocate(5, iota(9), image)->cached_tokens, 4);
}

TEST(PrefixCache, EvictedBlocksAreNeverReturned) {
  auto m = make(4);
  ASSERT_TRUE(m->allocate(1, iota(8)).ok());
  ASSERT_TRUE(m->setComputed(1, 8).ok());
  ASSERT_TRUE(m->free(1).ok());
  EXPECT_EQ(m->stats().cached_blocks, 2);
  // Fill the pool with other content: the cached blocks are evicted (the tail first).
  ASSERT_TRUE(m->allocate(2, iota(12, 100)).ok());
  EXPECT_EQ(m->stats().evicted_blocks, 1);
  ASSERT_TRUE(m->allocate(3, iota(4, 200)).ok());
  EXPECT_EQ(m->stats().evicted_blocks, 2);
  ASSERT_TRUE(m->free(2).ok());
  ASSERT_TRUE(m->free(3).ok());
  EXPECT_EQ(m->canAdmit(iota(9)).cached_tokens, 0);
  EXPECT_EQ(m->allocate(4, iota(9))->cached_tokens, 0);
}

TEST(PrefixCache, FreedTailIsEvictedBeforeItsHead) {
  auto m = make(4);
  ASSERT_TRUE(m->allocate(1, iota(12)).ok());
  ASSERT_TRUE(m->setComputed(1, 12).ok());
  ASSERT_TRUE(m->free(1).ok());
  ASSERT_TRUE(m->allocate(2, iota(4, 500)).ok());  // the empty block
  ASSERT_TRUE(m->allocate(3, iota(4, 600)).ok());  // evicts the prefix's last block
  EXPECT_EQ(m->canAdmit(iota(13)).cached_tokens, 8);
}

TEST(PrefixCache, HashCollisionsNeverShareOtherContent) {
  Options o;
  o.num_blocks = 128;
  o.block_size = 4;
  o.hash_bits = 1;  // two possible hashes: almost every block collides
  auto m = std::move(KvCacheManager::create(o)).value();
  for (SeqId s = 0; s < 16; ++s) {
    auto r = m->allocate(s, iota(9, static_cast<int32_t>(s) * 3));
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(m->setComputed(s, 9).ok());
  }
  int32_t hits = 0;
  for (SeqId s = 0; s < 16; ++s) {
    // Only an exact repeat of a cached prompt may hit, and only its own content.
    auto r = m->allocate(100 + s, iota(9, static_cast<int32_t>(s) * 3));
    ASSERT_TRUE(r.ok());
    hits += r->cached_tokens / 4;
    for (int32_t b = 0; b < r->cached_tokens / 4; ++b) {
      EXPECT_EQ(table(*m, 100 + s)[b], table(*m, s)[b]);
    }
  }
  EXPECT_GT(hits, 0);   // the first block of each prompt, at least, was cached before colliding
  EXPECT_LT(hits, 32);  // and collisions kept some second blocks out of the cache
}

TEST(CanAdmit, CountsHitsAndKeepsTheWatermark) {
  auto m = make(10, 4, 0, 0.2);  // two blocks kept free
  EXPECT_TRUE(m->canAdmit(iota(32)).admissible);
  EXPECT_FALSE(m->canAdmit(iota(33)).admissible);
  EXPECT_FALSE(m->canAdmit(iota(41)).ever_fits);
  EXPECT_FALSE(m->canAdmit({}).admissible);
  ASSERT_TRUE(m->allocate(1, iota(24)).ok());
  ASSERT_TRUE(m->setComputed(1, 24).ok());
  const auto c = m->canAdmit(iota(25));
  EXPECT_EQ(c.cached_tokens, 24);
  EXPECT_EQ(c.blocks_needed, 1);  // hits on blocks in use cost nothing
  EXPECT_TRUE(c.admissible);
  EXPECT_EQ(m->stats().used_blocks, 6);  // a dry run
}

TEST(Fork, SharesBlocksAndCopiesThePartialBlockOnWrite) {
  auto m = make(8);
  ASSERT_TRUE(m->allocate(1, iota(6)).ok());
  ASSERT_TRUE(m->fork(1, 2).ok());
  EXPECT_EQ(table(*m, 1), table(*m, 2));
  EXPECT_EQ(m->deviceRefCount(table(*m, 1)[1]), 2);
  ASSERT_TRUE(m->appendToken(2, 42).ok());
  const auto copies = m->takeCopies();
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].kind, CopyKind::kDeviceToDevice);
  EXPECT_EQ(copies[0].src, table(*m, 1)[1]);
  EXPECT_EQ(copies[0].dst, table(*m, 2)[1]);
  EXPECT_EQ(table(*m, 1)[0], table(*m, 2)[0]);  // full blocks stay shared
  EXPECT_EQ(m->deviceRefCount(table(*m, 1)[1]), 1);
  ASSERT_TRUE(m->appendToken(1, 43).ok());  // now its own: no copy
  EXPECT_TRUE(m->takeCopies().empty());
  EXPECT_EQ(m->stats().cow_copies, 1);
  EXPECT_EQ(m->fork(1, 2).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(m->fork(9, 10).code(), absl::StatusCode::kNotFound);
}

TEST(Fork, AtABlockBoundaryNeedsNoCopy) {
  auto m = make(8);
  ASSERT_TRUE(m->allocate(1, iota(8)).ok());
  ASSERT_TRUE(m->fork(1, 2).ok());
  ASSERT_TRUE(m->appendToken(2, 1).ok());
  EXPECT_TRUE(m->takeCopies().empty());
  ASSERT_TRUE(m->free(1).ok());
  ASSERT_TRUE(m->free(2).ok());
  EXPECT_EQ(m->stats().used_blocks, 0);
}

TEST(CopyOnWrite, OutOfBlocksChangesNothing) {
  auto m = make(2);
  ASSERT_TRUE(m->allocate(1, iota(6)).ok());
  ASSERT_TRUE(m->fork(1, 2).ok());
  EXPECT_FALSE(m->canAppend(2, 1));
  EXPECT_EQ(m->appendToken(2, 1).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(table(*m, 1), table(*m, 2));
  EXPECT_EQ(m->pendingCopies(), 0u);
}

TEST(Swap, OutAndBackWithCopiesInOrder) {
  auto m = make(4, 4, 4);
  ASSERT_TRUE(m->allocate(1, iota(6)).ok());
  const auto dev = table(*m, 1);
  ASSERT_TRUE(m->swapOut(1).ok());
  EXPECT_TRUE(*m->isSwapped(1));
  const auto host = table(*m, 1);
  auto copies = m->takeCopies();
  ASSERT_EQ(copies.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(copies[i].kind, CopyKind::kDeviceToHost);
    EXPECT_EQ(copies[i].src, dev[i]);
    EXPECT_EQ(copies[i].dst, host[i]);
  }
  EXPECT_EQ(m->stats().used_blocks, 0);
  EXPECT_EQ(m->stats().host_used_blocks, 2);
  EXPECT_EQ(m->appendToken(1, 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(m->fork(1, 5).code(), absl::StatusCode::kFailedPrecondition);
  std::vector<int64_t> slot(1);
  EXPECT_EQ(m->slotMapping(1, 0, 1, slot).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(m->swapOut(1).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(m->canSwapIn(1));
  ASSERT_TRUE(m->swapIn(1).ok());
  copies = m->takeCopies();
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_EQ(copies[0].kind, CopyKind::kHostToDevice);
  EXPECT_EQ(copies[0].src, host[0]);
  EXPECT_EQ(table(*m, 1).size(), 2u);
  EXPECT_EQ(m->swapIn(1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(m->stats().preemptions, 1);
}

TEST(Swap, WithoutHostTierOrRoomIsAnError) {
  auto none = make(4);
  ASSERT_TRUE(none->allocate(1, iota(4)).ok());
  EXPECT_EQ(none->swapOut(1).code(), absl::StatusCode::kFailedPrecondition);
  auto small = make(8, 4, 2);
  ASSERT_TRUE(small->allocate(1, iota(12)).ok());
  EXPECT_EQ(small->swapOut(1).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(small->allocate(2, iota(8, 40)).ok());
  ASSERT_TRUE(small->allocate(3, iota(4, 80)).ok());
  ASSERT_TRUE(small->swapOut(2).ok());
  EXPECT_EQ(small->swapOut(3).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(*small->isSwapped(3));
  EXPECT_EQ(small->stats().used_blocks, 4);
}

TEST(Offload, EvictedCachedBlocksComeBackFromTheHost) {
  auto m = make(3, 4, 4);
  ASSERT_TRUE(m->allocate(1, iota(8)).ok());
  ASSERT_TRUE(m->setComputed(1, 8).ok());
  const auto dev = table(*m, 1);
  ASSERT_TRUE(m->free(1).ok());
  ASSERT_TRUE(m->allocate(2, iota(12, 100)).ok());  // evicts both cached blocks to the host
  auto copies = m->takeCopies();
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_EQ(copies[0].src, dev[1]);  // the tail of the freed prefix goes first
  EXPECT_EQ(copies[1].src, dev[0]);
  EXPECT_EQ(copies[0].kind, CopyKind::kDeviceToHost);
  EXPECT_EQ(m->stats().offloaded_blocks, 2);
  EXPECT_EQ(m->stats().host_cached_blocks, 2);
  ASSERT_TRUE(m->free(2).ok());
  auto r = m->allocate(3, iota(9));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->host_hit_blocks, 2);
  EXPECT_EQ(r->cached_tokens, 8);
  copies = m->takeCopies();
  // Offloading the evicted blocks of sequence 2 comes first, then the host-to-device copies.
  ASSERT_GE(copies.size(), 2u);
  EXPECT_EQ(copies.back().kind, CopyKind::kHostToDevice);
}

TEST(EvictCached, DropsOldestFirst) {
  auto m = make(8);
  ASSERT_TRUE(m->allocate(1, iota(9)).ok());
  ASSERT_TRUE(m->setComputed(1, 9).ok());
  ASSERT_TRUE(m->free(1).ok());
  EXPECT_EQ(m->stats().cached_blocks, 2);
  EXPECT_EQ(m->evictCached(1), 1);
  EXPECT_EQ(m->canAdmit(iota(9)).cached_tokens, 4);
  EXPECT_EQ(m->evictCached(5), 1);
  EXPECT_EQ(m->canAdmit(iota(9)).cached_tokens, 0);
  EXPECT_EQ(m->stats().cached_blocks, 0);
  EXPECT_EQ(m->stats().free_blocks, 8);
}

TEST(SlotMapping, RangeAndOutputErrors) {
  auto m = make(8);
  ASSERT_TRUE(m->allocate(1, iota(5)).ok());
  std::vector<int64_t> out(8);
  EXPECT_EQ(m->slotMapping(1, 3, 3, out).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(m->slotMapping(1, -1, 1, out).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(m->slotMapping(1, 0, 5, std::span<int64_t>(out.data(), 2)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m->slotMapping(7, 0, 1, out).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(m->setComputed(1, 6).code(), absl::StatusCode::kOutOfRange);
}

TEST(CopyRuns, SplitsByKind) {
  const std::vector<BlockCopy> c = {{CopyKind::kDeviceToHost, 1, 2},
                                    {CopyKind::kDeviceToHost, 3, 4},
                                    {CopyKind::kHostToDevice, 2, 1},
                                    {CopyKind::kDeviceToHost, 5, 6}};
  const auto runs = splitCopyRuns(c);
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].end, 2u);
  EXPECT_EQ(runs[1].kind, CopyKind::kHostToDevice);
  EXPECT_EQ(runs[2].begin, 3u);
  EXPECT_TRUE(splitCopyRuns({}).empty());
  // Dependencies inside one kind cut the run: a copy from a block written earlier (copy-on-write
  // of a fresh copy), a block written twice, a block written after it was read.
  const std::vector<BlockCopy> d = {
      {CopyKind::kDeviceToDevice, 1, 2}, {CopyKind::kDeviceToDevice, 3, 4},
      {CopyKind::kDeviceToDevice, 2, 5}, {CopyKind::kDeviceToDevice, 6, 5},
      {CopyKind::kDeviceToDevice, 7, 6}, {CopyKind::kDeviceToHost, 7, 6},
      {CopyKind::kDeviceToHost, 6, 7}};
  const auto cut = splitCopyRuns(d);
  ASSERT_EQ(cut.size(), 5u);
  EXPECT_EQ(cut[0].end, 2u);  // 1->2, 3->4
  EXPECT_EQ(cut[1].end, 3u);  // 2->5 reads what 1->2 wrote
  EXPECT_EQ(cut[2].end, 4u);  // 6->5 writes 5 again
  EXPECT_EQ(cut[3].end, 5u);  // 7->6 writes 6, which 6->5 read
  EXPECT_EQ(cut[4].end, 7u);  // device 6 and 7 are not host 6 and 7: one run
}

TEST(Stats, FormatNamesTheGauges) {
  auto m = make(8, 4, 2);
  ASSERT_TRUE(m->allocate(1, iota(5)).ok());
  EXPECT_THAT(formatStats(m->stats()), HasSubstr("used 2/8"));
  EXPECT_THAT(formatStats(m->stats()), HasSubstr("host 0/2"));
}

TEST(PrefixCaching, OffMeansNoSharing) {
  Options o;
  o.num_blocks = 8;
  o.block_size = 4;
  o.enable_prefix_caching = false;
  auto m = std::move(KvCacheManager::create(o)).value();
  ASSERT_TRUE(m->allocate(1, iota(9)).ok());
  ASSERT_TRUE(m->setComputed(1, 9).ok());
  EXPECT_EQ(m->allocate(2, iota(9))->cached_tokens, 0);
  ASSERT_TRUE(m->free(1).ok());
  EXPECT_EQ(m->stats().cached_blocks, 0);
  EXPECT_THAT(table(*m, 2), testing::SizeIs(3));
}

}  // namespace
}  // namespace gangway::kv
