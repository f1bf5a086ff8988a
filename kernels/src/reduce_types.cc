#include <cstring>

#include <absl/strings/str_cat.h>

#include "gangway/kernels/reduce.h"

namespace gangway::kernels {

std::size_t dataTypeSize(DataType t) {
  switch (t) {
    case DataType::kInt8:
    case DataType::kUint8:
      return 1;
    case DataType::kFloat16:
    case DataType::kBFloat16:
      return 2;
    case DataType::kInt32:
    case DataType::kUint32:
    case DataType::kFloat32:
      return 4;
    case DataType::kInt64:
    case DataType::kUint64:
    case DataType::kFloat64:
      return 8;
  }
  return 0;
}

const char* dataTypeName(DataType t) {
  switch (t) {
    case DataType::kInt8:
      return "int8";
    case DataType::kUint8:
      return "uint8";
    case DataType::kInt32:
      return "int32";
    case DataType::kUint32:
      return "uint32";
    case DataType::kInt64:
      return "int64";
    case DataType::kUint64:
      return "uint64";
    case DataType::kFloat16:
      return "half";
    case DataType::kBFloat16:
      return "bfloat16";
    case DataType::kFloat32:
      return "float";
    case DataType::kFloat64:
      return "double";
  }
  return "?";
}

absl::StatusOr<DataType> parseDataType(absl::string_view name) {
  for (DataType t : kAllDataTypes) {
    if (name == dataTypeName(t)) return t;
  }
  if (name == "float16" || name == "fp16") return DataType::kFloat16;
  if (name == "bf16") return DataType::kBFloat16;
  if (name == "float32" || name == "fp32") return DataType::kFloat32;
  if (name == "float64" || name == "fp64") return DataType::kFloat64;
  return absl::InvalidArgumentError(absl::StrCat(
      "'", name,
      "' is not a data type (int8 uint8 int32 uint32 int64 uint64 half bfloat16 float double)"));
}

const char* reduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kProd:
      return "prod";
    case ReduceOp::kMin:
      return "min";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kAvg:
      return "avg";
  }
  return "?";
}

absl::StatusOr<ReduceOp> parseReduceOp(absl::string_view name) {
  for (ReduceOp op : kAllReduceOps) {
    if (name == reduceOpName(op)) return op;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", name, "' is not a reduction (sum prod min max avg)"));
}

float halfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000U) << 16;
  uint32_t exp = (h >> 10) & 0x1fU;
  uint32_t mant = h & 0x3ffU;
  uint32_t bits = 0;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 1;
      while ((mant & 0x400U) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffU;
      bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000U | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f = 0;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

uint16_t floatToHalf(float f) {
  uint32_t x = 0;
  std::memcpy(&x, &f, sizeof(x));
  const uint32_t sign = (x >> 16) & 0x8000U;
  const uint32_t abs = x & 0x7fffffffU;
  if (abs >= 0x7f800000U) {  // Inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00U | (abs > 0x7f800000U ? 0x200U : 0U));
  }
  if (abs >= 0x477ff000U) return static_cast<uint16_t>(sign | 0x7c00U);  // rounds to Inf
  if (abs < 0x38800000U) {                                               // subnormal half (or zero)
    if (abs < 0x33000000U) return static_cast<uint16_t>(sign);  // below half the smallest: 0
    // |f| = m * 2^(e - 150) with the implicit bit in m; a subnormal half is k * 2^-24, so
    // k = m >> (126 - e), rounded to nearest even (k = 1024 carries into the smallest normal).
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffffU) | 0x800000U;
    const uint32_t shift = 126 - e;
    uint32_t out = m >> shift;
    const uint32_t rem = m & ((1U << shift) - 1);
    const uint32_t halfway = 1U << (shift - 1);
    if (rem > halfway || (rem == halfway && (out & 1U) != 0)) ++out;
    return static_cast<uint16_t>(sign | out);
  }
  // Normal: rebias exponent, round mantissa to 10 bits (nearest even).
  const uint32_t rebased = abs - ((127U - 15U) << 23);
  uint32_t out = rebased >> 13;
  const uint32_t rem = rebased & 0x1fffU;
  if (rem > 0x1000U || (rem == 0x1000U && (out & 1U) != 0)) ++out;
  return static_cast<uint16_t>(sign | out);
}

float bfloat16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f = 0;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

uint16_t floatToBfloat16(float f) {
  uint32_t x = 0;
  std::memcpy(&x, &f, sizeof(x));
  if ((x & 0x7fffffffU) > 0x7f800000U) return static_cast<uint16_t>((x >> 16) | 0x40U);  // NaN
  const uint32_t lsb = (x >> 16) & 1U;
  x += 0x7fffU + lsb;
  return static_cast<uint16_t>(x >> 16);
}

}  // namespace gangway::kernels
