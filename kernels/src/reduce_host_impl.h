// The host reduction loops, written once and compiled twice (reduce_host_base.cc for any x86-64,
// reduce_host_avx2.cc with AVX2/F16C): simple element-wise loops that the compiler vectorises.
// Include with GANGWAY_REDUCE_NS defined to the namespace of the variant.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#endif

#include "gangway/kernels/reduce.h"

#include "reduce_apply.h"

namespace gangway::kernels::GANGWAY_REDUCE_NS {
namespace {

// One loop per operation, so that the operation is not a branch inside the loop.
template <typename T, ReduceOp kOp>
void loop(T* d, const T* a, const T* b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) d[i] = detail::applyOp<T>(a[i], b[i], kOp);
}

#if defined(__AVX2__) && defined(__F16C__)
// The compiler does not vectorise conversions between 16-bit floats and float: 8 at a time by
// hand. min and max keep the scalar semantics: MINPS(b, a) is (b < a ? b : a).
template <ReduceOp kOp>
inline __m256 apply8(__m256 a, __m256 b) {
  if constexpr (kOp == ReduceOp::kProd) return _mm256_mul_ps(a, b);
  if constexpr (kOp == ReduceOp::kMin) return _mm256_min_ps(b, a);
  if constexpr (kOp == ReduceOp::kMax) return _mm256_max_ps(b, a);
  return _mm256_add_ps(a, b);
}
inline __m256 loadBf16x8(const uint16_t* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
}
inline void storeBf16x8(uint16_t* p, __m256 f) {
  const __m256i x = _mm256_castps_si256(f);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i abs = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
  const __m256i nan_mask = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
  const __m256i nan = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
  const __m256i out = _mm256_blendv_epi8(rounded, nan, nan_mask);
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(out, out), 0xd8);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
}
#endif

template <ReduceOp kOp>
void loopHalf(_Float16* d, const _Float16* a, const _Float16* b, std::size_t n) {
  std::size_t i = 0;
#if defined(__AVX2__) && defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    const __m256 y = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm256_cvtps_ph(apply8<kOp>(x, y), _MM_FROUND_TO_NEAREST_INT));
  }
#endif
  for (; i < n; ++i) {
    d[i] = static_cast<_Float16>(
        detail::applyOp<float>(static_cast<float>(a[i]), static_cast<float>(b[i]), kOp));
  }
}

inline float fromBf16(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
inline uint16_t toBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  const uint32_t rounded = (x + 0x7fffU + ((x >> 16) & 1U)) >> 16;
  const uint32_t nan = (x >> 16) | 0x40U;
  return static_cast<uint16_t>((x & 0x7fffffffU) > 0x7f800000U ? nan : rounded);
}

template <ReduceOp kOp>
void loopBf16(uint16_t* d, const uint16_t* a, const uint16_t* b, std::size_t n) {
  std::size_t i = 0;
#if defined(__AVX2__) && defined(__F16C__)
  for (; i + 8 <= n; i += 8) storeBf16x8(d + i, apply8<kOp>(loadBf16x8(a + i), loadBf16x8(b + i)));
#endif
  for (; i < n; ++i) d[i] = toBf16(detail::applyOp<float>(fromBf16(a[i]), fromBf16(b[i]), kOp));
}

template <typename T>
void byOp(void* d, const void* a, const void* b, std::size_t n, ReduceOp op) {
  auto* dt = static_cast<T*>(d);
  const auto* at = static_cast<const T*>(a);
  const auto* bt = static_cast<const T*>(b);
  switch (op) {
    case ReduceOp::kProd:
      return loop<T, ReduceOp::kProd>(dt, at, bt, n);
    case ReduceOp::kMin:
      return loop<T, ReduceOp::kMin>(dt, at, bt, n);
    case ReduceOp::kMax:
      return loop<T, ReduceOp::kMax>(dt, at, bt, n);
    default:
      return loop<T, ReduceOp::kSum>(dt, at, bt, n);
  }
}

}  // namespace

void reduce(void* d, const void* a, const void* b, std::size_t n, DataType type, ReduceOp op) {
  switch (type) {
    case DataType::kInt8:
      return byOp<int8_t>(d, a, b, n, op);
    case DataType::kUint8:
      return byOp<uint8_t>(d, a, b, n, op);
    case DataType::kInt32:
      return byOp<int32_t>(d, a, b, n, op);
    case DataType::kUint32:
      return byOp<uint32_t>(d, a, b, n, op);
    case DataType::kInt64:
      return byOp<int64_t>(d, a, b, n, op);
    case DataType::kUint64:
      return byOp<uint64_t>(d, a, b, n, op);
    case DataType::kFloat32:
      return byOp<float>(d, a, b, n, op);
    case DataType::kFloat64:
      return byOp<double>(d, a, b, n, op);
    case DataType::kFloat16: {
      auto* dh = static_cast<_Float16*>(d);
      const auto* ah = static_cast<const _Float16*>(a);
      const auto* bh = static_cast<const _Float16*>(b);
      switch (op) {
        case ReduceOp::kProd:
          return loopHalf<ReduceOp::kProd>(dh, ah, bh, n);
        case ReduceOp::kMin:
          return loopHalf<ReduceOp::kMin>(dh, ah, bh, n);
        case ReduceOp::kMax:
          return loopHalf<ReduceOp::kMax>(dh, ah, bh, n);
        default:
          return loopHalf<ReduceOp::kSum>(dh, ah, bh, n);
      }
    }
    case DataType::kBFloat16: {
      auto* db = static_cast<uint16_t*>(d);
      const auto* ab = static_cast<const uint16_t*>(a);
      const auto* bb = static_cast<const uint16_t*>(b);
      switch (op) {
        case ReduceOp::kProd:
          return loopBf16<ReduceOp::kProd>(db, ab, bb, n);
        case ReduceOp::kMin:
          return loopBf16<ReduceOp::kMin>(db, ab, bb, n);
        case ReduceOp::kMax:
          return loopBf16<ReduceOp::kMax>(db, ab, bb, n);
        default:
          return loopBf16<ReduceOp::kSum>(db, ab, bb, n);
      }
    }
  }
}

}  // namespace gangway::kernels::GANGWAY_REDUCE_NS
