// Run-time choice of the host reduction loops, avg's division, and the scalar reference.
#include <cstring>
#include <type_traits>

#include "gangway/kernels/reduce.h"

#include "cpu_features.h"
#include "reduce_apply.h"

namespace gangway::kernels {
namespace base {
void reduce(void* d, const void* a, const void* b, std::size_t n, DataType type, ReduceOp op);
}
namespace avx2 {
void reduce(void* d, const void* a, const void* b, std::size_t n, DataType type, ReduceOp op);
}

namespace {

bool haveAvx2() {
  const CpuFeatures& cpu = cpuFeatures();
  return cpu.avx2 && cpu.f16c;
}

template <typename T>
void refTyped(void* d, const void* a, const void* b, std::size_t n, ReduceOp op) {
  for (std::size_t i = 0; i < n; ++i) {
    T x;
    T y;
    std::memcpy(&x, static_cast<const char*>(a) + i * sizeof(T), sizeof(T));
    std::memcpy(&y, static_cast<const char*>(b) + i * sizeof(T), sizeof(T));
    const T r = detail::applyOp<T>(x, y, op);
    std::memcpy(static_cast<char*>(d) + i * sizeof(T), &r, sizeof(T));
  }
}

template <float (*kTo)(uint16_t), uint16_t (*kFrom)(float)>
void refHalfLike(void* d, const void* a, const void* b, std::size_t n, ReduceOp op) {
  for (std::size_t i = 0; i < n; ++i) {
    uint16_t x;
    uint16_t y;
    std::memcpy(&x, static_cast<const char*>(a) + 2 * i, 2);
    std::memcpy(&y, static_cast<const char*>(b) + 2 * i, 2);
    const uint16_t r = kFrom(detail::applyOp<float>(kTo(x), kTo(y), op));
    std::memcpy(static_cast<char*>(d) + 2 * i, &r, 2);
  }
}

template <typename T>
void divideTyped(void* d, std::size_t n, int k) {
  auto* p = static_cast<T*>(d);
  // In the wider of T and int: a rank count above 127 must not wrap for int8.
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<T>(p[i] / k);
}

template <float (*kTo)(uint16_t), uint16_t (*kFrom)(float)>
void divideHalfLike(void* d, std::size_t n, int k) {
  auto* p = static_cast<uint16_t*>(d);
  for (std::size_t i = 0; i < n; ++i) p[i] = kFrom(kTo(p[i]) / static_cast<float>(k));
}

}  // namespace

void reduceHost(void* dst, const void* a, const void* b, std::size_t count, DataType type,
                ReduceOp op) {
  if (count == 0) return;
  if (haveAvx2()) {
    avx2::reduce(dst, a, b, count, type, op);
  } else {
    base::reduce(dst, a, b, count, type, op);
  }
}

void reduceReference(void* dst, const void* a, const void* b, std::size_t count, DataType type,
                     ReduceOp op) {
  switch (type) {
    case DataType::kInt8:
      return refTyped<int8_t>(dst, a, b, count, op);
    case DataType::kUint8:
      return refTyped<uint8_t>(dst, a, b, count, op);
    case DataType::kInt32:
      return refTyped<int32_t>(dst, a, b, count, op);
    case DataType::kUint32:
      return refTyped<uint32_t>(dst, a, b, count, op);
    case DataType::kInt64:
      return refTyped<int64_t>(dst, a, b, count, op);
    case DataType::kUint64:
      return refTyped<uint64_t>(dst, a, b, count, op);
    case DataType::kFloat32:
      return refTyped<float>(dst, a, b, count, op);
    case DataType::kFloat64:
      return refTyped<double>(dst, a, b, count, op);
    case DataType::kFloat16:
      return refHalfLike<halfToFloat, floatToHalf>(dst, a, b, count, op);
    case DataType::kBFloat16:
      return refHalfLike<bfloat16ToFloat, floatToBfloat16>(dst, a, b, count, op);
  }
}

void divideByHost(void* dst, std::size_t count, DataType type, int n) {
  divideByReference(dst, count, type, n);  // one pass at the end of a collective: not hot
}

void divideByReference(void* dst, std::size_t count, DataType type, int n) {
  switch (type) {
    case DataType::kInt8:
      return divideTyped<int8_t>(dst, count, n);
    case DataType::kUint8:
      return divideTyped<uint8_t>(dst, count, n);
    case DataType::kInt32:
      return divideTyped<int32_t>(dst, count, n);
    case DataType::kUint32:
      return divideTyped<uint32_t>(dst, count, n);
    case DataType::kInt64:
      return divideTyped<int64_t>(dst, count, n);
    case DataType::kUint64:
      return divideTyped<uint64_t>(dst, count, n);
    case DataType::kFloat32:
      return divideTyped<float>(dst, count, n);
    case DataType::kFloat64:
      return divideTyped<double>(dst, count, n);
    case DataType::kFloat16:
      return divideHalfLike<halfToFloat, floatToHalf>(dst, count, n);
    case DataType::kBFloat16:
      return divideHalfLike<bfloat16ToFloat, floatToBfloat16>(dst, count, n);
  }
}

}  // namespace gangway::kernels
