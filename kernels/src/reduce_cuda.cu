#include <cstdint>
#include <type_traits>

#include <absl/strings/str_cat.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gangway/kernels/reduce_cuda.h"

#include "reduce_apply.h"

namespace gangway::kernels {
namespace {

absl::Status cudaError(cudaError_t e, const char* what, const char* file, int line) {
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorName(e), " (",
                                          cudaGetErrorString(e), ") at ", file, ":", line));
}
#define GW_CUDA_RETURN(expr, what)                                             \
  do {                                                                         \
    const cudaError_t gw_e = (expr);                                           \
    if (gw_e != cudaSuccess) return cudaError(gw_e, what, __FILE__, __LINE__); \
  } while (0)

// Element access: half and bfloat16 are computed in float.
template <typename T>
struct Elem {
  using Compute = T;
  __device__ static Compute load(T v) { return v; }
  __device__ static T store(Compute v) { return v; }
};
template <>
struct Elem<__half> {
  using Compute = float;
  __device__ static float load(__half v) { return __half2float(v); }
  __device__ static __half store(float v) { return __float2half_rn(v); }
};
template <>
struct Elem<__nv_bfloat16> {
  using Compute = float;
  __device__ static float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

// 16 bytes per thread per step when the three pointers are 16-byte aligned; the tail (and
// unaligned buffers) one element at a time.
template <typename T, ReduceOp kOp>
__global__ void reduceKernel(T* __restrict__ d, const T* a, const T* b, std::size_t n,
                             bool vector) {
  using E = Elem<T>;
  constexpr int kVec = 16 / sizeof(T);
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  std::size_t tid = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  std::size_t done = 0;
  if (vector) {
    const std::size_t nvec = n / kVec;
    for (std::size_t v = tid; v < nvec; v += stride) {
      uint4 ra = reinterpret_cast<const uint4*>(a)[v];
      uint4 rb = reinterpret_cast<const uint4*>(b)[v];
      uint4 rd;
      const T* ea = reinterpret_cast<const T*>(&ra);
      const T* eb = reinterpret_cast<const T*>(&rb);
      T* ed = reinterpret_cast<T*>(&rd);
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        ed[k] = E::store(detail::applyOp<typename E::Compute>(E::load(ea[k]), E::load(eb[k]), kOp));
      }
      reinterpret_cast<uint4*>(d)[v] = rd;
    }
    done = nvec * kVec;
  }
  for (std::size_t i = done + tid; i < n; i += stride) {
    d[i] = E::store(detail::applyOp<typename E::Compute>(E::load(a[i]), E::load(b[i]), kOp));
  }
}

template <typename T>
__global__ void divideKernel(T* d, std::size_t n, int k) {
  using E = Elem<T>;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    if constexpr (std::is_integral_v<T>) {
      d[i] = static_cast<T>(d[i] / k);
    } else {
      d[i] = E::store(E::load(d[i]) / static_cast<typename E::Compute>(k));
    }
  }
}

int gridFor(std::size_t work, int threads) {
  static int sms = [] {
    int dev = 0;
    int n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      return 80;
    }
    return n;
  }();
  const std::size_t wanted = (work + threads - 1) / threads;
  const std::size_t cap = static_cast<std::size_t>(sms) * 8;  // enough blocks to fill the GPU
  return static_cast<int>(wanted < 1 ? 1 : (wanted < cap ? wanted : cap));
}

