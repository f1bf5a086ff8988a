// The paged KV cache of libgangway_kv: its memory layout (the contract inference servers read and
// write), and the host implementations of its kernels. kv_cache_cuda.h has the same kernels on
// device memory, with the same arguments and results.
//
// Memory layout
// -------------
// Per layer there are two caches, K and V, each an array
//
//     cache[num_blocks][block_size][num_kv_heads][head_dim]        (row-major, C order)
//
// of the cache type (KvCacheShape::cache_type): float16, bfloat16, float32, or fp8 e4m3 stored as
// one byte (fp8.h). Element (block b, position o in the block, kv head h, dimension d) sits at
// element index ((b * block_size + o) * num_kv_heads + h) * head_dim + d. `b * block_size + o` is
// that token's *slot*; a block is block_size consecutive slots, kvBlockBytes() bytes. All layers
// (and K and V) of one model share one KvCacheShape, and block ids name the same block in each.
//
// fp8 caches hold values divided by a per-tensor scale: stored = fp8(x / k_scale) for keys
// (v_scale for values), and a cached value reads back as float(stored) * k_scale. Other cache
// types store x rounded to the type (nearest even) and ignore the scales.
//
// Kernel inputs (host memory here, device memory for kv_cache_cuda.h):
//   key, value     [num_tokens][num_kv_heads][head_dim] of the input type; consecutive tokens are
//                  `key_stride` / `value_stride` elements apart (0: num_kv_heads * head_dim), so
//                  that the K and V parts of a fused [num_tokens][q | k | v] tensor can be passed.
//   slot_mapping   int64 [num_tokens]: the slot token t goes to; negative: skip t (padding).
//   query, out     [num_seqs][num_heads][head_dim] of the input type; query rows of consecutive
//                  sequences are `query_stride` elements apart (0: num_heads * head_dim); out is
//                  dense.
//   block_tables   int32 [num_seqs][max_blocks_per_seq]: sequence s's token i is in block
//                  block_tables[s * max_blocks_per_seq + i / block_size], position i % block_size.
//                  Entries past the sequence's last block are never read.
//   seq_lens       int32 [num_seqs]: tokens cached for each sequence (0 allowed).
// Input types (query, key, value, out): float16, bfloat16 or float32; one type per call.
//
// Attention: query head h reads kv head h / (num_heads / num_kv_heads) (grouped-query attention;
// num_heads must be a multiple of num_kv_heads; num_kv_heads == 1 is multi-query attention):
//     out[s][h] = sum_i softmax_i(scale * q[s][h] . K[s][i]) * V[s][i],  i < seq_lens[s],
// where K[s][i], V[s][i] are token i's rows of that kv head (times the scales for fp8), computed
// in float32, the largest score subtracted before exponentiating (on the device per partition of
// the sequence, the partitions then combined); a sequence of length 0 gives zeros.
//
// Errors: InvalidArgument (naming the argument, and for a slot the token and the slot) before
// anything is written. Buffers must be aligned to their element type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/strings/string_view.h>

