// Host paged decode attention, written once and compiled twice (attention_host_base.cc for any
// x86-64, attention_host_avx2.cc with AVX2/F16C/FMA), like the reductions. Include with
// GANGWAY_ATTENTION_NS defined to the namespace of the variant. Arguments are checked by the
// caller (attention_host.cc).
//
// Per sequence: the queries are converted to float once (times scale * k_scale); one pass over the
// sequence's K rows, block by block in table order, converts each token's row (all kv heads,
// contiguous in memory) to float once and computes the scores of every kv head's query heads
// together; a max-subtracted softmax normalises each head's scores; one pass over the V rows
// accumulates every head's output the same way. The inner loops work on 8 floats at a time (GCC
// vector extensions: one AVX register, or two SSE registers in the base variant).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#endif

#include "gangway/kernels/fp8.h"
#include "gangway/kernels/kv_cache.h"

#include "kv_cache_args.h"
#include "kv_elem.h"

namespace gangway::kernels::GANGWAY_ATTENTION_NS {
namespace {

using V8 = float __attribute__((vector_size(32)));
// The same, at any float's alignment, allowed to alias floats: plain unaligned vector loads and
// stores (a memcpy into a V8 array can become two 16-byte stack stores and a stalling reload).
using V8Unaligned = float __attribute__((vector_size(32), aligned(4), may_alias));

// By reference: V8 by value would change the ABI between the two variants (-Wpsabi).
inline void load8(V8& v, const float* p) { v = *reinterpret_cast<const V8Unaligned*>(p); }
inline void store8(float* p, const V8& v) { *reinterpret_cast<V8Unaligned*>(p) = v; }
inline float sum8(const V8& v) {
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

// n elements of a cache or input row -> float.
template <KvDataType kType>
void toFloat(const detail::KvStorage<kType>* src, float* dst, int64_t n) {
  int64_t i = 0;
  if constexpr (kType == KvDataType::kFloat32) {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
    return;
  } else if constexpr (kType == KvDataType::kFp8E4M3) {
    static const std::vector<float> kTable = [] {
      std::vector<float> t(256);
      for (int c = 0; c < 256; ++c) t[c] = hd::fp8e4m3ToFloat(static_cast<uint8_t>(c));
      return t;
    }();
    const float* lut = kTable.data();
#if defined(__AVX2__) && defined(__F16C__)
    // e4m3 bits moved into float16's places (sign to bit 15, exponent and mantissa up 7) are a
    // float16 equal to the value / 2^8, subnormals included; 0x7F / 0xFF become NaN.
    const __m128i magnitude = _mm_set1_epi16(0x7f);
    const __m128i sign = _mm_set1_epi16(0x80);
    const __m256 nan = _mm256_set1_ps(std::nanf(""));
    for (; i + 8 <= n; i += 8) {
      const __m128i x =
          _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + i)));
      const __m128i em = _mm_and_si128(x, magnitude);
      const __m128i h =
          _mm_or_si128(_mm_slli_epi16(em, 7), _mm_slli_epi16(_mm_and_si128(x, sign), 8));
      const __m256 f = _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(256.0f));
      const __m256 is_nan =
          _mm256_castsi256_ps(_mm256_cvtepi16_epi32(_mm_cmpeq_epi16(em, magnitude)));
      _mm256_storeu_ps(dst + i, _mm256_blendv_ps(f, nan, is_nan));
    }
#endif
    for (; i < n; ++i) dst[i] = lut[src[i]];
  } else {
#if defined(__AVX2__) && defined(__F16C__)
    for (; i + 8 <= n; i += 8) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
      if constexpr (kType == KvDataType::kFloat16) {
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(v));
      } else {
        _mm256_storeu_ps(dst + i,
                         _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16)));
      }
    }
#endif
    for (; i < n; ++i) dst[i] = detail::KvElem<kType>::toFloat(src[i]);
  }
}

