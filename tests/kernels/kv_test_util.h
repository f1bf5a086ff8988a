// Test helpers shared by kv_cache_test.cc (host) and kv_cache_cuda_test.cc (device): elements of
// any KV type as bytes, random paged-attention problems with scattered block tables and poisoned
// unused memory, and a naive float64 attention to compare against.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <absl/strings/str_cat.h>
#include <gtest/gtest.h>

#include "gangway/kernels/fp8.h"
#include "gangway/kernels/kv_cache.h"
#include "gangway/kernels/reduce.h"

namespace gangway::kernels::testing {

// Element i of an array of type t, as a double (exact).
inline double getElem(KvDataType t, const uint8_t* base, int64_t i) {
  const std::size_t size = kvDataTypeSize(t);
  const uint8_t* p = base + static_cast<std::size_t>(i) * size;
  switch (t) {
    case KvDataType::kFloat16: {
      uint16_t h = 0;
      std::memcpy(&h, p, 2);
      return halfToFloat(h);
    }
    case KvDataType::kBFloat16: {
      uint16_t b = 0;
      std::memcpy(&b, p, 2);
      return bfloat16ToFloat(b);
    }
    case KvDataType::kFloat32: {
      float f = 0;
      std::memcpy(&f, p, 4);
      return f;
    }
    case KvDataType::kFp8E4M3:
      return hd::fp8e4m3ToFloat(*p);
  }
  return 0;
}

// Element i = v rounded to t (nearest even; fp8: saturating), through reduce.h's conversions.
inline void setElem(KvDataType t, uint8_t* base, int64_t i, float v) {
  uint8_t* p = base + static_cast<std::size_t>(i) * kvDataTypeSize(t);
  switch (t) {
    case KvDataType::kFloat16: {
      const uint16_t h = floatToHalf(v);
      std::memcpy(p, &h, 2);
      return;
    }
    case KvDataType::kBFloat16: {
      const uint16_t b = floatToBfloat16(v);
      std::memcpy(p, &b, 2);
      return;
    }
    case KvDataType::kFloat32:
      std::memcpy(p, &v, 4);
      return;
    case KvDataType::kFp8E4M3:
      *p = hd::floatToFp8e4m3(v);
      return;
  }
}

// A NaN of type t: what unused cache memory holds, so that reading it shows in the output.
inline void setNaN(KvDataType t, uint8_t* base, int64_t i) { setElem(t, base, i, std::nanf("")); }

// gtest's name for a parameterized attention case: heads, KV heads, head size and the two types
// (any parameter struct with those fields).
template <typename Param>
std::string attentionParamName(const ::testing::TestParamInfo<Param>& info) {
  const Param& p = info.param;
  return absl::StrCat("h", p.num_heads, "kv", p.num_kv_heads, "d", p.head_dim, "_",
                      kvDataTypeName(p.io), "_", kvDataTypeName(p.cache));
}

struct AttentionConfig {
  int32_t num_heads = 8;
  int32_t num_kv_heads = 2;
  int32_t head_dim = 128;
  int32_t block_size = 16;
  KvDataType io_type = KvDataType::kFloat16;
  KvDataType cache_type = KvDataType::kFloat16;
  std::vector<int32_t> seq_lens = {0, 1, 15, 16, 37, 1500};
  float value_range = 2.0f;  // q, k, v uniform in [-range, range]
  int64_t query_stride = 0;  // 0: dense
  uint32_t seed = 1;
};

inline std::string describe(const AttentionConfig& c) {
  return absl::StrCat("heads ", c.num_heads, "/", c.num_kv_heads, " head_dim ", c.head_dim,
                      " block_size ", c.block_size, " io ", kvDataTypeName(c.io_type), " cache ",
                      kvDataTypeName(c.cache_type));
}

// Host buffers of one problem; args(out) points into them.
struct AttentionProblem {
  AttentionConfig config;
  KvCacheShape cache;
  int32_t max_blocks_per_seq = 0;
  std::vector<int32_t> block_tables;
  std::vector<uint8_t> key_cache;
  std::vector<uint8_t> value_cache;
  std::vector<uint8_t> query;
  float k_scale = 1.0f;
  float v_scale = 1.0f;
  float scale = 1.0f;

