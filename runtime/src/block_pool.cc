#include "gangway/kv/block_pool.h"

#include "gangway/common/check.h"

namespace gangway::kv {

BlockPool::BlockPool(int32_t num_blocks)
    : ref_(num_blocks, 0),
      node_(num_blocks, kNoNode),
      prev_(num_blocks + 2),
      next_(num_blocks + 2),
      list_(num_blocks, kEmptyList) {
  for (int32_t list : {kEmptyList, kCachedList}) {
    prev_[sentinel(list)] = sentinel(list);
    next_[sentinel(list)] = sentinel(list);
  }
  for (BlockId b = 0; b < num_blocks; ++b) pushBack(kEmptyList, b);
  num_empty_ = num_blocks;
}

void BlockPool::pushBack(int32_t list, BlockId b) {
  const int32_t s = sentinel(list);
  const int32_t last = prev_[s];
  next_[last] = b;
  prev_[b] = last;
  next_[b] = s;
  prev_[s] = b;
  list_[b] = static_cast<int8_t>(list);
}

void BlockPool::pushFront(int32_t list, BlockId b) {
  const int32_t s = sentinel(list);
  const int32_t first = next_[s];
  prev_[first] = b;
  next_[b] = first;
  prev_[b] = s;
  next_[s] = b;
  list_[b] = static_cast<int8_t>(list);
}

void BlockPool::unlink(BlockId b) {
  next_[prev_[b]] = next_[b];
  prev_[next_[b]] = prev_[b];
  if (list_[b] == kEmptyList) {
    --num_empty_;
  } else {
    --num_cached_;
  }
}

BlockId BlockPool::peekFree() const {
  const int32_t e = next_[sentinel(kEmptyList)];
  if (e != sentinel(kEmptyList)) return e;
  const int32_t c = next_[sentinel(kCachedList)];
  return c != sentinel(kCachedList) ? c : kNoBlock;
}

BlockId BlockPool::oldestCached() const {
  const int32_t c = next_[sentinel(kCachedList)];
  return c != sentinel(kCachedList) ? c : kNoBlock;
}

BlockId BlockPool::allocate() {
  const BlockId b = peekFree();
  GW_CHECK(b != kNoBlock);
  unlink(b);
  ref_[b] = 1;
  return b;
}

void BlockPool::ref(BlockId b) {
  if (ref_[b]++ == 0) unlink(b);
}

bool BlockPool::unref(BlockId b) {
  GW_CHECK(ref_[b] > 0);
  if (--ref_[b] != 0) return false;
  if (node_[b] != kNoNode) {
    pushBack(kCachedList, b);
    ++num_cached_;
  } else {
    pushFront(kEmptyList, b);
    ++num_empty_;
  }
  return true;
}

void BlockPool::makeEmpty(BlockId b) {
  GW_CHECK(ref_[b] == 0 && list_[b] == kCachedList);
  unlink(b);
  node_[b] = kNoNode;
  pushFront(kEmptyList, b);
  ++num_empty_;
}

}  // namespace gangway::kv
