// Host paged decode attention against memcpy, the machine's limit for moving the same bytes.
// Attention reads every cached K and V row of every sequence once (its bandwidth counts those
// bytes; queries and outputs are negligible); memcpy of as many bytes moves them twice (read and
// write, both counted, as in bench_reduce). 32 query heads, 8 kv heads, head_dim 128, blocks of 16
// tokens handed out in a random order; medians over repetitions; single-threaded like the kernel.
// Usage: bench_kv_attention [--reps N] [--cache float16|bfloat16|float32|fp8_e4m3]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gangway/kernels/kv_cache.h"

#include "bench_timing.h"

namespace k = gangway::kernels;
using gangway::benches::medianSeconds;

int main(int argc, char** argv) {
  int reps = 11;
  k::KvDataType cache_type = k::KvDataType::kFloat16;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--reps" && i + 1 < argc && std::atoi(argv[i + 1]) > 0) {
      reps = std::atoi(argv[++i]);
    } else if (arg == "--cache" && i + 1 < argc && k::parseKvDataType(argv[i + 1]).ok()) {
      cache_type = *k::parseKvDataType(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "bench_kv_attention: error: unknown flag %s (flags: --reps N, --cache TYPE)\n",
                   argv[i]);
      return 2;
    }
  }
  constexpr int32_t kHeads = 32;
  constexpr int32_t kKvHeads = 8;
  constexpr int32_t kHeadDim = 128;
  constexpr int32_t kBlockSize = 16;
  const int32_t max_tokens = 4 * 16384;
  const k::KvDataType io =
      cache_type == k::KvDataType::kFp8E4M3 ? k::KvDataType::kFloat16 : cache_type;
  k::KvCacheShape shape{max_tokens / kBlockSize, kBlockSize, kKvHeads, kHeadDim, cache_type};
  // Small values of the cache type (for fp8: code 0x30 = 0.5).
  std::vector<uint8_t> key_cache(k::kvCacheBytes(shape),
                                 cache_type == k::KvDataType::kFp8E4M3 ? 0x30 : 0);
  std::vector<uint8_t> value_cache(key_cache);
  std::vector<uint8_t> memcpy_src(key_cache.size() * 2, 1);  // K and V's bytes at most
  std::vector<uint8_t> memcpy_dst(memcpy_src.size());
  std::mt19937 rng(1);
  std::printf(
      "# paged decode attention, host, 1 thread: %d heads, %d kv heads, head_dim %d, "
      "block %d, cache %s, io %s\n",
      kHeads, kKvHeads, kHeadDim, kBlockSize, k::kvDataTypeName(cache_type), k::kvDataTypeName(io));
  std::printf("%-6s %-8s %12s %12s %14s %12s %8s\n", "batch", "context", "KV bytes", "attn ms",
              "attn GB/s", "memcpy GB/s", "ratio");
  for (int32_t batch : {1, 4}) {
    for (int32_t context : {1024, 4096, 16384}) {
      const int32_t blocks_per_seq = context / kBlockSize;
      std::vector<int32_t> ids(static_cast<std::size_t>(shape.num_blocks));
      std::iota(ids.begin(), ids.end(), 0);
      std::shuffle(ids.begin(), ids.end(), rng);
      std::vector<int32_t> tables(
          ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(batch) * blocks_per_seq);
      std::vector<int32_t> seq_lens(static_cast<std::size_t>(batch), context);
      std::vector<uint8_t> query(static_cast<std::size_t>(batch) * kHeads * kHeadDim *
                                 k::kvDataTypeSize(io));
      std::vector<uint8_t> out(query.size());
      k::PagedAttentionArgs a;
      a.out = out.data();
      a.query = query.data();
      a.io_type = io;
      a.num_seqs = batch;
      a.num_heads = kHeads;
      a.key_cache = key_cache.data();
      a.value_cache = value_cache.data();
      a.cache = shape;
      a.block_tables = tables.data();
      a.max_blocks_per_seq = blocks_per_seq;
      a.seq_lens = seq_lens.data();
      a.max_seq_len = context;
      a.scale = 0.088f;
      bool ok = true;
      const double ta =
          medianSeconds(reps, [&] { ok = ok && k::pagedDecodeAttentionHost(a).ok(); });
      if (!ok) {
        std::fprintf(stderr, "bench_kv_attention: error: pagedDecodeAttentionHost failed\n");
        return 1;
      }
      const std::size_t bytes = 2 * static_cast<std::size_t>(batch) * context *
                                static_cast<std::size_t>(k::kvTokenElements(shape)) *
                                k::kvDataTypeSize(cache_type);
      const double tm =
          medianSeconds(reps, [&] { std::memcpy(memcpy_dst.data(), memcpy_src.data(), bytes); });
      const double ga = static_cast<double>(bytes) / ta / 1e9;
      const double gm = 2.0 * static_cast<double>(bytes) / tm / 1e9;
      std::printf("%-6d %-8d %12zu %12.3f %14.2f %12.2f %8.3f\n", batch, context, bytes, ta * 1e3,
                  ga, gm, ga / gm);
    }
  }
  return 0;
}