  int32_t numSeqs() const { return static_cast<int32_t>(config.seq_lens.size()); }
  int64_t outElements() const {
    return static_cast<int64_t>(numSeqs()) * config.num_heads * config.head_dim;
  }
  PagedAttentionArgs args(void* out) const {
    PagedAttentionArgs a;
    a.out = out;
    a.query = query.data();
    a.query_stride = config.query_stride;
    a.io_type = config.io_type;
    a.num_seqs = numSeqs();
    a.num_heads = config.num_heads;
    a.key_cache = key_cache.data();
    a.value_cache = value_cache.data();
    a.cache = cache;
    a.k_scale = k_scale;
    a.v_scale = v_scale;
    a.block_tables = block_tables.data();
    a.max_blocks_per_seq = max_blocks_per_seq;
    a.seq_lens = config.seq_lens.data();
    a.max_seq_len = *std::max_element(config.seq_lens.begin(), config.seq_lens.end());
    a.scale = scale;
    return a;
  }
};

// Blocks handed out in a random order (never sorted), three spare blocks, table entries past a
// sequence's last block set to -1 or a huge id, and every cache element no sequence uses (spare
// blocks, the tail of each sequence's last block) a NaN.
inline AttentionProblem makeAttentionProblem(const AttentionConfig& c) {
  std::mt19937 rng(c.seed);
  std::uniform_real_distribution<float> value(-c.value_range, c.value_range);
  AttentionProblem p;
  p.config = c;
  int32_t used = 0;
  int32_t max_blocks = 1;
  for (int32_t len : c.seq_lens) {
    const int32_t blocks = (len + c.block_size - 1) / c.block_size;
    used += blocks;
    max_blocks = std::max(max_blocks, blocks + 2);
  }
  p.cache = KvCacheShape{used + 3, c.block_size, c.num_kv_heads, c.head_dim, c.cache_type};
  p.max_blocks_per_seq = max_blocks;
  const bool fp8 = c.cache_type == KvDataType::kFp8E4M3;
  p.k_scale = fp8 ? c.value_range / 200.0f : 1.0f;  // spreads values over fp8's range
  p.v_scale = fp8 ? c.value_range / 100.0f : 1.0f;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));

  std::vector<int32_t> ids(static_cast<std::size_t>(p.cache.num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  const std::size_t elems = kvCacheBytes(p.cache) / kvDataTypeSize(c.cache_type);
  p.key_cache.assign(kvCacheBytes(p.cache), 0);
  p.value_cache.assign(kvCacheBytes(p.cache), 0);
  for (std::size_t i = 0; i < elems; ++i) {
    setNaN(c.cache_type, p.key_cache.data(), static_cast<int64_t>(i));
    setNaN(c.cache_type, p.value_cache.data(), static_cast<int64_t>(i));
  }
  p.block_tables.assign(static_cast<std::size_t>(p.numSeqs()) * max_blocks, -1);
  const int64_t row = kvTokenElements(p.cache);
  std::size_t next = 0;
  for (int32_t s = 0; s < p.numSeqs(); ++s) {
    const int32_t len = c.seq_lens[static_cast<std::size_t>(s)];
    int32_t* table = p.block_tables.data() + static_cast<std::size_t>(s) * max_blocks;
    const int32_t blocks = (len + c.block_size - 1) / c.block_size;
    for (int32_t b = 0; b < max_blocks; ++b) {
      table[b] = b < blocks ? ids[next++] : (b % 2 == 0 ? -1 : 0x7fffffff);
    }
    for (int32_t i = 0; i < len; ++i) {
      const int64_t slot =
          static_cast<int64_t>(table[i / c.block_size]) * c.block_size + i % c.block_size;
      for (int64_t e = 0; e < row; ++e) {
        setElem(c.cache_type, p.key_cache.data(), slot * row + e, value(rng) / p.k_scale);
        setElem(c.cache_type, p.value_cache.data(), slot * row + e, value(rng) / p.v_scale);
      }
    }
  }
  const int64_t q_row = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t q_stride = c.query_stride == 0 ? q_row : c.query_stride;
  p.query.assign(static_cast<std::size_t>(q_stride * p.numSeqs()) * kvDataTypeSize(c.io_type), 0);
  for (int32_t s = 0; s < p.numSeqs(); ++s) {
    for (int64_t e = 0; e < q_stride; ++e) {
      if (e < q_row) {
        setElem(c.io_type, p.query.data(), s * q_stride + e, value(rng));
      } else {
        setNaN(c.io_type, p.query.data(), s * q_stride + e);  // between rows: never read
      }
    }
  }
  return p;
}

// The attention in float64 on the values as stored (rounded to the cache and io types, times the
// fp8 scales), gathered through the block table; max-subtracted softmax.
inline std::vector<double> naiveAttention(const AttentionProblem& p) {
  const AttentionConfig& c = p.config;
  const int64_t hd = c.head_dim;
  const int64_t group = c.num_heads / c.num_kv_heads;
  const int64_t q_row = static_cast<int64_t>(c.num_heads) * hd;
  const int64_t q_stride = c.query_stride == 0 ? q_row : c.query_stride;
  const int64_t row = kvTokenElements(p.cache);
  std::vector<double> out(static_cast<std::size_t>(p.outElements()), 0.0);
  for (int32_t s = 0; s < p.numSeqs(); ++s) {
    const int64_t len = c.seq_lens[static_cast<std::size_t>(s)];
    const int32_t* table =
        p.block_tables.data() + static_cast<std::size_t>(s) * p.max_blocks_per_seq;
    for (int64_t kvh = 0; kvh < c.num_kv_heads; ++kvh) {
      std::vector<double> k(static_cast<std::size_t>(len * hd));
      std::vector<double> v(k.size());
      for (int64_t i = 0; i < len; ++i) {
        const int64_t slot =
            static_cast<int64_t>(table[i / c.block_size]) * c.block_size + i % c.block_size;
        for (int64_t d = 0; d < hd; ++d) {
          const int64_t e = slot * row + kvh * hd + d;
          k[static_cast<std::size_t>(i * hd + d)] =
              getElem(c.cache_type, p.key_cache.data(), e) * p.k_scale;
          v[static_cast<std::size_t>(i * hd + d)] =
              getElem(c.cache_type, p.value_cache.data(), e) * p.v_scale;
        }
      }
      for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
        std::vector<double> q(static_cast<std::size_t>(hd));
        for (int64_t d = 0; d < hd; ++d) {
          q[static_cast<std::size_t>(d)] =
              getElem(c.io_type, p.query.data(), s * q_stride + h * hd + d);
        }
        std::vector<double> score(static_cast<std::size_t>(len));
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t i = 0; i < len; ++i) {
          double dot = 0;
          for (int64_t d = 0; d < hd; ++d) {
            dot += q[static_cast<std::size_t>(d)] * k[static_cast<std::size_t>(i * hd + d)];
          }
          score[static_cast<std::size_t>(i)] = dot * static_cast<double>(p.scale);
          m = std::max(m, score[static_cast<std::size_t>(i)]);
        }
        double sum = 0;
        for (double& x : score) {
          x = std::exp(x - m);
          sum += x;
        }
        double* o = out.data() + (static_cast<int64_t>(s) * c.num_heads + h) * hd;
        for (int64_t i = 0; i < len; ++i) {
          const double w = score[static_cast<std::size_t>(i)] / sum;
          for (int64_t d = 0; d < hd; ++d) o[d] += w * v[static_cast<std::size_t>(i * hd + d)];
        }
      }
    }
  }
  return out;
}