namespace gangway::kernels {

enum class KvDataType { kFloat16, kBFloat16, kFloat32, kFp8E4M3 };
inline constexpr KvDataType kAllKvDataTypes[] = {KvDataType::kFloat16, KvDataType::kBFloat16,
                                                 KvDataType::kFloat32, KvDataType::kFp8E4M3};

// Bytes per element: 2, 2, 4, 1.
std::size_t kvDataTypeSize(KvDataType t);
// float16 bfloat16 float32 fp8_e4m3.
const char* kvDataTypeName(KvDataType t);
// Those names, and half, fp16, bf16, float, fp32, fp8, e4m3; InvalidArgument otherwise.
absl::StatusOr<KvDataType> parseKvDataType(absl::string_view name);
// float16, bfloat16 and float32: the types queries, keys, values and outputs may have.
bool isKvInputType(KvDataType t);

// One cache (K or V) of one layer.
struct KvCacheShape {
  int32_t num_blocks = 0;
  int32_t block_size = 0;  // tokens per block
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  KvDataType cache_type = KvDataType::kFloat16;
};

// OK when every dimension is positive; InvalidArgument naming the first that is not.
absl::Status validateKvCacheShape(const KvCacheShape& shape);
// num_blocks * block_size.
int64_t kvCacheSlots(const KvCacheShape& shape);
// Elements of one token's row (num_kv_heads * head_dim) and of one block.
int64_t kvTokenElements(const KvCacheShape& shape);
std::size_t kvBlockBytes(const KvCacheShape& shape);
// Bytes of one cache (K or V) of one layer: num_blocks * kvBlockBytes(shape).
std::size_t kvCacheBytes(const KvCacheShape& shape);

// --- reshapeAndCache: write new tokens' keys and values into their slots. ---
struct ReshapeAndCacheArgs {
  const void* key = nullptr;    // [num_tokens][num_kv_heads][head_dim], rows key_stride apart
  const void* value = nullptr;  // likewise, value_stride
  int64_t num_tokens = 0;
  int64_t key_stride = 0;    // elements between tokens; 0: num_kv_heads * head_dim (dense)
  int64_t value_stride = 0;  // likewise; a nonzero stride must be >= num_kv_heads * head_dim
  KvDataType input_type = KvDataType::kFloat16;
  const int64_t* slot_mapping = nullptr;  // [num_tokens]; negative: skip the token
  void* key_cache = nullptr;
  void* value_cache = nullptr;
  KvCacheShape cache;
  float k_scale = 1.0f;  // fp8 caches: stored = fp8(key / k_scale); positive and finite
  float v_scale = 1.0f;
};

// key_cache[slot_mapping[t]] = key[t], value_cache[slot_mapping[t]] = value[t], converted to the
// cache type, for every token t whose slot is not negative. A slot >= kvCacheSlots(cache) is
// InvalidArgument (naming the token and the slot) and nothing is written. Tokens must not share a
// slot (the host writes them in order; on the device which one lands is unspecified).
absl::Status reshapeAndCacheHost(const ReshapeAndCacheArgs& args);

// --- pagedDecodeAttention: one new query token per sequence against its cached tokens. ---
struct PagedAttentionArgs {
  void* out = nullptr;          // [num_seqs][num_heads][head_dim], io_type
  const void* query = nullptr;  // [num_seqs][num_heads][head_dim], rows query_stride apart
  int64_t query_stride = 0;     // elements between sequences; 0: num_heads * head_dim
  KvDataType io_type = KvDataType::kFloat16;
  int32_t num_seqs = 0;
  int32_t num_heads = 0;  // a multiple of cache.num_kv_heads
  const void* key_cache = nullptr;
  const void* value_cache = nullptr;
  KvCacheShape cache;
  float k_scale = 1.0f;  // fp8 caches (see above)
  float v_scale = 1.0f;
  const int32_t* block_tables = nullptr;  // [num_seqs][max_blocks_per_seq]
  int32_t max_blocks_per_seq = 0;
  const int32_t* seq_lens = nullptr;  // [num_seqs]
  // An upper bound of seq_lens (the device kernels size their grid with it); 0: the table's
  // capacity, max_blocks_per_seq * block_size.
  int32_t max_seq_len = 0;
  float scale = 1.0f;  // softmax scale, usually 1 / sqrt(head_dim)
};

// out = softmax(scale * q K^T) V per sequence and query head (see above). Any head_dim. Checks
// every argument, including that seq_lens[s] <= max_seq_len (when given) and <= the table's
// capacity, and that each block id the sequences use is in [0, num_blocks). Single-threaded: per
// sequence one pass over K and one over V, four tokens' rows (all kv heads) at a time, each kv
// head's query heads together; a float32 score buffer of num_heads * seq_len per sequence.
absl::Status pagedDecodeAttentionHost(const PagedAttentionArgs& args);

// --- copyBlocks / swapBlocks: whole blocks, for copy-on-write and for swapping to host memory. ---
struct BlockPair {
  int32_t src = 0;
  int32_t dst = 0;
};
static_assert(sizeof(BlockPair) == 8, "BlockPair is an int32 [2] pair");

// For each cache in caches[0 .. num_caches) (typically K and V of every layer; all with `shape`)
// and each pair: block dst = block src. Pairs are checked first (block ids in range, no dst twice,
// no block both a source and a destination, so the order of the copies does not matter).
absl::Status copyBlocksHost(void* const* caches, int32_t num_caches, const KvCacheShape& shape,
                            const BlockPair* pairs, int32_t num_pairs);

// For each pair: block pair.dst of dst_cache = block pair.src of src_cache; two caches with the
// same block geometry (block_size, num_kv_heads, head_dim, cache_type), numbers of blocks may
// differ (a host swap space and a device cache). Pairs whose sources and destinations both run
// consecutively are copied as one run (mergeBlockRuns). Block ids are checked first.
absl::Status swapBlocksHost(const void* src_cache, const KvCacheShape& src_shape, void* dst_cache,
                            const KvCacheShape& dst_shape, const BlockPair* pairs,
                            int32_t num_pairs);

// Consecutive pairs (src, dst), (src + 1, dst + 1), ... merged into runs, in order.
struct BlockRun {
  int32_t src = 0;
  int32_t dst = 0;
  int32_t count = 0;
};
std::vector<BlockRun> mergeBlockRuns(const BlockPair* pairs, int32_t num_pairs);

}  // namespace gangway::kernels