template <typename T>
absl::Status launch(void* dst, const void* a, const void* b, std::size_t n, ReduceOp op,
                    cudaStream_t s) {
  constexpr int kThreads = 512;
  const bool vector = ((reinterpret_cast<std::uintptr_t>(dst) |
                        reinterpret_cast<std::uintptr_t>(a) | reinterpret_cast<std::uintptr_t>(b)) &
                       15U) == 0;
  const std::size_t work = vector ? n / (16 / sizeof(T)) + 16 : n;
  const int grid = gridFor(work, kThreads);
  auto* d = static_cast<T*>(dst);
  const auto* x = static_cast<const T*>(a);
  const auto* y = static_cast<const T*>(b);
  switch (op) {
    case ReduceOp::kProd:
      reduceKernel<T, ReduceOp::kProd><<<grid, kThreads, 0, s>>>(d, x, y, n, vector);
      break;
    case ReduceOp::kMin:
      reduceKernel<T, ReduceOp::kMin><<<grid, kThreads, 0, s>>>(d, x, y, n, vector);
      break;
    case ReduceOp::kMax:
      reduceKernel<T, ReduceOp::kMax><<<grid, kThreads, 0, s>>>(d, x, y, n, vector);
      break;
    default:
      reduceKernel<T, ReduceOp::kSum><<<grid, kThreads, 0, s>>>(d, x, y, n, vector);
  }
  GW_CUDA_RETURN(cudaGetLastError(), "reduce kernel launch");
  return absl::OkStatus();
}

template <typename T>
absl::Status launchDivide(void* dst, std::size_t n, int k, cudaStream_t s) {
  constexpr int kThreads = 512;
  divideKernel<T><<<gridFor(n, kThreads), kThreads, 0, s>>>(static_cast<T*>(dst), n, k);
  GW_CUDA_RETURN(cudaGetLastError(), "divide kernel launch");
  return absl::OkStatus();
}

}  // namespace

absl::Status reduceDevice(void* dst, const void* a, const void* b, std::size_t count, DataType type,
                          ReduceOp op, void* stream) {
  if (count == 0) return absl::OkStatus();
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case DataType::kInt8:
      return launch<int8_t>(dst, a, b, count, op, s);
    case DataType::kUint8:
      return launch<uint8_t>(dst, a, b, count, op, s);
    case DataType::kInt32:
      return launch<int32_t>(dst, a, b, count, op, s);
    case DataType::kUint32:
      return launch<uint32_t>(dst, a, b, count, op, s);
    case DataType::kInt64:
      return launch<int64_t>(dst, a, b, count, op, s);
    case DataType::kUint64:
      return launch<uint64_t>(dst, a, b, count, op, s);
    case DataType::kFloat16:
      return launch<__half>(dst, a, b, count, op, s);
    case DataType::kBFloat16:
      return launch<__nv_bfloat16>(dst, a, b, count, op, s);
    case DataType::kFloat32:
      return launch<float>(dst, a, b, count, op, s);
    case DataType::kFloat64:
      return launch<double>(dst, a, b, count, op, s);
  }
  return absl::InvalidArgumentError("reduceDevice: unknown data type");
}

absl::Status divideByDevice(void* dst, std::size_t count, DataType type, int n, void* stream) {
  if (count == 0) return absl::OkStatus();
  if (n < 1) return absl::InvalidArgumentError("divideByDevice: n must be >= 1");
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case DataType::kInt8:
      return launchDivide<int8_t>(dst, count, n, s);
    case DataType::kUint8:
      return launchDivide<uint8_t>(dst, count, n, s);
    case DataType::kInt32:
      return launchDivide<int32_t>(dst, count, n, s);
    case DataType::kUint32:
      return launchDivide<uint32_t>(dst, count, n, s);
    case DataType::kInt64:
      return launchDivide<int64_t>(dst, count, n, s);
    case DataType::kUint64:
      return launchDivide<uint64_t>(dst, count, n, s);
    case DataType::kFloat16:
      return launchDivide<__half>(dst, count, n, s);
    case DataType::kBFloat16:
      return launchDivide<__nv_bfloat16>(dst, count, n, s);
    case DataType::kFloat32:
      return launchDivide<float>(dst, count, n, s);
    case DataType::kFloat64:
      return launchDivide<double>(dst, count, n, s);
  }
  return absl::InvalidArgumentError("divideByDevice: unknown data type");
}

int cudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

}  // namespace gangway::kernels
