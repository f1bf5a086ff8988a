// reshapeAndCacheDevice, copyBlocksDevice, swapBlocksDevice: the host checks of kv_cache_host.cc,
// then kernels (or copies) on the caller's stream.
#include <algorithm>
#include <cstdint>

#include <absl/strings/str_cat.h>
#include <cuda_runtime.h>

#include "gangway/kernels/kv_cache_cuda.h"

#include "cuda_check.h"
#include "kv_cache_args.h"
#include "kv_elem.h"

namespace gangway::kernels {
namespace {

// One thread block per token; its threads walk the token's row. Slots outside the cache are
// skipped (the host cannot see them; see kv_cache_cuda.h).
template <KvDataType kIn, KvDataType kCache>
__global__ void reshapeAndCacheKernel(const detail::KvStorage<kIn>* __restrict__ key,
                                      const detail::KvStorage<kIn>* __restrict__ value,
                                      int64_t key_stride, int64_t value_stride,
                                      const int64_t* __restrict__ slots,
                                      detail::KvStorage<kCache>* __restrict__ key_cache,
                                      detail::KvStorage<kCache>* __restrict__ value_cache,
                                      int64_t row, int64_t num_slots, float k_scale,
                                      float v_scale) {
  const int64_t t = blockIdx.x;
  const int64_t slot = slots[t];
  if (slot < 0 || slot >= num_slots) return;
  const auto* k = key + t * key_stride;
  const auto* v = value + t * value_stride;
  auto* kd = key_cache + slot * row;
  auto* vd = value_cache + slot * row;
  for (int64_t i = threadIdx.x; i < row; i += blockDim.x) {
    kd[i] = detail::toCache<kIn, kCache>(k[i], k_scale);
    vd[i] = detail::toCache<kIn, kCache>(v[i], v_scale);
  }
}

// copyBlocks' arguments travel by value as the kernel's parameter (about 10 KB: kernel parameters
// up to 32 KB need CUDA 12.1 and sm_70 or newer), so the call needs no device allocation.
constexpr int kCopyMaxCaches = 256;
constexpr int kCopyMaxPairs = 1024;
struct CopyBatch {
  unsigned char* caches[kCopyMaxCaches];
  BlockPair pairs[kCopyMaxPairs];
};

// Block (pair, cache): one block's bytes, 16 at a time when everything is 16-byte aligned.
__global__ void copyBlocksKernel(const CopyBatch batch, uint64_t block_bytes, bool vector) {
  const BlockPair p = batch.pairs[blockIdx.x];
  unsigned char* base = batch.caches[blockIdx.y];
  unsigned char* dst = base + static_cast<uint64_t>(p.dst) * block_bytes;
  const unsigned char* src = base + static_cast<uint64_t>(p.src) * block_bytes;
  if (vector) {
    auto* d = reinterpret_cast<uint4*>(dst);
    const auto* s = reinterpret_cast<const uint4*>(src);
    for (uint64_t i = threadIdx.x; i < block_bytes / 16; i += blockDim.x) d[i] = s[i];
  } else {
    for (uint64_t i = threadIdx.x; i < block_bytes; i += blockDim.x) dst[i] = src[i];
  }
}

}  // namespace

absl::Status reshapeAndCacheDevice(const ReshapeAndCacheArgs& args, void* stream) {
  if (absl::Status s = detail::checkReshapeArgs(args, "reshapeAndCacheDevice"); !s.ok()) return s;
  if (args.num_tokens == 0) return absl::OkStatus();
  if (args.num_tokens > 0x7fffffff) {
    return absl::InvalidArgumentError(
        absl::StrCat("reshapeAndCacheDevice: num_tokens ", args.num_tokens, " above 2^31 - 1"));
  }
  const int64_t row = kvTokenElements(args.cache);
  const int64_t ks = detail::strideOr(args.key_stride, row);
  const int64_t vs = detail::strideOr(args.value_stride, row);
  const int threads = static_cast<int>(std::min<int64_t>(512, (row + 31) / 32 * 32));
  auto s = static_cast<cudaStream_t>(stream);
  detail::dispatchKvTypes(args.input_type, args.cache.cache_type, [&](auto in, auto cache) {
    constexpr KvDataType kIn = decltype(in)::value;
    constexpr KvDataType kCache = decltype(cache)::value;
    reshapeAndCacheKernel<kIn, kCache><<<static_cast<unsigned>(args.num_tokens), threads, 0, s>>>(
        static_cast<const detail::KvStorage<kIn>*>(args.key),
        static_cast<const detail::KvStorage<kIn>*>(args.value), ks, vs, args.slot_mapping,
        static_cast<detail::KvStorage<kCache>*>(args.key_cache),
        static_cast<detail::KvStorage<kCache>*>(args.value_cache), row, kvCacheSlots(args.cache),
        args.k_scale, args.v_scale);
  });
  GW_KV_CUDA_RETURN(cudaGetLastError(), "reshapeAndCache kernel launch");
  return absl::OkStatus();
}

absl::Status copyBlocksDevice(void* const* caches, int32_t num_caches, const KvCacheShape& shape,
                              const BlockPair* pairs, int32_t num_pairs, void* stream) {
  if (absl::Status s = detail::checkCopyBlocksArgs(caches, num_caches, shape, pairs, num_pairs,
                                                   "copyBlocksDevice");
      !s.ok()) {
    return s;
  }
  if (num_caches == 0 || num_pairs == 0) return absl::OkStatus();
  const uint64_t block_bytes = kvBlockBytes(shape);
  bool vector = block_bytes % 16 == 0;
  for (int32_t c = 0; c < num_caches; ++c) {
    vector = vector && reinterpret_cast<std::uintptr_t>(caches[c]) % 16 == 0;
  }
  auto s = static_cast<cudaStream_t>(stream);
  // Sources and destinations are disjoint (checked), so the chunks may run in any order.
  for (int32_t c0 = 0; c0 < num_caches; c0 += kCopyMaxCaches) {
    const int32_t nc = std::min(kCopyMaxCaches, num_caches - c0);
    for (int32_t p0 = 0; p0 < num_pairs; p0 += kCopyMaxPairs) {
      const int32_t np = std::min(kCopyMaxPairs, num_pairs - p0);
      CopyBatch batch{};
      for (int32_t c = 0; c < nc; ++c)
        batch.caches[c] = static_cast<unsigned char*>(caches[c0 + c]);
      std::copy(pairs + p0, pairs + p0 + np, batch.pairs);
      copyBlocksKernel<<<dim3(static_cast<unsigned>(np), static_cast<unsigned>(nc)), 256, 0, s>>>(
          batch, block_bytes, vector);
      GW_KV_CUDA_RETURN(cudaGetLastError(), "copyBlocks kernel launch");
    }
  }
  return absl::OkStatus();
}

absl::Status swapBlocksDevice(const void* src_cache, const KvCacheShape& src_shape, void* dst_cache,
                              const KvCacheShape& dst_shape, const BlockPair* pairs,
                              int32_t num_pairs, void* stream) {
  if (absl::Status s = detail::checkSwapBlocksArgs(src_cache, src_shape, dst_cache, dst_shape,
                                                   pairs, num_pairs, "swapBlocksDevice");
      !s.ok()) {
    return s;
  }
  const std::size_t block = kvBlockBytes(src_shape);
  const auto* src = static_cast<const unsigned char*>(src_cache);
  auto* dst = static_cast<unsigned char*>(dst_cache);
  auto s = static_cast<cudaStream_t>(stream);
  for (const BlockRun& r : mergeBlockRuns(pairs, num_pairs)) {
    GW_KV_CUDA_RETURN(
        cudaMemcpyAsync(dst + static_cast<std::size_t>(r.dst) * block,
                        src + static_cast<std::size_t>(r.src) * block,
                        static_cast<std::size_t>(r.count) * block, cudaMemcpyDefault, s),
        "swapBlocks cudaMemcpyAsync");
  }
  return absl::OkStatus();
}

}  // namespace gangway::kernels
