#include <cstring>

#include <absl/strings/str_cat.h>

#include "gangway/kernels/fp8.h"
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

// The conversions are written once, for host and device, in fp8.h.
float halfToFloat(uint16_t h) { return hd::halfToFloat(h); }
uint16_t floatToHalf(float f) { return hd::floatToHalf(f); }
float bfloat16ToFloat(uint16_t b) { return hd::bfloat16ToFloat(b); }
uint16_t floatToBfloat16(float f) { return hd::floatToBfloat16(f); }

}  // namespace gangway::kernels
