// KV-cache types, argument checks, and the host reshapeAndCache, copyBlocks and swapBlocks.
#include <cmath>
#include <cstring>
#include <vector>

#include <absl/strings/str_cat.h>

#include "gangway/kernels/kv_cache.h"

#include "kv_cache_args.h"
#include "kv_elem.h"

namespace gangway::kernels {

std::size_t kvDataTypeSize(KvDataType t) {
  switch (t) {
    case KvDataType::kFloat16:
    case KvDataType::kBFloat16:
      return 2;
    case KvDataType::kFloat32:
      return 4;
    case KvDataType::kFp8E4M3:
      return 1;
  }
  return 0;
}

const char* kvDataTypeName(KvDataType t) {
  switch (t) {
    case KvDataType::kFloat16:
      return "float16";
    case KvDataType::kBFloat16:
      return "bfloat16";
    case KvDataType::kFloat32:
      return "float32";
    case KvDataType::kFp8E4M3:
      return "fp8_e4m3";
  }
  return "?";
}

absl::StatusOr<KvDataType> parseKvDataType(absl::string_view name) {
  for (KvDataType t : kAllKvDataTypes) {
    if (name == kvDataTypeName(t)) return t;
  }
  if (name == "half" || name == "fp16") return KvDataType::kFloat16;
  if (name == "bf16") return KvDataType::kBFloat16;
  if (name == "float" || name == "fp32") return KvDataType::kFloat32;
  if (name == "fp8" || name == "e4m3") return KvDataType::kFp8E4M3;
  return absl::InvalidArgumentError(
      absl::StrCat("'", name, "' is not a KV cache type (float16 bfloat16 float32 fp8_e4m3)"));
}

bool isKvInputType(KvDataType t) { return t != KvDataType::kFp8E4M3; }

absl::Status validateKvCacheShape(const KvCacheShape& shape) {
  const struct {
    const char* name;
    int32_t value;
  } dims[] = {{"num_blocks", shape.num_blocks},
              {"block_size", shape.block_size},
              {"num_kv_heads", shape.num_kv_heads},
              {"head_dim", shape.head_dim}};
  for (const auto& d : dims) {
    if (d.value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV cache shape: ", d.name, " must be positive, got ", d.value));
    }
  }
  if (kvDataTypeSize(shape.cache_type) == 0) {
    return absl::InvalidArgumentError("KV cache shape: unknown cache type");
  }
  return absl::OkStatus();
}

int64_t kvCacheSlots(const KvCacheShape& shape) {
  return static_cast<int64_t>(shape.num_blocks) * shape.block_size;
}

int64_t kvTokenElements(const KvCacheShape& shape) {
  return static_cast<int64_t>(shape.num_kv_heads) * shape.head_dim;
}

std::size_t kvBlockBytes(const KvCacheShape& shape) {
  return static_cast<std::size_t>(shape.block_size) *
         static_cast<std::size_t>(kvTokenElements(shape)) * kvDataTypeSize(shape.cache_type);
}

std::size_t kvCacheBytes(const KvCacheShape& shape) {
  return static_cast<std::size_t>(shape.num_blocks) * kvBlockBytes(shape);
}

std::vector<BlockRun> mergeBlockRuns(const BlockPair* pairs, int32_t num_pairs) {
  std::vector<BlockRun> runs;
  for (int32_t i = 0; i < num_pairs; ++i) {
    const BlockPair p = pairs[i];
    if (!runs.empty()) {
      BlockRun& r = runs.back();
      if (static_cast<int64_t>(r.src) + r.count == p.src &&
          static_cast<int64_t>(r.dst) + r.count == p.dst) {
        ++r.count;
        continue;
      }
    }
    runs.push_back(BlockRun{p.src, p.dst, 1});
  }
  return runs;
}

namespace detail {
namespace {

bool positiveFinite(float x) { return std::isfinite(x) && x > 0.0f; }

absl::Status invalid(const char* fn, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(fn, ": ", what));
}

}  // namespace

absl::Status checkReshapeArgs(const ReshapeAndCacheArgs& a, const char* fn) {
  if (absl::Status s = validateKvCacheShape(a.cache); !s.ok()) return invalid(fn, s.message());
  if (!isKvInputType(a.input_type)) {
    return invalid(fn, absl::StrCat("input_type must be float16, bfloat16 or float32, got ",
                                    kvDataTypeName(a.input_type)));
  }
  if (a.num_tokens < 0) return invalid(fn, absl::StrCat("num_tokens is negative: ", a.num_tokens));
  const int64_t row = kvTokenElements(a.cache);
  if ((a.key_stride != 0 && a.key_stride < row) || (a.value_stride != 0 && a.value_stride < row)) {
    return invalid(fn, absl::StrCat("key_stride ", a.key_stride, " / value_stride ", a.value_stride,
                                    " shorter than a token's row of ", row,
                                    " elements (num_kv_heads * head_dim)"));
  }
  if (!positiveFinite(a.k_scale) || !positiveFinite(a.v_scale)) {
    return invalid(fn, absl::StrCat("k_scale and v_scale must be positive and finite, got ",
                                    a.k_scale, " and ", a.v_scale));
  }
  if (a.num_tokens > 0 && (a.key == nullptr || a.value == nullptr || a.slot_mapping == nullptr)) {
    return invalid(fn, "key, value and slot_mapping must not be null");
  }
  if (a.key_cache == nullptr || a.value_cache == nullptr) {
    return invalid(fn, "key_cache and value_cache must not be null");
  }
  return absl::OkStatus();
}

absl::Status checkAttentionArgs(const PagedAttentionArgs& a, const char* fn) {
  if (absl::Status s = validateKvCacheShape(a.cache); !s.ok()) return invalid(fn, s.message());
  if (!isKvInputType(a.io_type)) {
    return invalid(fn, absl::StrCat("io_type must be float16, bfloat16 or float32, got ",
                                    kvDataTypeName(a.io_type)));
  }
  if (a.num_seqs < 0) return invalid(fn, absl::StrCat("num_seqs is negative: ", a.num_seqs));
  if (a.num_heads <= 0 || a.num_heads % a.cache.num_kv_heads != 0) {
    return invalid(fn, absl::StrCat("num_heads (", a.num_heads,
                                    ") must be a positive multiple of num_kv_heads (",
                                    a.cache.num_kv_heads, ")"));
  }
  const int64_t row = static_cast<int64_t>(a.num_heads) * a.cache.head_dim;
  if (a.query_stride != 0 && a.query_stride < row) {
    return invalid(
        fn, absl::StrCat("query_stride ", a.query_stride, " shorter than a query row of ", row,
                         " elements (num_heads * head_dim)"));
  }
  if (a.max_blocks_per_seq <= 0) {
    return invalid(fn,
                   absl::StrCat("max_blocks_per_seq must be positive, got ", a.max_blocks_per_seq));
  }
  if (a.max_seq_len < 0) {
    return invalid(fn, absl::StrCat("max_seq_len is negative: ", a.max_seq_len));
  }
  if (!std::isfinite(a.scale) || !positiveFinite(a.k_scale) || !positiveFinite(a.v_scale)) {
    return invalid(fn, absl::StrCat("scale must be finite and k_scale, v_scale positive and "
                                    "finite, got ",
                                    a.scale, ", ", a.k_scale, ", ", a.v_scale));
  }
  if (a.num_seqs > 0 &&
      (a.out == nullptr || a.query == nullptr || a.key_cache == nullptr ||
       a.value_cache == nullptr || a.block_tables == nullptr || a.seq_lens == nullptr)) {
    return invalid(
        fn, "out, query, key_cache, value_cache, block_tables and seq_lens must not be null");
  }
  return absl::OkStatus();
}

absl::Status checkCopyBlocksArgs(void* const* caches, int32_t num_caches, const KvCacheShape& shape,
                                 const BlockPair* pairs, int32_t num_pairs, const char* fn) {
  if (absl::Status s = validateKvCacheShape(shape); !s.ok()) return invalid(fn, s.message());
  if (num_caches < 0 || num_pairs < 0) {
    return invalid(
        fn, absl::StrCat("negative count: num_caches ", num_caches, ", num_pairs ", num_pairs));
  }
  if (num_pairs > 0 && pairs == nullptr) return invalid(fn, "pairs must not be null");
  if (num_caches > 0 && caches == nullptr) return invalid(fn, "caches must not be null");
  for (int32_t c = 0; c < num_caches; ++c) {
    if (caches[c] == nullptr) return invalid(fn, absl::StrCat("caches[", c, "] is null"));
  }
  // 1: a source, 2: a destination.
  std::vector<uint8_t> role(num_pairs > 0 ? static_cast<std::size_t>(shape.num_blocks) : 0, 0);
  for (int32_t i = 0; i < num_pairs; ++i) {
    const BlockPair p = pairs[i];
    if (p.src < 0 || p.src >= shape.num_blocks || p.dst < 0 || p.dst >= shape.num_blocks) {
      return invalid(fn, absl::StrCat("pair ", i, " (", p.src, " -> ", p.dst,
                                      ") has a block id outside [0, ", shape.num_blocks, ")"));
    }
    role[static_cast<std::size_t>(p.src)] |= 1;
  }
  for (int32_t i = 0; i < num_pairs; ++i) {
    const BlockPair p = pairs[i];
    uint8_t& r = role[static_cast<std::size_t>(p.dst)];
    if (r != 0) {
      return invalid(fn, absl::StrCat("pair ", i, " (", p.src, " -> ", p.dst, "): block ", p.dst,
                                      (r & 2) != 0 ? " is a destination twice"
                                                   : " is both a source and a destination"));
    }
    r = 2;
  }
  return absl::OkStatus();
}

absl::Status checkSwapBlocksArgs(const void* src_cache, const KvCacheShape& src_shape,
                                 const void* dst_cache, const KvCacheShape& dst_shape,
                                 const BlockPair* pairs, int32_t num_pairs, const char* fn) {
  if (absl::Status s = validateKvCacheShape(src_shape); !s.ok()) {
    return invalid(fn, absl::StrCat("source: ", s.message()));
  }
  if (absl::Status s = validateKvCacheShape(dst_shape); !s.ok()) {
    return invalid(fn, absl::StrCat("destination: ", s.message()));
  }
  if (src_shape.block_size != dst_shape.block_size ||
      src_shape.num_kv_heads != dst_shape.num_kv_heads ||
      src_shape.head_dim != dst_shape.head_dim || src_shape.cache_type != dst_shape.cache_type) {
    return invalid(fn,
                   "source and destination differ in block_size, num_kv_heads, head_dim or type");
  }
  if (src_cache == nullptr || dst_cache == nullptr) return invalid(fn, "a cache pointer is null");
  if (num_pairs < 0) return invalid(fn, absl::StrCat("num_pairs is negative: ", num_pairs));
  if (num_pairs > 0 && pairs == nullptr) return invalid(fn, "pairs must not be null");
  for (int32_t i = 0; i < num_pairs; ++i) {
    const BlockPair p = pairs[i];
    if (p.src < 0 || p.src >= src_shape.num_blocks || p.dst < 0 || p.dst >= dst_shape.num_blocks) {
      return invalid(
          fn, absl::StrCat("pair ", i, " (", p.src, " -> ", p.dst, ") has a block id outside [0, ",
                           src_shape.num_blocks, ") / [0, ", dst_shape.num_blocks, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace detail

namespace {

template <KvDataType kIn, KvDataType kCache>
void writeTokens(const ReshapeAndCacheArgs& a) {
  using In = detail::KvStorage<kIn>;
  using Cache = detail::KvStorage<kCache>;
  const int64_t row = kvTokenElements(a.cache);
  const int64_t ks = detail::strideOr(a.key_stride, row);
  const int64_t vs = detail::strideOr(a.value_stride, row);
  const auto* key = static_cast<const In*>(a.key);
  const auto* value = static_cast<const In*>(a.value);
  auto* kc = static_cast<Cache*>(a.key_cache);
  auto* vc = static_cast<Cache*>(a.value_cache);
  for (int64_t t = 0; t < a.num_tokens; ++t) {
    const int64_t slot = a.slot_mapping[t];
    if (slot < 0) continue;
    const In* k = key + t * ks;
    const In* v = value + t * vs;
    Cache* kd = kc + slot * row;
    Cache* vd = vc + slot * row;
    for (int64_t i = 0; i < row; ++i) {
      kd[i] = detail::toCache<kIn, kCache>(k[i], a.k_scale);
      vd[i] = detail::toCache<kIn, kCache>(v[i], a.v_scale);
    }
  }
}

}  // namespace

absl::Status reshapeAndCacheHost(const ReshapeAndCacheArgs& args) {
  static constexpr const char* kFn = "reshapeAndCacheHost";
  if (absl::Status s = detail::checkReshapeArgs(args, kFn); !s.ok()) return s;
  const int64_t slots = kvCacheSlots(args.cache);
  for (int64_t t = 0; t < args.num_tokens; ++t) {
    if (args.slot_mapping[t] >= slots) {
      return absl::InvalidArgumentError(absl::StrCat(kFn, ": token ", t, " maps to slot ",
                                                     args.slot_mapping[t], ", outside the ", slots,
                                                     " slots of the cache"));
    }
  }
  detail::dispatchKvTypes(args.input_type, args.cache.cache_type, [&](auto in, auto cache) {
    writeTokens<decltype(in)::value, decltype(cache)::value>(args);
  });
  return absl::OkStatus();
}

absl::Status copyBlocksHost(void* const* caches, int32_t num_caches, const KvCacheShape& shape,
                            const BlockPair* pairs, int32_t num_pairs) {
  if (absl::Status s = detail::checkCopyBlocksArgs(caches, num_caches, shape, pairs, num_pairs,
                                                   "copyBlocksHost");
      !s.ok()) {
    return s;
  }
  const std::size_t block = kvBlockBytes(shape);
  for (int32_t c = 0; c < num_caches; ++c) {
    auto* base = static_cast<unsigned char*>(caches[c]);
    for (const BlockRun& r : mergeBlockRuns(pairs, num_pairs)) {
      // Sources and destinations are disjoint sets, so a run never overlaps itself.
      std::memcpy(base + static_cast<std::size_t>(r.dst) * block,
                  base + static_cast<std::size_t>(r.src) * block,
                  static_cast<std::size_t>(r.count) * block);
    }
  }
  return absl::OkStatus();
}

absl::Status swapBlocksHost(const void* src_cache, const KvCacheShape& src_shape, void* dst_cache,
                            const KvCacheShape& dst_shape, const BlockPair* pairs,
                            int32_t num_pairs) {
  if (absl::Status s = detail::checkSwapBlocksArgs(src_cache, src_shape, dst_cache, dst_shape,
                                                   pairs, num_pairs, "swapBlocksHost");
      !s.ok()) {
    return s;
  }
  const std::size_t block = kvBlockBytes(src_shape);
  const auto* src = static_cast<const unsigned char*>(src_cache);
  auto* dst = static_cast<unsigned char*>(dst_cache);
  for (const BlockRun& r : mergeBlockRuns(pairs, num_pairs)) {
    // memmove: the two caches may be one buffer.
    std::memmove(dst + static_cast<std::size_t>(r.dst) * block,
                 src + static_cast<std::size_t>(r.src) * block,
                 static_cast<std::size_t>(r.count) * block);
  }
  return absl::OkStatus();
}

}  // namespace gangway::kernels
