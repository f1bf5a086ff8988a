// Scalar conversions between float and the KV cache's storage types, written once for host and
// device (`GW_HD`: `__host__ __device__` under nvcc, plain inline otherwise) so that both produce
// the same bits: float16 and bfloat16 (bit for bit the same as reduce.h's halfToFloat, floatToHalf,
// bfloat16ToFloat, floatToBfloat16), and fp8 e4m3.
//
// fp8 e4m3 is OCP's "E4M3FN" (the one vLLM, TensorRT-LLM and CUDA's __nv_fp8_e4m3 use): 1 sign
// bit, 4 exponent bits with bias 7, 3 mantissa bits; no infinities; 0x7F and 0xFF are NaN; the
// largest finite value is 0x7E = 448, the smallest normal 0x08 = 2^-6, the smallest subnormal
// 0x01 = 2^-9. Encoding rounds to nearest, ties to even, and saturates: finite values beyond +-448
// and +-infinity become +-448 (CUDA's __NV_SATFINITE); NaN becomes 0x7F. Decoding is exact.
#pragma once

#include <cstdint>
#include <cstring>

#ifndef GW_HD
#if defined(__CUDACC__)
#define GW_HD __host__ __device__ inline
#else
#define GW_HD inline
#endif
#endif

namespace gangway::kernels::hd {

GW_HD uint32_t floatBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u = 0;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}

GW_HD float bitsToFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f = 0;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

// float16 bit pattern -> float (exact; NaN payloads kept).
GW_HD float halfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000U) << 16;
  uint32_t exp = (h >> 10) & 0x1fU;
  uint32_t mant = h & 0x3ffU;
  if (exp == 0) {
    if (mant == 0) return bitsToFloat(sign);
    exp = 1;  // subnormal: normalise
    while ((mant & 0x400U) == 0) {
      mant <<= 1;
      --exp;
    }
    mant &= 0x3ffU;
    return bitsToFloat(sign | ((exp + 127 - 15) << 23) | (mant << 13));
  }
  if (exp == 0x1f) return bitsToFloat(sign | 0x7f800000U | (mant << 13));
  return bitsToFloat(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

// float -> float16 bit pattern, round to nearest even; overflow to infinity; NaN stays NaN (quiet).
GW_HD uint16_t floatToHalf(float f) {
  const uint32_t x = floatBits(f);
  const uint32_t sign = (x >> 16) & 0x8000U;
  const uint32_t abs = x & 0x7fffffffU;
  if (abs >= 0x7f800000U) {  // Inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00U | (abs > 0x7f800000U ? 0x200U : 0U));
  }
  if (abs >= 0x477ff000U) return static_cast<uint16_t>(sign | 0x7c00U);  // rounds to Inf
  if (abs < 0x38800000U) {                                               // subnormal half (or zero)
    if (abs < 0x33000000U) return static_cast<uint16_t>(sign);  // below half the smallest: 0
    // |f| = m * 2^(e - 150); a subnormal half is k * 2^-24, k = m >> (126 - e), rounded to
    // nearest even (k = 1024 carries into the smallest normal).
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffffU) | 0x800000U;
    const uint32_t shift = 126 - e;
    uint32_t out = m >> shift;
    const uint32_t rem = m & ((1U << shift) - 1);
    const uint32_t halfway = 1U << (shift - 1);
    if (rem > halfway || (rem == halfway && (out & 1U) != 0)) ++out;
    return static_cast<uint16_t>(sign | out);
  }
  const uint32_t rebased = abs - ((127U - 15U) << 23);  // normal: rebias, round 13 bits away
  uint32_t out = rebased >> 13;
  const uint32_t rem = rebased & 0x1fffU;
  if (rem > 0x1000U || (rem == 0x1000U && (out & 1U) != 0)) ++out;
  return static_cast<uint16_t>(sign | out);
}

GW_HD float bfloat16ToFloat(uint16_t b) { return bitsToFloat(static_cast<uint32_t>(b) << 16); }

// float -> bfloat16 bit pattern, round to nearest even; NaN stays NaN (quiet).
GW_HD uint16_t floatToBfloat16(float f) {
  uint32_t x = floatBits(f);
  if ((x & 0x7fffffffU) > 0x7f800000U) return static_cast<uint16_t>((x >> 16) | 0x40U);
  x += 0x7fffU + ((x >> 16) & 1U);
  return static_cast<uint16_t>(x >> 16);
}

inline constexpr float kFp8E4M3Max = 448.0f;
inline constexpr uint8_t kFp8E4M3NaN = 0x7f;

// fp8 e4m3 code -> float, exact. 0x7F / 0xFF decode to a quiet NaN of that sign.
GW_HD float fp8e4m3ToFloat(uint8_t c) {
  const uint32_t sign = static_cast<uint32_t>(c & 0x80U) << 24;
  const uint32_t em = c & 0x7fU;  // exponent and mantissa
  if (em == 0x7fU) return bitsToFloat(sign | 0x7fc00000U);
  if (em < 8) {  // zero or subnormal: m * 2^-9
    const float v = static_cast<float>(em) * 0x1p-9f;
    return sign != 0 ? -v : v;
  }
  // Normal: exponent e - 7 = (e + 120) - 127; shift exponent and mantissa into place together.
  return bitsToFloat(sign | ((em + (120U << 3)) << 20));
}

// float -> fp8 e4m3 code: round to nearest even, saturate to +-448 (infinities too), NaN -> 0x7F.
GW_HD uint8_t floatToFp8e4m3(float f) {
  const uint32_t x = floatBits(f);
  const uint32_t sign = (x >> 24) & 0x80U;
  const uint32_t abs = x & 0x7fffffffU;
  if (abs > 0x7f800000U) return kFp8E4M3NaN;
  if (abs >= 0x43e00000U) return static_cast<uint8_t>(sign | 0x7eU);  // >= 448 (and infinity)
  if (abs < 0x3c800000U) {  // below 2^-6: subnormal fp8 (k * 2^-9) or zero
    if (abs <= 0x3a800000U) return static_cast<uint8_t>(sign);  // <= 2^-10: ties to even 0
    // |f| = m * 2^(e - 150), 117 <= e <= 120; k = m >> (141 - e), rounded to nearest even
    // (k = 8 carries into the smallest normal, 0x08).
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffffU) | 0x800000U;
    const uint32_t shift = 141 - e;
    uint32_t out = m >> shift;
    const uint32_t rem = m & ((1U << shift) - 1);
    const uint32_t halfway = 1U << (shift - 1);
    if (rem > halfway || (rem == halfway && (out & 1U) != 0)) ++out;
    return static_cast<uint8_t>(sign | out);
  }
  // Normal: rebias the exponent (127 -> 7), round 20 mantissa bits away (a carry moves into the
  // exponent, as it should; nothing below 448 rounds past 0x7E).
  const uint32_t rebased = abs - (120U << 23);
  uint32_t out = rebased >> 20;
  const uint32_t rem = rebased & 0xfffffU;
  if (rem > 0x80000U || (rem == 0x80000U && (out & 1U) != 0)) ++out;
  return static_cast<uint8_t>(sign | out);
}

}  // namespace gangway::kernels::hd
