// Element-wise reductions for collectives: the data types and operations libgangway_comm and its
// benchmarks speak (nccl-tests' names), a host implementation vectorised by the compiler (AVX2
// where the CPU has it, chosen at run time), a plain scalar reference the tests compare against,
// and a CUDA implementation for device buffers (reduce_cuda.h).
//
// Semantics, the same everywhere: dst[i] = a[i] OP b[i], computed in the type itself for integers
// (wrapping, as two's complement), in float for float16 and bfloat16 (rounded to nearest even on
// the way back), and in the type for float and double. `avg` reduces as `sum`; divideBy() then
// divides the final result by the rank count (integers: truncating division, as NCCL does).
#pragma once

#include <cstddef>
#include <cstdint>

#include <absl/status/statusor.h>
#include <absl/strings/string_view.h>

namespace gangway::kernels {

enum class DataType {
  kInt8,
  kUint8,
  kInt32,
  kUint32,
  kInt64,
  kUint64,
  kFloat16,
  kBFloat16,
  kFloat32,
  kFloat64,
};
inline constexpr DataType kAllDataTypes[] = {
    DataType::kInt8,    DataType::kUint8,  DataType::kInt32,   DataType::kUint32,
    DataType::kInt64,   DataType::kUint64, DataType::kFloat16, DataType::kBFloat16,
    DataType::kFloat32, DataType::kFloat64};

enum class ReduceOp { kSum, kProd, kMin, kMax, kAvg };
inline constexpr ReduceOp kAllReduceOps[] = {ReduceOp::kSum, ReduceOp::kProd, ReduceOp::kMin,
                                             ReduceOp::kMax, ReduceOp::kAvg};

std::size_t dataTypeSize(DataType t);
// nccl-tests' names: int8 uint8 int32 uint32 int64 uint64 half bfloat16 float double.
const char* dataTypeName(DataType t);
// Those names, and float16, bf16, float32, float64, fp16, fp32, fp64; InvalidArgument otherwise.
absl::StatusOr<DataType> parseDataType(absl::string_view name);
// sum prod min max avg.
const char* reduceOpName(ReduceOp op);
absl::StatusOr<ReduceOp> parseReduceOp(absl::string_view name);

// dst[i] = a[i] OP b[i] for i < count, host memory: arrays of the type, aligned to it (as every
// collective's buffers are). dst may alias a or b.
void reduceHost(void* dst, const void* a, const void* b, std::size_t count, DataType type,
                ReduceOp op);
// dst[i] /= n, for avg's last step. n >= 1.
void divideByHost(void* dst, std::size_t count, DataType type, int n);

// The scalar reference: the same results, element by element, with no vectorisation.
void reduceReference(void* dst, const void* a, const void* b, std::size_t count, DataType type,
                     ReduceOp op);
void divideByReference(void* dst, std::size_t count, DataType type, int n);

// float16 / bfloat16 bit patterns <-> float (round to nearest even; NaN stays NaN).
float halfToFloat(uint16_t h);
uint16_t floatToHalf(float f);
float bfloat16ToFloat(uint16_t b);
uint16_t floatToBfloat16(float f);

}  // namespace gangway::kernels