// out[h * out_stride + r] = q[h] . k[r] for kH query rows (head_dim apart) and kR key rows:
// kH * kR independent accumulation chains (at most 8, so that they stay in registers).
template <int kH, int kR>
void dots(const float* q, int64_t head_dim, const float* const* k, float* out, int64_t out_stride) {
  V8 acc[kH][kR] = {};
  int64_t i = 0;
  for (; i + 8 <= head_dim; i += 8) {
    V8 kv[kR];
    for (int r = 0; r < kR; ++r) load8(kv[r], k[r] + i);
    for (int h = 0; h < kH; ++h) {
      V8 qv;
      load8(qv, q + h * head_dim + i);
      for (int r = 0; r < kR; ++r) acc[h][r] += qv * kv[r];
    }
  }
  for (int h = 0; h < kH; ++h) {
    for (int r = 0; r < kR; ++r) {
      float s = sum8(acc[h][r]);
      for (int64_t j = i; j < head_dim; ++j) s += q[h * head_dim + j] * k[r][j];
      out[h * out_stride + r] = s;
    }
  }
}

// acc[h] += sum_r p[h * p_stride + r] * v[r] for kH output rows (head_dim apart) and kR value
// rows: each accumulator is loaded and stored once per kR rows.
template <int kH, int kR>
void axpys(float* acc, int64_t head_dim, const float* p, int64_t p_stride, const float* const* v) {
  float w[kH][kR];
  for (int h = 0; h < kH; ++h) {
    for (int r = 0; r < kR; ++r) w[h][r] = p[h * p_stride + r];
  }
  int64_t i = 0;
  for (; i + 8 <= head_dim; i += 8) {
    V8 vv[kR];
    for (int r = 0; r < kR; ++r) load8(vv[r], v[r] + i);
    for (int h = 0; h < kH; ++h) {
      float* a = acc + h * head_dim + i;
      V8 av;
      load8(av, a);
      for (int r = 0; r < kR; ++r) av += w[h][r] * vv[r];
      store8(a, av);
    }
  }
  for (; i < head_dim; ++i) {
    for (int h = 0; h < kH; ++h) {
      for (int r = 0; r < kR; ++r) acc[h * head_dim + i] += w[h][r] * v[r][i];
    }
  }
}

// Key rows per dots call for kH heads: enough chains without running out of registers.
constexpr int rowsFor(int heads) { return heads <= 2 ? 4 : heads <= 4 ? 2 : 1; }

template <int kH>
void dotsRows(const float* q, int64_t head_dim, const float* const* k, int rows, float* out,
              int64_t out_stride) {
  constexpr int kR = rowsFor(kH);
  int r = 0;
  for (; r + kR <= rows; r += kR) dots<kH, kR>(q, head_dim, k + r, out + r, out_stride);
  for (; r < rows; ++r) dots<kH, 1>(q, head_dim, k + r, out + r, out_stride);
}

// Scores of `heads` query rows against `rows` (<= 4) key rows, up to 8 heads at a time.
void dotsAll(const float* q, int64_t heads, int64_t head_dim, const float* const* k, int rows,
             float* out, int64_t out_stride) {
  for (int64_t h0 = 0; h0 < heads; h0 += 8) {
    const float* qh = q + h0 * head_dim;
    float* o = out + h0 * out_stride;
    switch (std::min<int64_t>(8, heads - h0)) {
      case 8:
        dotsRows<8>(qh, head_dim, k, rows, o, out_stride);
        break;
      case 7:
        dotsRows<7>(qh, head_dim, k, rows, o, out_stride);
        break;
      case 6:
        dotsRows<6>(qh, head_dim, k, rows, o, out_stride);
        break;
      case 5:
        dotsRows<5>(qh, head_dim, k, rows, o, out_stride);
        break;
      case 4:
        dotsRows<4>(qh, head_dim, k, rows, o, out_stride);
        break;
      case 3:
        dotsRows<3>(qh, head_dim, k, rows, o, out_stride);
        break;
      case 2:
        dotsRows<2>(qh, head_dim, k, rows, o, out_stride);
        break;
      default:
        dotsRows<1>(qh, head_dim, k, rows, o, out_stride);
        break;
    }
  }
}

