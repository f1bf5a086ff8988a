// Paged decode attention on the device: the launch plan (partition size, head tiles, workspace)
// and the public functions of kv_cache_cuda.h. The kernels are in attention_kernels.cuh.
#include <algorithm>
#include <cstdint>

#include <absl/strings/str_cat.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gangway/kernels/kv_cache_cuda.h"

#include "attention_kernels.cuh"
#include "cuda_check.h"
#include "kv_cache_args.h"
#include "kv_elem.h"

namespace gangway::kernels {
namespace {

using attention::attentionPartitionKernel;
using attention::attentionReduceKernel;
using attention::AttnParams;
using attention::kMaxHeads;
using attention::kMaxPartition;
using attention::kReduceThreads;
using attention::kThreads;

int tokenGroupFor(int head_dim) {
  const int chunks = head_dim / 8;
  return chunks <= 4 ? 4 : chunks <= 8 ? 8 : chunks <= 16 ? 16 : 32;
}

int headsPerBlockFor(int group) {
  int h = 1;
  while (h < group && h < kMaxHeads) h *= 2;
  return h;
}

struct Plan {
  int heads = 1;  // kHeads
  int tiles = 1;  // head tiles per kv head
  int partition = kMaxPartition;
  int num_partitions = 1;
  std::size_t workspace_bytes = 0;
};

absl::StatusOr<Plan> plan(const PagedAttentionArgs& a, const char* fn) {
  if (absl::Status s = detail::checkAttentionArgs(a, fn); !s.ok()) return s;
  if (a.cache.head_dim % 8 != 0 || a.cache.head_dim > 256) {
    return absl::InvalidArgumentError(absl::StrCat(
        fn, ": head_dim must be a multiple of 8 up to 256 on the device, got ", a.cache.head_dim));
  }
  if (a.num_seqs > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(fn, ": at most 65535 sequences per call, got ", a.num_seqs));
  }
  Plan pl;
  const int group = a.num_heads / a.cache.num_kv_heads;
  pl.heads = headsPerBlockFor(group);
  pl.tiles = (group + pl.heads - 1) / pl.heads;
  const int64_t max_len = detail::maxSeqLen(a);
  // Halve the partition while the grid would not give every SM two blocks.
  const int64_t per_partition = static_cast<int64_t>(a.cache.num_kv_heads) * pl.tiles * a.num_seqs;
  const int64_t enough = 2 * static_cast<int64_t>(detail::smCount());
  while (pl.partition > 128 &&
         per_partition * ((max_len + pl.partition - 1) / pl.partition) < enough) {
    pl.partition /= 2;
  }
  const int64_t parts = std::max<int64_t>(1, (max_len + pl.partition - 1) / pl.partition);
  if (parts > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(fn, ": max_seq_len ", max_len, " needs more than 65535 partitions"));
  }
  pl.num_partitions = static_cast<int>(parts);
  if (parts > 1) {
    const auto rows = static_cast<std::size_t>(a.num_seqs) * a.num_heads * parts;
    pl.workspace_bytes = rows * (2 + static_cast<std::size_t>(a.cache.head_dim)) * sizeof(float);
  }
  return pl;
}

template <KvDataType kCache, int kT, int kHeads>
void launchPartitions(const AttnParams& p, dim3 grid, cudaStream_t s) {
  attentionPartitionKernel<kCache, kT, kHeads><<<grid, kThreads, 0, s>>>(p);
}

template <KvDataType kCache, int kT>
void launchByHeads(int heads, const AttnParams& p, dim3 grid, cudaStream_t s) {
  switch (heads) {
    case 1:
      return launchPartitions<kCache, kT, 1>(p, grid, s);
    case 2:
      return launchPartitions<kCache, kT, 2>(p, grid, s);
    case 4:
      return launchPartitions<kCache, kT, 4>(p, grid, s);
    default:
      return launchPartitions<kCache, kT, 8>(p, grid, s);
  }
}

template <KvDataType kCache>
void launchByGroup(int token_group, int heads, const AttnParams& p, dim3 grid, cudaStream_t s) {
  switch (token_group) {
    case 4:
      return launchByHeads<kCache, 4>(heads, p, grid, s);
    case 8:
      return launchByHeads<kCache, 8>(heads, p, grid, s);
    case 16:
      return launchByHeads<kCache, 16>(heads, p, grid, s);
    default:
      return launchByHeads<kCache, 32>(heads, p, grid, s);
  }
}

}  // namespace

