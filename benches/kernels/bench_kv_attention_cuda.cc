// Device paged decode attention bandwidth against the device's own copy bandwidth
// (cudaMemcpyAsync device to device of 1 GiB, read and write counted). Attention's bandwidth counts
// the K and V bytes it reads (queries, outputs and the workspace are under 1%). 32 query heads, 8
// kv heads, head_dim 128, blocks of 16 tokens in a random order; contexts 1k to 32k, batches 1 to
// 64; CUDA events, medians of 20. Needs a GPU.
// Usage: bench_kv_attention_cuda [--cache float16|bfloat16|float32|fp8_e4m3]
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "gangway/kernels/kv_cache_cuda.h"
#include "gangway/kernels/reduce_cuda.h"

#include "bench_timing_cuda.h"

namespace k = gangway::kernels;
using gangway::benches::medianMs;

namespace {

bool check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  std::fprintf(stderr, "bench_kv_attention_cuda: error: %s: %s\n", what, cudaGetErrorString(e));
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  k::KvDataType cache_type = k::KvDataType::kFloat16;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--cache" && i + 1 < argc && k::parseKvDataType(argv[i + 1]).ok()) {
      cache_type = *k::parseKvDataType(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "bench_kv_attention_cuda: error: unknown flag %s (flags: --cache TYPE)\n",
                   argv[i]);
      return 2;
    }
  }
  if (k::cudaDeviceCount() == 0) {
    std::fprintf(stderr, "bench_kv_attention_cuda: error: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  constexpr int32_t kHeads = 32;
  constexpr int32_t kKvHeads = 8;
  constexpr int32_t kHeadDim = 128;
  constexpr int32_t kBlockSize = 16;
  constexpr int32_t kMaxBatch = 64;
  constexpr int32_t kMaxContext = 32768;
  const k::KvDataType io =
      cache_type == k::KvDataType::kFp8E4M3 ? k::KvDataType::kFloat16 : cache_type;
  const k::KvCacheShape shape{kMaxBatch * kMaxContext / kBlockSize, kBlockSize, kKvHeads, kHeadDim,
                              cache_type};
  std::printf("# %s, %d SMs; %d heads, %d kv heads, head_dim %d, block %d, cache %s, io %s\n",
              prop.name, prop.multiProcessorCount, kHeads, kKvHeads, kHeadDim, kBlockSize,
              k::kvDataTypeName(cache_type), k::kvDataTypeName(io));

  const std::size_t copy_bytes = std::size_t{1} << 30;
  void* key_cache = nullptr;
  void* value_cache = nullptr;
  void* copy_a = nullptr;
  void* copy_b = nullptr;
  void* query = nullptr;
  void* out = nullptr;
  void* tables = nullptr;
  void* seq_lens = nullptr;
  const std::size_t q_bytes =
      static_cast<std::size_t>(kMaxBatch) * kHeads * kHeadDim * k::kvDataTypeSize(io);
  if (!check(cudaMalloc(&key_cache, k::kvCacheBytes(shape)), "cudaMalloc K") ||
      !check(cudaMalloc(&value_cache, k::kvCacheBytes(shape)), "cudaMalloc V") ||
      !check(cudaMalloc(&copy_a, copy_bytes), "cudaMalloc") ||
      !check(cudaMalloc(&copy_b, copy_bytes), "cudaMalloc") ||
      !check(cudaMalloc(&query, q_bytes), "cudaMalloc") ||
      !check(cudaMalloc(&out, q_bytes), "cudaMalloc") ||
      !check(cudaMalloc(&tables, static_cast<std::size_t>(shape.num_blocks) * 4), "cudaMalloc") ||
      !check(cudaMalloc(&seq_lens, std::size_t{kMaxBatch} * 4), "cudaMalloc")) {
    return 1;
  }
  // Small finite values (fp8 0x30 = 0.5; zero for the others).
  const int fill = cache_type == k::KvDataType::kFp8E4M3 ? 0x30 : 0;
  cudaMemset(key_cache, fill, k::kvCacheBytes(shape));
  cudaMemset(value_cache, fill, k::kvCacheBytes(shape));
  cudaMemset(query, 0, q_bytes);
  cudaMemset(copy_a, 0, copy_bytes);
  const float tc =
      medianMs([&] { cudaMemcpyAsync(copy_b, copy_a, copy_bytes, cudaMemcpyDeviceToDevice); });
  const double copy_gbs = 2.0 * static_cast<double>(copy_bytes) / (tc * 1e-3) / 1e9;
  std::printf("# cudaMemcpy device to device: %.1f GB/s (read + write)\n", copy_gbs);
  std::printf("%-6s %-8s %-10s %12s %10s %10s %10s\n", "batch", "context", "partitions", "KV bytes",
              "time us", "GB/s", "of copy");

  std::mt19937 rng(1);
  std::vector<int32_t> ids(static_cast<std::size_t>(shape.num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  for (int32_t batch : {1, 4, 16, 64}) {
    for (int32_t context : {1024, 2048, 4096, 8192, 16384, 32768}) {
      const int32_t blocks_per_seq = context / kBlockSize;
      std::shuffle(ids.begin(), ids.end(), rng);
      const std::vector<int32_t> lens(static_cast<std::size_t>(batch), context);
      cudaMemcpy(tables, ids.data(), static_cast<std::size_t>(batch) * blocks_per_seq * 4,
                 cudaMemcpyHostToDevice);
      cudaMemcpy(seq_lens, lens.data(), lens.size() * 4, cudaMemcpyHostToDevice);
      k::PagedAttentionArgs a;
      a.out = out;
      a.query = query;
      a.io_type = io;
      a.num_seqs = batch;
      a.num_heads = kHeads;
      a.key_cache = key_cache;
      a.value_cache = value_cache;
      a.cache = shape;
      a.block_tables = static_cast<const int32_t*>(tables);
      a.max_blocks_per_seq = blocks_per_seq;
      a.seq_lens = static_cast<const int32_t*>(seq_lens);
      a.max_seq_len = context;
      a.scale = 0.088f;
      const auto ws_bytes = k::pagedDecodeAttentionWorkspaceBytes(a);
      if (!ws_bytes.ok()) {
        std::fprintf(stderr, "bench_kv_attention_cuda: error: %s\n",
                     std::string(ws_bytes.status().message()).c_str());
        return 1;
      }
      void* ws = nullptr;
      if (*ws_bytes > 0 && !check(cudaMalloc(&ws, *ws_bytes), "cudaMalloc workspace")) return 1;
      bool ok = true;
      const float ta = medianMs(
          [&] { ok = ok && k::pagedDecodeAttentionDevice(a, ws, *ws_bytes, nullptr).ok(); });
      cudaFree(ws);
      if (!ok || !check(cudaDeviceSynchronize(), "attention")) {
        std::fprintf(stderr, "bench_kv_attention_cuda: error: pagedDecodeAttentionDevice failed\n");
        return 1;
      }
      const std::size_t bytes = 2 * static_cast<std::size_t>(batch) * context *
                                static_cast<std::size_t>(k::kvTokenElements(shape)) *
                                k::kvDataTypeSize(cache_type);
      const double gbs = static_cast<double>(bytes) / (ta * 1e-3) / 1e9;
      const std::size_t row_floats = static_cast<std::size_t>(batch) * kHeads * (kHeadDim + 2);
      const std::size_t partitions = *ws_bytes / 4 / (row_floats == 0 ? 1 : row_floats);
      std::printf("%-6d %-8d %-10zu %12zu %10.1f %10.1f %10.3f\n", batch, context,
                  partitions == 0 ? 1 : partitions, bytes, ta * 1e3, gbs, gbs / copy_gbs);
    }
  }
  cudaFree(key_cache);
  cudaFree(value_cache);
  cudaFree(copy_a);
  cudaFree(copy_b);
  cudaFree(query);
  cudaFree(out);
  cudaFree(tables);
  cudaFree(seq_lens);
  return 0;
}
