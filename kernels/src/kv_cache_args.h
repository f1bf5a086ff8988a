// Argument checks shared by the host and device KV-cache kernels. None of them reads a buffer the
// arguments point to (those may be device memory), except the BlockPair arrays, which are host
// memory for both.
#pragma once

#include <cstdint>

#include <absl/status/status.h>

#include "gangway/kernels/kv_cache.h"

namespace gangway::kernels::detail {

// Pointers, dimensions, types, strides and scales; `fn` names the caller in messages.
absl::Status checkReshapeArgs(const ReshapeAndCacheArgs& args, const char* fn);
absl::Status checkAttentionArgs(const PagedAttentionArgs& args, const char* fn);
// Block ids in [0, num_blocks), no destination twice, no block both a source and a destination.
absl::Status checkCopyBlocksArgs(void* const* caches, int32_t num_caches, const KvCacheShape& shape,
                                 const BlockPair* pairs, int32_t num_pairs, const char* fn);
// Same block geometry, pointers, block ids in range of their own cache.
absl::Status checkSwapBlocksArgs(const void* src_cache, const KvCacheShape& src_shape,
                                 const void* dst_cache, const KvCacheShape& dst_shape,
                                 const BlockPair* pairs, int32_t num_pairs, const char* fn);

// The stride in elements between consecutive tokens (or sequences): `stride`, or `dense` for 0.
inline int64_t strideOr(int64_t stride, int64_t dense) { return stride == 0 ? dense : stride; }
// max_seq_len, or the block table's capacity for 0.
inline int64_t maxSeqLen(const PagedAttentionArgs& args) {
  const int64_t capacity = static_cast<int64_t>(args.max_blocks_per_seq) * args.cache.block_size;
  return args.max_seq_len > 0 && args.max_seq_len < capacity ? args.max_seq_len : capacity;
}

}  // namespace gangway::kernels::detail