template <int kH>
void axpysRows(float* acc, int64_t head_dim, const float* p, int64_t p_stride,
               const float* const* v, int rows) {
  if (rows == 4) return axpys<kH, 4>(acc, head_dim, p, p_stride, v);
  for (int r = 0; r < rows; ++r) axpys<kH, 1>(acc, head_dim, p + r, p_stride, v + r);
}

// Weighted value rows (<= 4) into `heads` output rows, up to 8 heads at a time.
void axpysAll(float* acc, int64_t heads, int64_t head_dim, const float* p, int64_t p_stride,
              const float* const* v, int rows) {
  for (int64_t h0 = 0; h0 < heads; h0 += 8) {
    float* a = acc + h0 * head_dim;
    const float* ph = p + h0 * p_stride;
    switch (std::min<int64_t>(8, heads - h0)) {
      case 8:
        axpysRows<8>(a, head_dim, ph, p_stride, v, rows);
        break;
      case 7:
        axpysRows<7>(a, head_dim, ph, p_stride, v, rows);
        break;
      case 6:
        axpysRows<6>(a, head_dim, ph, p_stride, v, rows);
        break;
      case 5:
        axpysRows<5>(a, head_dim, ph, p_stride, v, rows);
        break;
      case 4:
        axpysRows<4>(a, head_dim, ph, p_stride, v, rows);
        break;
      case 3:
        axpysRows<3>(a, head_dim, ph, p_stride, v, rows);
        break;
      case 2:
        axpysRows<2>(a, head_dim, ph, p_stride, v, rows);
        break;
      default:
        axpysRows<1>(a, head_dim, ph, p_stride, v, rows);
        break;
    }
  }
}

template <KvDataType kIo>
void storeOut(const float* src, void* out, int64_t offset, int64_t n) {
  auto* o = static_cast<detail::KvStorage<kIo>*>(out) + offset;
  for (int64_t i = 0; i < n; ++i) o[i] = detail::KvElem<kIo>::fromFloat(src[i]);
}

