// The KV-cache kernels on the host: fp8 e4m3 and the shared float16/bfloat16 conversions,
// reshapeAndCache for every type combination, paged decode attention against a naive float64
// attention, block copy and swap, and the argument checks of each.
#include "gangway/kernels/kv_cache.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "gangway/kernels/fp8.h"
#include "gangway/kernels/reduce.h"

#include "kv_test_util.h"

namespace gangway::kernels {
namespace {

using testing::AttentionConfig;
using testing::AttentionProblem;

// --- fp8 e4m3 ---

// The OCP E4M3FN definition, independently: s eeee mmm, bias 7, e == 0 subnormal, S.1111.111 NaN.
double fp8Spec(int c) {
  const int s = (c >> 7) & 1;
  const int e = (c >> 3) & 15;
  const int m = c & 7;
  if (e == 15 && m == 7) return NAN;
  const double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s != 0 ? -mag : mag;
}

TEST(Fp8, DecodesEveryCodeAsTheSpecSays) {
  for (int c = 0; c < 256; ++c) {
    const float got = hd::fp8e4m3ToFloat(static_cast<uint8_t>(c));
    const double want = fp8Spec(c);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << c;
      EXPECT_EQ(std::signbit(got), c >= 0x80) << c;
    } else {
      EXPECT_EQ(static_cast<double>(got), want) << c;
      EXPECT_EQ(std::signbit(got), c >= 0x80) << c;  // 0x80 is -0
    }
  }
  EXPECT_EQ(hd::fp8e4m3ToFloat(0x7e), 448.0f);
  EXPECT_EQ(hd::fp8e4m3ToFloat(0xfe), -448.0f);
  EXPECT_EQ(hd::fp8e4m3ToFloat(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(hd::fp8e4m3ToFloat(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_EQ(hd::fp8e4m3ToFloat(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(hd::fp8e4m3ToFloat(0x38), 1.0f);
  EXPECT_EQ(hd::fp8e4m3ToFloat(0x40), 2.0f);
  EXPECT_EQ(hd::fp8e4m3ToFloat(0xb8), -1.0f);
  EXPECT_EQ(hd::fp8e4m3ToFloat(0x3c), 1.5f);
  EXPECT_TRUE(std::isnan(hd::fp8e4m3ToFloat(0x7f)));
  EXPECT_TRUE(std::isnan(hd::fp8e4m3ToFloat(0xff)));
}

TEST(Fp8, EncodeOfDecodeIsTheCodeForEveryNonNaNCode) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    EXPECT_EQ(hd::floatToFp8e4m3(hd::fp8e4m3ToFloat(static_cast<uint8_t>(c))), c) << c;
  }
}

TEST(Fp8, RoundsToNearestTiesToEven) {
  for (int sign : {0, 0x80}) {
    for (int c = 0; c < 0x7e; ++c) {  // adjacent codes c, c + 1 of one sign
      const float lo = hd::fp8e4m3ToFloat(static_cast<uint8_t>(sign | c));
      const float hi = hd::fp8e4m3ToFloat(static_cast<uint8_t>(sign | (c + 1)));
      const float mid = (lo + hi) / 2;  // exact: fp8 values have 4 significant bits
      ASSERT_EQ(static_cast<double>(mid), (static_cast<double>(lo) + static_cast<double>(hi)) / 2);
      const int even = (c % 2 == 0) ? c : c + 1;
      EXPECT_EQ(hd::floatToFp8e4m3(mid), sign | even) << std::hex << (sign | c);
      // Just off the midpoint: the nearer code.
      EXPECT_EQ(hd::floatToFp8e4m3(std::nextafter(mid, lo)), sign | c) << std::hex << (sign | c);
      EXPECT_EQ(hd::floatToFp8e4m3(std::nextafter(mid, hi)), sign | (c + 1))
          << std::hex << (sign | c);
    }
  }
  EXPECT_EQ(hd::floatToFp8e4m3(std::ldexp(1.0f, -10)), 0x00);   // half the smallest: to 0 (even)
  EXPECT_EQ(hd::floatToFp8e4m3(-std::ldexp(1.0f, -10)), 0x80);  // keeps its sign
  EXPECT_EQ(hd::floatToFp8e4m3(std::ldexp(1.0f, -30)), 0x00);
  EXPECT_EQ(hd::floatToFp8e4m3(std::ldexp(1.5f, -9)), 0x02);    // 1.5 * 2^-9: tie to even
  EXPECT_EQ(hd::floatToFp8e4m3(std::ldexp(15.0f, -10)), 0x08);  // 7.5 * 2^-9 carries to normal
  EXPECT_EQ(hd::floatToFp8e4m3(1.0625f), 0x38);                 // 1 + 1/16: tie to 1.0
  EXPECT_EQ(hd::floatToFp8e4m3(1.1875f), 0x3a);                 // 1 + 3/16: tie to 1.25
}

TEST(Fp8, SaturatesAndMapsNaNTo0x7F) {
  EXPECT_EQ(hd::floatToFp8e4m3(448.0f), 0x7e);
  EXPECT_EQ(hd::floatToFp8e4m3(449.0f), 0x7e);
  EXPECT_EQ(hd::floatToFp8e4m3(464.0f), 0x7e);  // the midpoint to the would-be 480
  EXPECT_EQ(hd::floatToFp8e4m3(1e30f), 0x7e);
  EXPECT_EQ(hd::floatToFp8e4m3(INFINITY), 0x7e);
  EXPECT_EQ(hd::floatToFp8e4m3(-500.0f), 0xfe);
  EXPECT_EQ(hd::floatToFp8e4m3(-INFINITY), 0xfe);
  EXPECT_EQ(hd::floatToFp8e4m3(std::nanf("")), 0x7f);
  EXPECT_EQ(hd::floatToFp8e4m3(-std::nanf("")), 0x7f);
  EXPECT_EQ(hd::floatToFp8e4m3(0.0f), 0x00);
  EXPECT_EQ(hd::floatToFp8e4m3(-0.0f), 0x80);
}

// Brute force: the nearest finite code of x's sign, ties to the even code; +-448 beyond.
int fp8Nearest(float x) {
  const int sign = std::signbit(x) ? 0x80 : 0;
  const double ax = std::fabs(static_cast<double>(x));
  int best = 0;
  double best_err = INFINITY;
  for (int c = 0; c <= 0x7e; ++c) {
    const double err = std::fabs(ax - fp8Spec(c));
    if (err < best_err || (err == best_err && c % 2 == 0)) {
      best = c;
      best_err = err;
    }
  }
  return sign | best;
}

TEST(Fp8, MatchesBruteForceNearestOnRandomFloats) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> mant(-2.0f, 2.0f);
  std::uniform_int_distribution<int> exp(-14, 10);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::ldexp(mant(rng), exp(rng));
    ASSERT_EQ(hd::floatToFp8e4m3(x), fp8Nearest(x)) << x;
  }
}

// float16 / bfloat16: reduce.h's conversions are fp8.h's hd:: functions, tested in reduce_test.cc
// against the compiler's _Float16 on every pattern and 200,000 floats, and bfloat16 ties.

// --- types and shapes ---

TEST(KvTypes, SizesNamesAndBytes) {
  EXPECT_EQ(kvDataTypeSize(KvDataType::kFloat16), 2U);
  EXPECT_EQ(kvDataTypeSize(KvDataType::kBFloat16), 2U);
  EXPECT_EQ(kvDataTypeSize(KvDataType::kFloat32), 4U);
  EXPECT_EQ(kvDataTypeSize(KvDataType::kFp8E4M3), 1U);
  for (KvDataType t : kAllKvDataTypes) {
    auto parsed = parseKvDataType(kvDataTypeName(t));
    ASSERT_TRUE(parsed.ok()) << kvDataTypeName(t);
    EXPECT_EQ(*parsed, t);
  }
  EXPECT_EQ(*parseKvDataType("fp8"), KvDataType::kFp8E4M3);
  EXPECT_EQ(*parseKvDataType("bf16"), KvDataType::kBFloat16);
  EXPECT_EQ(parseKvDataType("int8").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(isKvInputType(KvDataType::kFp8E4M3));
  const KvCacheShape shape{100, 16, 8, 128, KvDataType::kBFloat16};
  EXPECT_EQ(kvCacheSlots(shape), 1600);
  EXPECT_EQ(kvTokenElements(shape), 1024);
  EXPECT_EQ(kvBlockBytes(shape), 16U * 8 * 128 * 2);
  EXPECT_EQ(kvCacheBytes(shape), 100U * 16 * 8 * 128 * 2);
  EXPECT_TRUE(validateKvCacheShape(shape).ok());
  KvCacheShape bad = shape;
  bad.head_dim = 0;
  EXPECT_EQ(validateKvCacheShape(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(validateKvCacheShape(bad).message().find("head_dim"), absl::string_view::npos);
}

// --- reshapeAndCache ---

// A fused [tokens][q | k | v] tensor of `in` values, with key and value views into it.
struct ReshapeProblem {
  KvCacheShape cache;
  KvDataType in = KvDataType::kFloat16;
  int64_t num_tokens = 0;
  int64_t stride = 0;  // elements per token of the fused tensor
  std::vector<uint8_t> qkv;
  std::vector<int64_t> slots;
  std::vector<uint8_t> key_cache;
  std::vector<uint8_t> value_cache;
  float k_scale = 1.0f;
  float v_scale = 1.0f;

  int64_t keyOffset() const { return 2 * kvTokenElements(cache); }  // after q (2x kv heads)
  int64_t valueOffset() const { return 3 * kvTokenElements(cache); }
  ReshapeAndCacheArgs args() {
    ReshapeAndCacheArgs a;
    const std::size_t es = kvDataTypeSize(in);
    a.key = qkv.data() + static_cast<std::size_t>(keyOffset()) * es;
    a.value = qkv.data() + static_cast<std::size_t>(valueOffset()) * es;
    a.num_tokens = num_tokens;
    a.key_stride = stride;
    a.value_stride = stride;
    a.input_type = in;
    a.slot_mapping = slots.data();
    a.key_cache = key_cache.data();
    a.value_cache = value_cache.data();
    a.cache = cache;
    a.k_scale = k_scale;
    a.v_scale = v_scale;
    return a;
  }
};

ReshapeProblem makeReshapeProblem(KvDataType in, KvDataType cache_type, uint32_t seed) {
  std::mt19937 rng(seed);
  ReshapeProblem p;
  p.cache = KvCacheShape{7, 4, 2, 24, cache_type};
  p.in = in;
  p.num_tokens = 13;
  p.stride = 4 * kvTokenElements(p.cache);
  p.k_scale = cache_type == KvDataType::kFp8E4M3 ? 0.02f : 1.0f;
  p.v_scale = cache_type == KvDataType::kFp8E4M3 ? 0.5f : 1.0f;
  p.qkv.resize(static_cast<std::size_t>(p.num_tokens * p.stride) * kvDataTypeSize(in));
  std::uniform_real_distribution<float> value(-8.0f, 8.0f);
  for (int64_t i = 0; i < p.num_tokens * p.stride; ++i) {
    testing::setElem(in, p.qkv.data(), i, value(rng));
  }
  // Distinct slots in random order, three tokens skipped as padding.
  std::vector<int64_t> all(static_cast<std::size_t>(kvCacheSlots(p.cache)));
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  std::shuffle(all.begin(), all.end(), rng);
  p.slots.assign(all.begin(), all.begin() + p.num_tokens);
  p.slots[1] = -1;
  p.slots[6] = -1;
  p.slots[12] = -7;
  p.key_cache.assign(kvCacheBytes(p.cache), 0xab);
  p.value_cache.assign(kvCacheBytes(p.cache), 0xcd);
  return p;
}

// The bytes reshapeAndCache must store for element `i` of the fused tensor: the same bits for the
// same type, reduce.h's rounding otherwise, fp8(x / scale) for fp8.
void expectedCacheElem(const ReshapeProblem& p, int64_t i, float scale, uint8_t* dst) {
  const std::size_t in_size = kvDataTypeSize(p.in);
  if (p.in == p.cache.cache_type) {
    std::memcpy(dst, p.qkv.data() + static_cast<std::size_t>(i) * in_size, in_size);
    return;
  }
  const auto x = static_cast<float>(testing::getElem(p.in, p.qkv.data(), i));
  testing::setElem(p.cache.cache_type, dst, 0,
                   p.cache.cache_type == KvDataType::kFp8E4M3 ? x / scale : x);
}

TEST(ReshapeAndCache, EveryTypeCombinationWritesItsSlotsOnly) {
  for (KvDataType in : {KvDataType::kFloat16, KvDataType::kBFloat16, KvDataType::kFloat32}) {
    for (KvDataType cache : kAllKvDataTypes) {
      ReshapeProblem p = makeReshapeProblem(in, cache, 17);
      std::vector<uint8_t> want_k = p.key_cache;
      std::vector<uint8_t> want_v = p.value_cache;
      const int64_t row = kvTokenElements(p.cache);
      const std::size_t es = kvDataTypeSize(cache);
      for (int64_t t = 0; t < p.num_tokens; ++t) {
        const int64_t slot = p.slots[static_cast<std::size_t>(t)];
        if (slot < 0) continue;
        for (int64_t e = 0; e < row; ++e) {
          const auto at = static_cast<std::size_t>(slot * row + e) * es;
          expectedCacheElem(p, t * p.stride + p.keyOffset() + e, p.k_scale, &want_k[at]);
          expectedCacheElem(p, t * p.stride + p.valueOffset() + e, p.v_scale, &want_v[at]);
        }
      }
      ASSERT_TRUE(reshapeAndCacheHost(p.args()).ok());
      EXPECT_EQ(p.key_cache, want_k) << kvDataTypeName(in) << " -> " << kvDataTypeName(cache);
      EXPECT_EQ(p.value_cache, want_v) << kvDataTypeName(in) << " -> " << kvDataTypeName(cache);
    }
  }
}

TEST(ReshapeAndCache, DenseInputsWithDefaultStrides) {
  const KvCacheShape cache{4, 2, 3, 8, KvDataType::kFloat32};
  std::vector<float> key(std::size_t{2} * 24);
  std::vector<float> value(std::size_t{2} * 24);
  for (std::size_t i = 0; i < key.size(); ++i) {
    key[i] = static_cast<float>(i);
    value[i] = -static_cast<float>(i);
  }
  std::vector<float> kc(static_cast<std::size_t>(kvCacheSlots(cache) * 24), 0.5f);
  std::vector<float> vc(kc.size(), 0.5f);
  const std::vector<int64_t> slots = {5, 2};
  ReshapeAndCacheArgs a;
  a.key = key.data();
  a.value = value.data();
  a.num_tokens = 2;
  a.input_type = KvDataType::kFloat32;
  a.slot_mapping = slots.data();
  a.key_cache = kc.data();
  a.value_cache = vc.data();
  a.cache = cache;
  ASSERT_TRUE(reshapeAndCacheHost(a).ok());
  for (int e = 0; e < 24; ++e) {
    EXPECT_EQ(kc[static_cast<std::size_t>(5 * 24 + e)], static_cast<float>(e));
    EXPECT_EQ(kc[static_cast<std::size_t>(2 * 24 + e)], static_cast<float>(24 + e));
    EXPECT_EQ(vc[static_cast<std::size_t>(2 * 24 + e)], -static_cast<float>(24 + e));
    EXPECT_EQ(kc[static_cast<std::size_t>(3 * 24 + e)], 0.5f);
  }
}

TEST(ReshapeAndCache, OutOfRangeSlotIsRejectedAndNothingIsWritten) {
  for (int64_t bad : {int64_t{28}, int64_t{1} << 40}) {  // 28 = 7 blocks * 4: one past the end
    ReshapeProblem p = makeReshapeProblem(KvDataType::kFloat16, KvDataType::kFp8E4M3, 2);
    p.slots[9] = bad;
    const std::vector<uint8_t> k_before = p.key_cache;
    const std::vector<uint8_t> v_before = p.value_cache;
    const absl::Status s = reshapeAndCacheHost(p.args());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("token 9"), absl::string_view::npos) << s;
    EXPECT_NE(s.message().find(absl::StrCat("slot ", bad)), absl::string_view::npos) << s;
    EXPECT_EQ(p.key_cache, k_before);
    EXPECT_EQ(p.value_cache, v_before);
  }
}

TEST(ReshapeAndCache, BadArgumentsAreRejectedAndNothingIsWritten) {
  using Mutate = void (*)(ReshapeAndCacheArgs&);
  const Mutate cases[] = {
      [](ReshapeAndCacheArgs& a) { a.key = nullptr; },
      [](ReshapeAndCacheArgs& a) { a.value = nullptr; },
      [](ReshapeAndCacheArgs& a) { a.slot_mapping = nullptr; },
      [](ReshapeAndCacheArgs& a) { a.key_cache = nullptr; },
      [](ReshapeAndCacheArgs& a) { a.value_cache = nullptr; },
      [](ReshapeAndCacheArgs& a) { a.num_tokens = -1; },
      [](ReshapeAndCacheArgs& a) { a.cache.num_blocks = 0; },
      [](ReshapeAndCacheArgs& a) { a.cache.block_size = -4; },
      [](ReshapeAndCacheArgs& a) { a.cache.num_kv_heads = 0; },
      [](ReshapeAndCacheArgs& a) { a.cache.head_dim = 0; },
      [](ReshapeAndCacheArgs& a) { a.key_stride = a.cache.head_dim; },  // shorter than a row
      [](ReshapeAndCacheArgs& a) { a.value_stride = 1; },
      [](ReshapeAndCacheArgs& a) { a.input_type = KvDataType::kFp8E4M3; },
      [](ReshapeAndCacheArgs& a) { a.k_scale = 0.0f; },
      [](ReshapeAndCacheArgs& a) { a.v_scale = std::nanf(""); },
  };
  int i = 0;
  for (Mutate mutate : cases) {
    ReshapeProblem p = makeReshapeProblem(KvDataType::kBFloat16, KvDataType::kFp8E4M3, 4);
    const std::vector<uint8_t> k_before = p.key_cache;
    const std::vector<uint8_t> v_before = p.value_cache;
    ReshapeAndCacheArgs a = p.args();
    mutate(a);
    EXPECT_EQ(reshapeAndCacheHost(a).code(), absl::StatusCode::kInvalidArgument) << "case " << i;
    EXPECT_EQ(p.key_cache, k_before) << "case " << i;
    EXPECT_EQ(p.value_cache, v_before) << "case " << i;
    ++i;
  }
}

// --- pagedDecodeAttention ---

struct AttentionParam {
  int32_t num_heads;
  int32_t num_kv_heads;
  int32_t head_dim;
  KvDataType io;
  KvDataType cache;
};

class PagedAttentionHost : public ::testing::TestWithParam<AttentionParam> {};

TEST_P(PagedAttentionHost, MatchesFloat64Reference) {
  const AttentionParam& prm = GetParam();
  AttentionConfig c;
  c.num_heads = prm.num_heads;
  c.num_kv_heads = prm.num_kv_heads;
  c.head_dim = prm.head_dim;
  c.io_type = prm.io;
  c.cache_type = prm.cache;
  c.seed = static_cast<uint32_t>(prm.num_heads * 1000 + prm.head_dim);
  const AttentionProblem p = testing::makeAttentionProblem(c);
  std::vector<uint8_t> out(static_cast<std::size_t>(p.outElements()) * kvDataTypeSize(c.io_type),
                           0xee);
  ASSERT_TRUE(pagedDecodeAttentionHost(p.args(out.data())).ok());
  const double worst =
      testing::expectNear(p, out, testing::naiveAttention(p), testing::describe(c));
  RecordProperty("max_abs_error", absl::StrCat(worst));
}

std::vector<AttentionParam> attentionParams() {
  std::vector<AttentionParam> params;
  const int32_t heads[][2] = {{4, 4}, {8, 2}, {16, 2}, {8, 1}};  // GQA 1, 4, 8; MQA
  for (const auto& h : heads) {
    for (int32_t hd : {64, 128, 80}) {
      for (KvDataType io : {KvDataType::kFloat32, KvDataType::kFloat16, KvDataType::kBFloat16}) {
        params.push_back({h[0], h[1], hd, io, io});
        params.push_back({h[0], h[1], hd, io, KvDataType::kFp8E4M3});
      }
    }
  }
  params.push_back({8, 2, 128, KvDataType::kFloat16, KvDataType::kFloat32});
  params.push_back({8, 2, 128, KvDataType::kFloat32, KvDataType::kBFloat16});
  params.push_back({6, 2, 40, KvDataType::kFloat32, KvDataType::kFloat16});  // head_dim % 8 == 0
  params.push_back({3, 1, 13, KvDataType::kFloat32, KvDataType::kFloat32});  // any head_dim
  return params;
}

INSTANTIATE_TEST_SUITE_P(Matrix, PagedAttentionHost, ::testing::ValuesIn(attentionParams()),
                         testing::attentionParamName<AttentionParam>);

TEST(PagedAttention, ReadsEveryFp8CodeExactly) {
  const testing::Fp8CodesProblem p;
  std::vector<float> out(256);
  ASSERT_TRUE(pagedDecodeAttentionHost(p.args(out.data())).ok());
  testing::expectEveryFp8Code(out, p.args(nullptr).v_scale);
}

TEST(PagedAttention, FusedQueryStrideDefaultMaxSeqLenAndOtherBlockSizes) {
  for (int32_t block_size : {1, 32}) {
    AttentionConfig c;
    c.block_size = block_size;
    c.query_stride = int64_t{3} * c.num_heads * c.head_dim;  // [seqs][q | k | v]
    c.seq_lens = {33, 0, 64, 5};
    AttentionProblem p = testing::makeAttentionProblem(c);
    std::vector<uint8_t> out(static_cast<std::size_t>(p.outElements()) * 2);
    PagedAttentionArgs a = p.args(out.data());
    a.max_seq_len = 0;  // the table's capacity
    ASSERT_TRUE(pagedDecodeAttentionHost(a).ok());
    testing::expectNear(p, out, testing::naiveAttention(p), testing::describe(c));
  }
}

TEST(PagedAttention, LargeLogitsStayFinite) {
  AttentionConfig c;
  c.io_type = KvDataType::kFloat32;
  c.cache_type = KvDataType::kFloat32;
  c.value_range = 4.0f;  // |scale * q.k| up to ~180: exp() would overflow without the max
  c.seq_lens = {700, 3};
  AttentionProblem p = testing::makeAttentionProblem(c);
  std::vector<uint8_t> out(static_cast<std::size_t>(p.outElements()) * 4);
  ASSERT_TRUE(pagedDecodeAttentionHost(p.args(out.data())).ok());
  const std::vector<double> ref = testing::naiveAttention(p);
  for (int64_t i = 0; i < p.outElements(); ++i) {
    const double got = testing::getElem(c.io_type, out.data(), i);
    ASSERT_TRUE(std::isfinite(got)) << i;
    // Peaked softmax: a logit's float error e moves its weight by e relative; logits of ~100
    // carry errors ~1e-5.
    EXPECT_NEAR(got, ref[static_cast<std::size_t>(i)], 2e-4) << i;
  }
}

TEST(PagedAttention, BadArgumentsAreRejectedAndNothingIsWritten) {
  AttentionConfig c;
  c.seq_lens = {20, 3};
  const AttentionProblem p = testing::makeAttentionProblem(c);
  std::vector<int32_t> seq_lens = c.seq_lens;
  std::vector<int32_t> tables = p.block_tables;
  using Mutate = void (*)(PagedAttentionArgs&);
  const Mutate cases[] = {
      [](PagedAttentionArgs& a) { a.out = nullptr; },
      [](PagedAttentionArgs& a) { a.query = nullptr; },
      [](PagedAttentionArgs& a) { a.key_cache = nullptr; },
      [](PagedAttentionArgs& a) { a.value_cache = nullptr; },
      [](PagedAttentionArgs& a) { a.block_tables = nullptr; },
      [](PagedAttentionArgs& a) { a.seq_lens = nullptr; },
      [](PagedAttentionArgs& a) { a.num_seqs = -1; },
      [](PagedAttentionArgs& a) { a.num_heads = 7; },  // not a multiple of 2 kv heads
      [](PagedAttentionArgs& a) { a.num_heads = 0; },
      [](PagedAttentionArgs& a) { a.io_type = KvDataType::kFp8E4M3; },
      [](PagedAttentionArgs& a) { a.cache.head_dim = -1; },
      [](PagedAttentionArgs& a) { a.cache.block_size = 0; },
      [](PagedAttentionArgs& a) { a.query_stride = 5; },
      [](PagedAttentionArgs& a) { a.max_blocks_per_seq = 0; },
      [](PagedAttentionArgs& a) { a.max_seq_len = -2; },
      [](PagedAttentionArgs& a) { a.max_seq_len = 19; },  // below seq_lens[0] = 20
      [](PagedAttentionArgs& a) { a.scale = INFINITY; },
      [](PagedAttentionArgs& a) { a.k_scale = -1.0f; },
  };
  std::vector<uint8_t> out(static_cast<std::size_t>(p.outElements()) * 2, 0x5a);
  const std::vector<uint8_t> before = out;
  int i = 0;
  for (Mutate mutate : cases) {
    PagedAttentionArgs a = p.args(out.data());
    mutate(a);
    EXPECT_EQ(pagedDecodeAttentionHost(a).code(), absl::StatusCode::kInvalidArgument)
        << "case " << i++;
  }
  // Sequence lengths and block ids the sequences use.
  PagedAttentionArgs a = p.args(out.data());
  a.seq_lens = seq_lens.data();
  a.block_tables = tables.data();
  seq_lens[1] = -1;
  EXPECT_EQ(pagedDecodeAttentionHost(a).code(), absl::StatusCode::kInvalidArgument);
  seq_lens[1] = p.max_blocks_per_seq * c.block_size + 1;  // past the table
  a.max_seq_len = 0;
  EXPECT_EQ(pagedDecodeAttentionHost(a).code(), absl::StatusCode::kInvalidArgument);
  seq_lens[1] = 3;
  tables[static_cast<std::size_t>(p.max_blocks_per_seq) + 0] = p.cache.num_blocks;  // seq 1
  absl::Status s = pagedDecodeAttentionHost(a);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("block_tables[1][0]"), absl::string_view::npos) << s;
  tables[static_cast<std::size_t>(p.max_blocks_per_seq) + 0] = -3;
  EXPECT_EQ(pagedDecodeAttentionHost(a).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out, before);
  // No sequences: nothing to check beyond the shapes, nothing to do.
  a.num_seqs = 0;
  EXPECT_TRUE(pagedDecodeAttentionHost(a).ok());
}

// --- copyBlocks, swapBlocks ---

std::vector<uint8_t> randomBytes(std::size_t n, std::mt19937& rng) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

void copyBlock(std::vector<uint8_t>& dst, int32_t d, const std::vector<uint8_t>& src, int32_t s,
               std::size_t block) {
  std::memcpy(dst.data() + static_cast<std::size_t>(d) * block,
              src.data() + static_cast<std::size_t>(s) * block, block);
}

TEST(MergeBlockRuns, MergesConsecutivePairsOnly) {
  const std::vector<BlockPair> pairs = {{3, 10},  {4, 11}, {5, 12}, {9, 13}, {10, 15},
                                        {11, 16}, {0, 0},  {1, 1},  {1, 2},  {7, 5}};
  const std::vector<BlockRun> runs =
      mergeBlockRuns(pairs.data(), static_cast<int32_t>(pairs.size()));
  ASSERT_EQ(runs.size(), 6U);
  EXPECT_EQ(runs[0].src, 3);
  EXPECT_EQ(runs[0].dst, 10);
  EXPECT_EQ(runs[0].count, 3);
  EXPECT_EQ(runs[1].src, 9);
  EXPECT_EQ(runs[1].count, 1);
  EXPECT_EQ(runs[2].src, 10);  // source follows the last run's, destination does not
  EXPECT_EQ(runs[2].dst, 15);
  EXPECT_EQ(runs[2].count, 2);
  EXPECT_EQ(runs[3].count, 2);  // (0, 0), (1, 1)
  EXPECT_EQ(runs[4].src, 1);    // destination consecutive, source not
  EXPECT_EQ(runs[4].dst, 2);
  EXPECT_EQ(runs[5].src, 7);
  EXPECT_TRUE(mergeBlockRuns(nullptr, 0).empty());
}

TEST(CopyBlocks, CopiesEveryPairInEveryCache) {
  std::mt19937 rng(9);
  const KvCacheShape shape{12, 4, 2, 8, KvDataType::kBFloat16};
  const std::size_t block = kvBlockBytes(shape);
  std::vector<std::vector<uint8_t>> caches;
  caches.reserve(4);
  for (int i = 0; i < 4; ++i) caches.push_back(randomBytes(kvCacheBytes(shape), rng));
  std::vector<std::vector<uint8_t>> want = caches;
  // A run of three, a shared source (copy-on-write forks), a lone pair.
  const std::vector<BlockPair> pairs = {{0, 5}, {1, 6}, {2, 7}, {3, 8}, {3, 9}, {11, 4}};
  for (auto& w : want) {
    for (BlockPair p : pairs) copyBlock(w, p.dst, w, p.src, block);
  }
  std::vector<void*> ptrs;
  ptrs.reserve(caches.size());
  for (auto& c : caches) ptrs.push_back(c.data());
  ASSERT_TRUE(copyBlocksHost(ptrs.data(), 4, shape, pairs.data(), 6).ok());
  EXPECT_EQ(caches, want);
}

TEST(CopyBlocks, BadPairsAreRejectedAndNothingIsWritten) {
  std::mt19937 rng(10);
  const KvCacheShape shape{8, 2, 1, 8, KvDataType::kFloat16};
  std::vector<uint8_t> cache = randomBytes(kvCacheBytes(shape), rng);
  const std::vector<uint8_t> before = cache;
  void* ptrs[] = {cache.data()};
  const std::vector<std::vector<BlockPair>> bad = {
      {{0, 1}, {2, 8}},  // dst out of range
      {{-1, 1}},         // src out of range
      {{0, 1}, {2, 1}},  // dst twice
      {{0, 1}, {1, 2}},  // 1 both a destination and a source
      {{3, 3}},          // a block onto itself
  };
  for (const auto& pairs : bad) {
    EXPECT_EQ(
        copyBlocksHost(ptrs, 1, shape, pairs.data(), static_cast<int32_t>(pairs.size())).code(),
        absl::StatusCode::kInvalidArgument)
        << pairs.size();
  }
  const BlockPair ok[] = {{0, 1}};
  void* null_ptrs[] = {cache.data(), nullptr};
  EXPECT_EQ(copyBlocksHost(null_ptrs, 2, shape, ok, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(copyBlocksHost(ptrs, 1, shape, nullptr, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(copyBlocksHost(ptrs, -1, shape, ok, 1).code(), absl::StatusCode::kInvalidArgument);
  KvCacheShape zero = shape;
  zero.num_kv_heads = 0;
  EXPECT_EQ(copyBlocksHost(ptrs, 1, zero, ok, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache, before);
  EXPECT_TRUE(copyBlocksHost(ptrs, 1, shape, nullptr, 0).ok());  // nothing to copy
}

TEST(SwapBlocks, CopiesRunsBetweenCachesOfDifferentSizes) {
  std::mt19937 rng(12);
  const KvCacheShape device{6, 4, 2, 16, KvDataType::kFp8E4M3};
  KvCacheShape host = device;
  host.num_blocks = 20;
  const std::size_t block = kvBlockBytes(device);
  std::vector<uint8_t> src = randomBytes(kvCacheBytes(host), rng);
  std::vector<uint8_t> dst = randomBytes(kvCacheBytes(device), rng);
  // Swap in: a run of three (merged into one copy), then two single blocks.
  const std::vector<BlockPair> pairs = {{10, 2}, {11, 3}, {12, 4}, {19, 0}, {0, 5}};
  std::vector<uint8_t> want = dst;
  for (BlockPair p : pairs) copyBlock(want, p.dst, src, p.src, block);
  ASSERT_TRUE(swapBlocksHost(src.data(), host, dst.data(), device, pairs.data(), 5).ok());
  EXPECT_EQ(dst, want);
  // And back out.
  const std::vector<BlockPair> out_pairs = {{2, 7}, {3, 8}};
  std::vector<uint8_t> want_src = src;
  for (BlockPair p : out_pairs) copyBlock(want_src, p.dst, dst, p.src, block);
  ASSERT_TRUE(swapBlocksHost(dst.data(), device, src.data(), host, out_pairs.data(), 2).ok());
  EXPECT_EQ(src, want_src);
}

TEST(SwapBlocks, BadArgumentsAreRejectedAndNothingIsWritten) {
  std::mt19937 rng(13);
  const KvCacheShape device{6, 4, 2, 16, KvDataType::kFloat16};
  KvCacheShape host = device;
  host.num_blocks = 20;
  std::vector<uint8_t> src = randomBytes(kvCacheBytes(host), rng);
  std::vector<uint8_t> dst = randomBytes(kvCacheBytes(device), rng);
  const std::vector<uint8_t> before = dst;
  const BlockPair dst_out_of_range[] = {{1, 1}, {15, 6}};  // 15 fits the source, 6 not the dest
  EXPECT_EQ(swapBlocksHost(src.data(), host, dst.data(), device, dst_out_of_range, 2).code(),
            absl::StatusCode::kInvalidArgument);
  const BlockPair src_out_of_range[] = {{20, 0}};
  EXPECT_EQ(swapBlocksHost(src.data(), host, dst.data(), device, src_out_of_range, 1).code(),
            absl::StatusCode::kInvalidArgument);
  KvCacheShape other = host;
  other.head_dim = 8;
  const BlockPair ok[] = {{0, 0}};
  EXPECT_EQ(swapBlocksHost(src.data(), other, dst.data(), device, ok, 1).code(),
            absl::StatusCode::kInvalidArgument);
  other = host;
  other.cache_type = KvDataType::kBFloat16;
  EXPECT_EQ(swapBlocksHost(src.data(), other, dst.data(), device, ok, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(swapBlocksHost(nullptr, host, dst.data(), device, ok, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(swapBlocksHost(src.data(), host, dst.data(), device, nullptr, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dst, before);
}

}  // namespace
}  // namespace gangway::kernels