// One sequence of one token whose V row (head_dim 256) holds every fp8 code in order, NaN codes
// included, and K zeros: the attention output is then exactly V * v_scale, element by element.
struct Fp8CodesProblem {
  KvCacheShape cache{2, 4, 1, 256, KvDataType::kFp8E4M3};
  std::vector<uint8_t> key_cache = std::vector<uint8_t>(kvCacheBytes(cache), 0);
  std::vector<uint8_t> value_cache = std::vector<uint8_t>(kvCacheBytes(cache), 0x7f);
  std::vector<float> query = std::vector<float>(256, 1.0f);
  std::vector<int32_t> table = {1};
  std::vector<int32_t> seq_lens = {1};
  Fp8CodesProblem() {
    const std::size_t slot = 4;  // block 1, position 0
    for (int c = 0; c < 256; ++c)
      value_cache[slot * 256 + static_cast<std::size_t>(c)] = static_cast<uint8_t>(c);
  }
  PagedAttentionArgs args(void* out) const {
    PagedAttentionArgs a;
    a.out = out;
    a.query = query.data();
    a.io_type = KvDataType::kFloat32;
    a.num_seqs = 1;
    a.num_heads = 1;
    a.key_cache = key_cache.data();
    a.value_cache = value_cache.data();
    a.cache = cache;
    a.k_scale = 2.0f;
    a.v_scale = 0.375f;
    a.block_tables = table.data();
    a.max_blocks_per_seq = 1;
    a.seq_lens = seq_lens.data();
    a.scale = 0.0625f;
    return a;
  }
};

