// LruBlockManager: the baseline bench_kv_trace compares gangway's block manager with. A plain paged
// KV block manager with prefix caching: the same block size, and full computed blocks keyed by the
// same XXH3 chain over (parent hash, tokens) as gangway's PrefixIndex, but a naive policy:
//   - a freed sequence's blocks join the LRU in sequence order, head first, so a cached prefix's
//     first block is evicted before its last; the tail then stays cached but can never be reached
//     again (a lookup stops at the first miss);
//   - canAdmit() keeps no watermark: a request is admitted whenever its blocks fit right now;
//   - the hash alone identifies content (no token comparison), and there is no host tier.
// Empty free blocks are reused before cached ones, as in gangway. Not thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "gangway/kv/types.h"

namespace gangway::kv::bench {

class LruBlockManager {
 public:
  LruBlockManager(int32_t num_blocks, int32_t block_size);

  AdmitCheck canAdmit(std::span<const int32_t> prompt) const;
  // ResourceExhausted when the prompt's new blocks do not fit.
  absl::StatusOr<AllocateResult> allocate(SeqId seq, std::span<const int32_t> prompt);
  bool canAppend(SeqId seq) const;
  // Marks every earlier token computed (as gangway's append() does) and adds the token.
  absl::Status appendToken(SeqId seq, int32_t token);
  absl::Status setComputed(SeqId seq, int32_t num_computed);
  absl::Status free(SeqId seq);

  int32_t numFree() const { return static_cast<int32_t>(empty_.size() + lru_.size()); }
  int64_t evictedBlocks() const { return evicted_blocks_; }

 private:
  struct Sequence {
    std::vector<int32_t> tokens;
    std::vector<BlockId> blocks;
    int32_t num_computed = 0;
    int32_t keyed_blocks = 0;
    uint64_t parent_hash = 0;
  };

  // The cached blocks that hold the prompt's longest prefix (never its last token).
  std::vector<BlockId> lookup(std::span<const int32_t> prompt) const;
  uint64_t blockHash(uint64_t parent, const int32_t* tokens) const;
  BlockId takeFree();
  void ref(BlockId b);
  void unref(BlockId b);
  void keyComputed(Sequence& s);

  int32_t block_size_;
  int32_t num_blocks_;
  std::vector<int32_t> ref_;
  std::vector<uint64_t> hash_;
  std::vector<bool> hashed_;
  std::vector<std::list<BlockId>::iterator> lru_pos_;
  std::vector<BlockId> empty_;  // free blocks holding no prefix, reused first
  std::list<BlockId> lru_;      // free cached blocks, least recently freed first
  absl::flat_hash_map<uint64_t, BlockId> cached_;
  absl::flat_hash_map<SeqId, Sequence> seqs_;
  int64_t evicted_blocks_ = 0;
};

}  // namespace gangway::kv::bench
