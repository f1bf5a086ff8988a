// One element of a reduction, the one definition that the host loops, the scalar reference and
// the CUDA kernels share: integers wrap (through unsigned arithmetic), `min` is b < a ? b : a,
// `max` is a < b ? b : a, `avg` adds (divideBy finishes it).
#pragma once

#include <type_traits>

#include "gangway/kernels/reduce.h"

#if defined(__CUDACC__)
#define GANGWAY_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define GANGWAY_HOST_DEVICE inline
#endif

namespace gangway::kernels::detail {

template <typename T>
GANGWAY_HOST_DEVICE T applyOp(T a, T b, ReduceOp op) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;  // wrap instead of overflowing
    if (op == ReduceOp::kProd) return static_cast<T>(static_cast<U>(a) * static_cast<U>(b));
    if (op == ReduceOp::kMin) return b < a ? b : a;
    if (op == ReduceOp::kMax) return a < b ? b : a;
    return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
  } else {
    if (op == ReduceOp::kProd) return a * b;
    if (op == ReduceOp::kMin) return b < a ? b : a;
    if (op == ReduceOp::kMax) return a < b ? b : a;
    return a + b;
  }
}

}  // namespace gangway::kernels::detail