absl::StatusOr<std::size_t> pagedDecodeAttentionWorkspaceBytes(const PagedAttentionArgs& args) {
  absl::StatusOr<Plan> pl = plan(args, "pagedDecodeAttentionWorkspaceBytes");
  if (!pl.ok()) return pl.status();
  return pl->workspace_bytes;
}

absl::Status pagedDecodeAttentionDevice(const PagedAttentionArgs& args, void* workspace,
                                        std::size_t workspace_bytes, void* stream) {
  static constexpr const char* kFn = "pagedDecodeAttentionDevice";
  absl::StatusOr<Plan> planned = plan(args, kFn);
  if (!planned.ok()) return planned.status();
  const Plan& pl = *planned;
  if ((reinterpret_cast<std::uintptr_t>(args.key_cache) |
       reinterpret_cast<std::uintptr_t>(args.value_cache)) %
          16 !=
      0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kFn, ": key_cache and value_cache must be 16-byte aligned"));
  }
  if (workspace != nullptr && workspace_bytes < pl.workspace_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(kFn, ": workspace of ", workspace_bytes,
                                                   " bytes, ", pl.workspace_bytes, " needed"));
  }
  if (args.num_seqs == 0) return absl::OkStatus();
  auto s = static_cast<cudaStream_t>(stream);
  const bool fp8 = args.cache.cache_type == KvDataType::kFp8E4M3;
  AttnParams p{};
  p.out = args.out;
  p.query = args.query;
  p.query_stride = detail::strideOr(args.query_stride,
                                    static_cast<int64_t>(args.num_heads) * args.cache.head_dim);
  p.io = args.io_type;
  p.key_cache = args.key_cache;
  p.value_cache = args.value_cache;
  p.num_heads = args.num_heads;
  p.num_kv_heads = args.cache.num_kv_heads;
  p.head_dim = args.cache.head_dim;
  p.block_size = args.cache.block_size;
  p.max_blocks_per_seq = args.max_blocks_per_seq;
  p.block_tables = args.block_tables;
  p.seq_lens = args.seq_lens;
  p.max_seq_len = static_cast<int32_t>(
      std::min<int64_t>(detail::maxSeqLen(args), static_cast<int64_t>(0x7fffffff)));
  p.group = args.num_heads / args.cache.num_kv_heads;
  p.head_tiles = pl.tiles;
  p.partition = pl.partition;
  p.num_partitions = pl.num_partitions;
  p.q_mul = args.scale * (fp8 ? args.k_scale : 1.0f);
  p.v_mul = fp8 ? args.v_scale : 1.0f;

  void* allocated = nullptr;
  if (pl.workspace_bytes > 0) {
    if (workspace == nullptr) {
      GW_KV_CUDA_RETURN(cudaMallocAsync(&allocated, pl.workspace_bytes, s),
                        "attention workspace cudaMallocAsync");
      workspace = allocated;
    }
    const std::size_t rows = pl.workspace_bytes / sizeof(float) / (2 + args.cache.head_dim);
    p.ws_max = static_cast<float*>(workspace);
    p.ws_sum = p.ws_max + rows;
    p.ws_out = p.ws_sum + rows;
  }
  const dim3 grid(static_cast<unsigned>(args.cache.num_kv_heads * pl.tiles),
                  static_cast<unsigned>(args.num_seqs), static_cast<unsigned>(pl.num_partitions));
  const int token_group = tokenGroupFor(args.cache.head_dim);
  detail::dispatchKvType(args.cache.cache_type, [&](auto cache) {
    launchByGroup<decltype(cache)::value>(token_group, pl.heads, p, grid, s);
  });
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess && pl.num_partitions > 1) {
    attentionReduceKernel<<<dim3(static_cast<unsigned>(args.num_heads),
                                 static_cast<unsigned>(args.num_seqs)),
                            kReduceThreads, 0, s>>>(p);
    e = cudaGetLastError();
  }
  if (allocated != nullptr) {
    const cudaError_t f = cudaFreeAsync(allocated, s);
    if (e == cudaSuccess) e = f;
  }
  GW_KV_CUDA_RETURN(e, "paged attention kernel launch");
  return absl::OkStatus();
}

}  // namespace gangway::kernels