inline void expectEveryFp8Code(const std::vector<float>& out, float v_scale) {
  ASSERT_EQ(out.size(), 256U);
  for (int c = 0; c < 256; ++c) {
    const float want = hd::fp8e4m3ToFloat(static_cast<uint8_t>(c)) * v_scale;
    const float got = out[static_cast<std::size_t>(c)];
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
    } else {
      EXPECT_EQ(got, want) << "code " << c;
    }
  }
}

// The tolerance: float32 accumulation (order, expf) costs at most kAccumulationTolerance absolute
// on outputs of magnitude <= value_range (2); rounding the result to the output type adds half an
// ulp of it (float16: 2^-11 relative, bfloat16: 2^-8; float32: nothing more). The reference is
// computed on the values as stored, so the rounding of the inputs costs nothing.
inline constexpr double kAccumulationTolerance = 1e-5;
inline double outputTolerance(KvDataType io, double ref) {
  const double half_ulp = io == KvDataType::kFloat16    ? std::ldexp(1.0, -11)
                          : io == KvDataType::kBFloat16 ? std::ldexp(1.0, -8)
                                                        : 0.0;
  return kAccumulationTolerance + half_ulp * std::fabs(ref) + 1e-30;
}

// Every output element within tolerance of the reference; returns the largest error seen.
inline double expectNear(const AttentionProblem& p, const std::vector<uint8_t>& out,
                         const std::vector<double>& ref, const std::string& what) {
  double worst = 0;
  int failures = 0;
  for (int64_t i = 0; i < p.outElements(); ++i) {
    const double got = getElem(p.config.io_type, out.data(), i);
    const double want = ref[static_cast<std::size_t>(i)];
    const double err = std::fabs(got - want);
    if (!(err <= outputTolerance(p.config.io_type, want))) {
      if (++failures <= 5) {
        ADD_FAILURE() << what << ": element " << i << " (seq "
                      << i / (static_cast<int64_t>(p.config.num_heads) * p.config.head_dim)
                      << ", head " << i / p.config.head_dim % p.config.num_heads << ") got " << got
                      << ", want " << want << " (error " << err << ")";
      }
    }
    if (!(err <= worst)) worst = err;
  }
  EXPECT_EQ(failures, 0) << what;
  return worst;
}

}  // namespace gangway::kernels::testing