template <KvDataType kIo, KvDataType kCache>
void run(const PagedAttentionArgs& a) {
  using Io = detail::KvStorage<kIo>;
  using Cache = detail::KvStorage<kCache>;
  const int64_t hd = a.cache.head_dim;
  const int64_t heads = a.num_heads;
  const int64_t kv_heads = a.cache.num_kv_heads;
  const int64_t group = heads / kv_heads;
  const int64_t bs = a.cache.block_size;
  const int64_t row = kvTokenElements(a.cache);  // one token's K (or V) row: all kv heads
  const int64_t q_stride = detail::strideOr(a.query_stride, heads * hd);
  const auto* query = static_cast<const Io*>(a.query);
  const auto* kc = static_cast<const Cache*>(a.key_cache);
  const auto* vc = static_cast<const Cache*>(a.value_cache);
  const float q_mul = a.scale * (kCache == KvDataType::kFp8E4M3 ? a.k_scale : 1.0f);
  const float v_mul = kCache == KvDataType::kFp8E4M3 ? a.v_scale : 1.0f;

  constexpr int kRows = 4;  // tokens per step
  std::vector<float> q(static_cast<std::size_t>(heads * hd));
  std::vector<float> acc(q.size());
  std::vector<float> rows_buf(static_cast<std::size_t>(kRows * row));
  std::vector<float> sums(static_cast<std::size_t>(heads));
  std::vector<float> scores;  // [heads][seq_len]
  // Rows of tokens [i, i + n) as float (f32 caches: the cache rows themselves), found through the
  // table; each row holds every kv head of its token, contiguous in memory.
  const float* rows[kRows];
  auto gather = [&](const Cache* cache, const int32_t* table, int64_t i, int n, int64_t len) {
    // Prefetch the rows of the step after next: a token's row is short (a few KB) and the next
    // block is anywhere, so the hardware prefetchers see little of the stream.
    for (int64_t t = i + int64_t{2} * kRows; t < std::min(len, i + int64_t{3} * kRows); ++t) {
      const auto* p = reinterpret_cast<const char*>(
          cache + (static_cast<int64_t>(table[t / bs]) * bs + t % bs) * row);
      for (int64_t b = 0; b < row * static_cast<int64_t>(sizeof(Cache)); b += 64) {
        __builtin_prefetch(p + b);
      }
    }
    for (int r = 0; r < n; ++r) {
      const int64_t t = i + r;
      const Cache* src = cache + (static_cast<int64_t>(table[t / bs]) * bs + t % bs) * row;
      if constexpr (kCache == KvDataType::kFloat32) {
        rows[r] = src;
      } else {
        float* dst = rows_buf.data() + r * row;
        toFloat<kCache>(src, dst, row);
        rows[r] = dst;
      }
    }
  };
  auto head_rows = [&](int64_t kvh, int n, const float** out) {
    for (int r = 0; r < n; ++r) out[r] = rows[r] + kvh * hd;
  };
  for (int64_t s = 0; s < a.num_seqs; ++s) {
    const int64_t len = a.seq_lens[s];
    const int32_t* table = a.block_tables + s * a.max_blocks_per_seq;
    std::fill(acc.begin(), acc.end(), 0.0f);
    if (len == 0) {
      storeOut<kIo>(acc.data(), a.out, s * heads * hd, heads * hd);
      continue;
    }
    toFloat<kIo>(query + s * q_stride, q.data(), heads * hd);
    for (float& x : q) x *= q_mul;
    scores.resize(static_cast<std::size_t>(heads * len));
    // K: kRows tokens at a time, every kv head's query heads against them.
    for (int64_t i = 0; i < len; i += kRows) {
      const int n = static_cast<int>(std::min<int64_t>(kRows, len - i));
      gather(kc, table, i, n, len);
      for (int64_t kvh = 0; kvh < kv_heads; ++kvh) {
        const float* k[kRows];
        head_rows(kvh, n, k);
        dotsAll(q.data() + kvh * group * hd, group, hd, k, n,
                &scores[static_cast<std::size_t>(kvh * group * len + i)], len);
      }
    }
    for (int64_t h = 0; h < heads; ++h) {
      float* sc = scores.data() + h * len;
      const float m = *std::max_element(sc, sc + len);
      float sum = 0.0f;
      for (int64_t i = 0; i < len; ++i) {
        sc[i] = std::exp(sc[i] - m);
        sum += sc[i];
      }
      sums[static_cast<std::size_t>(h)] = sum;
    }
    // V: the same walk, accumulating every head's output.
    for (int64_t i = 0; i < len; i += kRows) {
      const int n = static_cast<int>(std::min<int64_t>(kRows, len - i));
      gather(vc, table, i, n, len);
      for (int64_t kvh = 0; kvh < kv_heads; ++kvh) {
        const float* v[kRows];
        head_rows(kvh, n, v);
        axpysAll(acc.data() + kvh * group * hd, group, hd,
                 &scores[static_cast<std::size_t>(kvh * group * len + i)], len, v, n);
      }
    }
    for (int64_t h = 0; h < heads; ++h) {
      const float mul = v_mul / sums[static_cast<std::size_t>(h)];
      for (int64_t d = 0; d < hd; ++d) acc[static_cast<std::size_t>(h * hd + d)] *= mul;
    }
    storeOut<kIo>(acc.data(), a.out, s * heads * hd, heads * hd);
  }
}

}  // namespace

void pagedDecodeAttention(const PagedAttentionArgs& args) {
  detail::dispatchKvTypes(args.io_type, args.cache.cache_type, [&](auto io, auto cache) {
    run<decltype(io)::value, decltype(cache)::value>(args);
  });
}

}  // namespace gangway::kernels::GANGWAY_ATTENTION_NS
