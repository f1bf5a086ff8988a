// BlockPool: one tier's arena of blocks (device or host). Blocks are integer ids; per block the
// pool keeps a reference count and the prefix-cache node whose content it holds (if any). A block
// with no references is free and sits in one of two intrusive lists that together form the free
// queue: empty blocks first (reused first), then cached blocks in least-recently-used order (their
// content is kept until the block is needed). Every operation is O(1). Not thread-safe: one
// scheduler thread owns a manager and its pools.
#pragma once

#include <cstdint>
#include <vector>

#include "gangway/kv/types.h"

namespace gangway::kv {

using NodeId = int32_t;
inline constexpr NodeId kNoNode = -1;

class BlockPool {
 public:
  explicit BlockPool(int32_t num_blocks);

  int32_t numBlocks() const { return static_cast<int32_t>(ref_.size()); }
  int32_t numFree() const { return num_empty_ + num_cached_; }
  int32_t numUsed() const { return numBlocks() - numFree(); }
  int32_t numCached() const { return num_cached_; }

  int32_t refCount(BlockId b) const { return ref_[b]; }
  NodeId node(BlockId b) const { return node_[b]; }
  void setNode(BlockId b, NodeId n) { node_[b] = n; }

  // The block allocate() would return next (kNoBlock when none is free), without taking it.
  BlockId peekFree() const;
  // Takes the next free block (empty ones first, else the least recently used cached one) and
  // gives it one reference. The caller checks numFree() > 0 first, and detaches the block's node
  // (node() is left as it was so that the caller can see what is being evicted).
  BlockId allocate();
  // The least recently used cached free block, or kNoBlock.
  BlockId oldestCached() const;
  // Adds a reference; a free block (a cache hit) leaves the free lists.
  void ref(BlockId b);
  // Drops a reference; at zero the block joins the free queue: at the back of the cached LRU if it
  // holds a node (most recently used), at the front of the empty list if not. True at zero.
  bool unref(BlockId b);
  // A free cached block whose node was detached becomes an empty free block.
  void makeEmpty(BlockId b);

 private:
  enum : int32_t { kEmptyList = 0, kCachedList = 1 };
  void pushBack(int32_t list, BlockId b);
  void pushFront(int32_t list, BlockId b);
  void unlink(BlockId b);
  int32_t sentinel(int32_t list) const { return numBlocks() + list; }

  std::vector<int32_t> ref_;
  std::vector<NodeId> node_;
  // Doubly linked lists over block ids, with two sentinels at numBlocks() and numBlocks() + 1.
  std::vector<int32_t> prev_;
  std::vector<int32_t> next_;
  std::vector<int8_t> list_;  // which list a free block is in
  int32_t num_empty_ = 0;
  int32_t num_cached_ = 0;
};

}  // namespace gangway::kv
