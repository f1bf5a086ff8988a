// PrefixIndex: the prefix cache's content nodes. A node is one full block's content:
//   (parent node's content id, the block's token ids, the extra keys that fall in the block)
// and records where copies of it live (a device block, a host block, or both). Its key is a
// 64-bit XXH3 hash chained from the parent's hash; the hash only finds candidates, and every hit
// is checked against the stored parent id, tokens and extra keys, so a collision costs a miss and
// never hands one sequence another's blocks. Content ids are never reused: a node whose parent
// content was dropped can never match again, so eviction cannot make a stale block reachable.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "gangway/kv/block_pool.h"
#include "gangway/kv/types.h"

namespace gangway::kv {

// The hash chain's value before the first block, and the content id of "no parent".
inline constexpr uint64_t kRootHash = 0x9e3779b97f4a7c15ULL;
inline constexpr uint64_t kRootContent = 0;

struct PrefixNode {
  uint64_t hash = 0;
  uint64_t content = 0;         // this content's id, unique for the index's lifetime
  uint64_t parent_content = 0;  // kRootContent for a prompt's first block
  BlockId device = kNoBlock;
  BlockId host = kNoBlock;
  int32_t num_extra = 0;  // extra keys stored for this node (rare: kept in a side table)
};

class PrefixIndex {
 public:
  // Room for `capacity` nodes (every node has at least one copy, so the two tiers' block counts).
  PrefixIndex(int32_t block_size, int32_t capacity, int32_t hash_bits);

  int32_t blockSize() const { return block_size_; }
  int32_t size() const { return static_cast<int32_t>(index_.size()); }

  // The chained key of a block: XXH3-64 of its tokens seeded with the parent's hash, then of its
  // extra keys' (offset-in-block, value) pairs when there are any; masked to hash_bits.
  uint64_t blockHash(uint64_t parent_hash, std::span<const int32_t> tokens,
                     std::span<const ExtraKey> extras) const;

  // The node with exactly this content, or kNoNode. `extras` carry positions relative to the block.
  NodeId find(uint64_t hash, uint64_t parent_content, std::span<const int32_t> tokens,
              std::span<const ExtraKey> extras) const;
  // Adds a node for this content and returns it. If the content is already there, returns that
  // node and sets *existed. If another content holds the hash (a collision), returns kNoNode: the
  // block stays out of the cache.
  NodeId insert(uint64_t hash, uint64_t parent_content, std::span<const int32_t> tokens,
                std::span<const ExtraKey> extras, bool* existed);
  // Removes a node that has no copies left.
  void erase(NodeId n);

  PrefixNode& node(NodeId n) { return nodes_[n]; }
  const PrefixNode& node(NodeId n) const { return nodes_[n]; }

 private:
  bool matches(NodeId n, uint64_t parent_content, std::span<const int32_t> tokens,
               std::span<const ExtraKey> extras) const;

  int32_t block_size_;
  uint64_t hash_mask_;
  uint64_t next_content_ = 1;
  std::vector<PrefixNode> nodes_;
  std::vector<int32_t> tokens_;  // nodes_.size() * block_size_: each node's tokens
  std::vector<NodeId> free_nodes_;
  absl::flat_hash_map<uint64_t, NodeId> index_;
  absl::flat_hash_map<NodeId, std::vector<ExtraKey>> extras_;
};

}  // namespace gangway::kv
