// Host reductions against the scalar reference, bit for bit, for every type, operation and a
// range of counts (0, 1, odd, unaligned tails); float16 and bfloat16 conversions.
#include "gangway/kernels/reduce.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace gangway::kernels {
namespace {

// Random bytes that are valid values of `type`, including negative numbers, zeros and (for
// floating types) values of both signs across many magnitudes; small integers for prod.
std::vector<unsigned char> randomBuffer(DataType type, std::size_t count, std::mt19937& rng) {
  std::vector<unsigned char> buf(count * dataTypeSize(type));
  std::uniform_real_distribution<float> real(-4.0f, 4.0f);
  std::uniform_int_distribution<int> small(-100, 100);
  for (std::size_t i = 0; i < count; ++i) {
    unsigned char* p = buf.data() + i * dataTypeSize(type);
    switch (type) {
      case DataType::kFloat32: {
        const float v = real(rng) * std::ldexp(1.0f, small(rng) / 10);
        std::memcpy(p, &v, 4);
        break;
      }
      case DataType::kFloat64: {
        const double v = static_cast<double>(real(rng)) * std::ldexp(1.0, small(rng) / 5);
        std::memcpy(p, &v, 8);
        break;
      }
      case DataType::kFloat16: {
        const uint16_t h = floatToHalf(real(rng) * std::ldexp(1.0f, small(rng) / 20));
        std::memcpy(p, &h, 2);
        break;
      }
      case DataType::kBFloat16: {
        const uint16_t b = floatToBfloat16(real(rng) * std::ldexp(1.0f, small(rng) / 5));
        std::memcpy(p, &b, 2);
        break;
      }
      default:
        for (std::size_t k = 0; k < dataTypeSize(type); ++k)
          p[k] = static_cast<unsigned char>(rng());
    }
  }
  return buf;
}

// memcmp, but defined for empty buffers (whose data() may be null).
bool sameBytes(const void* a, const void* b, std::size_t n) {
  return n == 0 || std::memcmp(a, b, n) == 0;
}

TEST(Reduce, HostMatchesReferenceBitForBit) {
  std::mt19937 rng(7);
  for (DataType type : kAllDataTypes) {
    for (ReduceOp op : kAllReduceOps) {
      for (std::size_t count : {0, 1, 2, 7, 31, 64, 1000, 4097}) {
        const auto a = randomBuffer(type, count, rng);
        const auto b = randomBuffer(type, count, rng);
        // Buffers are arrays of the type, so aligned to it; `got` starts one element in.
        const std::size_t one = dataTypeSize(type);
        std::vector<unsigned char> want(a.size() + one);
        std::vector<unsigned char> got(a.size() + one);
        reduceReference(want.data(), a.data(), b.data(), count, type, op);
        // Out of place, one element into the buffer, and in place (dst == a).
        reduceHost(got.data() + one, a.data(), b.data(), count, type, op);
        EXPECT_TRUE(sameBytes(got.data() + one, want.data(), a.size()))
            << dataTypeName(type) << " " << reduceOpName(op) << " " << count;
        std::vector<unsigned char> inplace = a;
        reduceHost(inplace.data(), inplace.data(), b.data(), count, type, op);
        EXPECT_TRUE(sameBytes(inplace.data(), want.data(), a.size()))
            << dataTypeName(type) << " " << reduceOpName(op) << " in place " << count;
      }
    }
  }
}

TEST(Reduce, KnownValues) {
  const int32_t a[] = {1, -5, 2147483647, 7};
  const int32_t b[] = {2, 3, 1, -7};
  int32_t d[4];
  reduceHost(d, a, b, 4, DataType::kInt32, ReduceOp::kSum);
  EXPECT_EQ(d[0], 3);
  EXPECT_EQ(d[1], -2);
  EXPECT_EQ(d[2], -2147483647 - 1);  // wraps, as two's complement
  reduceHost(d, a, b, 4, DataType::kInt32, ReduceOp::kMin);
  EXPECT_EQ(d[1], -5);
  reduceHost(d, a, b, 4, DataType::kInt32, ReduceOp::kMax);
  EXPECT_EQ(d[3], 7);
  const uint16_t h1[] = {floatToHalf(1.5f), floatToHalf(-2.0f)};
  const uint16_t h2[] = {floatToHalf(2.25f), floatToHalf(3.0f)};
  uint16_t hd[2];
  reduceHost(hd, h1, h2, 2, DataType::kFloat16, ReduceOp::kProd);
  EXPECT_EQ(halfToFloat(hd[0]), 3.375f);
  EXPECT_EQ(halfToFloat(hd[1]), -6.0f);
  float f[] = {9.0f, -9.0f};
  divideByHost(f, 2, DataType::kFloat32, 4);
  EXPECT_EQ(f[0], 2.25f);
  int8_t i8[] = {100, -100};
  divideByHost(i8, 2, DataType::kInt8, 200);  // more ranks than int8 holds
  EXPECT_EQ(i8[0], 0);
  int32_t i32[] = {-7, 7};
  divideByHost(i32, 2, DataType::kInt32, 2);
  EXPECT_EQ(i32[0], -3);  // truncates, as NCCL's avg
}

TEST(Reduce, HalfConversionMatchesTheCompilersFloat16) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    _Float16 x;
    std::memcpy(&x, &bits, 2);
    const float want = static_cast<float>(x);
    const float got = halfToFloat(bits);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      EXPECT_EQ(got, want) << h;
    }
  }
  std::mt19937 rng(3);
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 200000; ++i) {
    uint32_t bits = any(rng);
    if (i % 2 == 0) bits = (bits & 0x807fffffU) | ((100U + bits % 60U) << 23);  // half's range
    float f;
    std::memcpy(&f, &bits, 4);
    if (std::isnan(f)) continue;
    const _Float16 want = static_cast<_Float16>(f);
    uint16_t want_bits;
    std::memcpy(&want_bits, &want, 2);
    EXPECT_EQ(floatToHalf(f), want_bits) << f;
  }
}

TEST(Reduce, Bfloat16RoundsToNearestEven) {
  EXPECT_EQ(floatToBfloat16(1.0f), 0x3f80);
  EXPECT_EQ(bfloat16ToFloat(0x3f80), 1.0f);
  uint32_t bits = 0x3f808000U;  // exactly halfway between 0x3f80 and 0x3f81: to even
  float f;
  std::memcpy(&f, &bits, 4);
  EXPECT_EQ(floatToBfloat16(f), 0x3f80);
  bits = 0x3f818000U;  // halfway, odd below: up
  std::memcpy(&f, &bits, 4);
  EXPECT_EQ(floatToBfloat16(f), 0x3f82);
  EXPECT_TRUE(std::isnan(bfloat16ToFloat(floatToBfloat16(std::nanf("")))));
}

TEST(Reduce, Names) {
  for (DataType t : kAllDataTypes) EXPECT_EQ(*parseDataType(dataTypeName(t)), t);
  EXPECT_EQ(*parseDataType("bf16"), DataType::kBFloat16);
  EXPECT_EQ(*parseDataType("float32"), DataType::kFloat32);
  for (ReduceOp op : kAllReduceOps) EXPECT_EQ(*parseReduceOp(reduceOpName(op)), op);
  EXPECT_EQ(parseDataType("complex").status().message(),
            "'complex' is not a data type (int8 uint8 int32 uint32 int64 uint64 half bfloat16 "
            "float double)");
  EXPECT_FALSE(parseReduceOp("mean").ok());
}

}  // namespace
}  // namespace gangway::kernels
