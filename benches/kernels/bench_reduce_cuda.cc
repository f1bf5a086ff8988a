// Device reduction bandwidth against the device's own copy bandwidth (cudaMemcpyAsync device to
// device), bytes read and written counted (reduce 3x, copy 2x); CUDA events, medians of 20.
// Needs a GPU. Usage: bench_reduce_cuda
#include <algorithm>
#include <cstdio>
#include <vector>

#include <cuda_runtime_api.h>

#include "gangway/kernels/reduce_cuda.h"

#include "bench_timing_cuda.h"

namespace k = gangway::kernels;
using gangway::benches::medianMs;

int main() {
  if (k::cudaDeviceCount() == 0) {
    std::fprintf(stderr, "bench_reduce_cuda: error: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("# %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  const std::size_t max_bytes = std::size_t{1} << 30;
  void* a = nullptr;
  void* b = nullptr;
  void* d = nullptr;
  if (cudaMalloc(&a, max_bytes) != cudaSuccess || cudaMalloc(&b, max_bytes) != cudaSuccess ||
      cudaMalloc(&d, max_bytes) != cudaSuccess) {
    std::fprintf(stderr, "bench_reduce_cuda: error: cudaMalloc of 3 GiB failed\n");
    return 1;
  }
  cudaMemset(a, 0, max_bytes);
  cudaMemset(b, 0, max_bytes);
  std::printf("%-12s %-9s %14s %14s %8s\n", "bytes", "type", "reduce GB/s", "copy GB/s", "ratio");
  for (k::DataType type : {k::DataType::kFloat32, k::DataType::kBFloat16, k::DataType::kFloat16,
                           k::DataType::kFloat64, k::DataType::kInt8}) {
    for (std::size_t bytes = std::size_t{1} << 20; bytes <= max_bytes; bytes *= 32) {
      const std::size_t count = bytes / k::dataTypeSize(type);
      bool ok = true;
      const float tr = medianMs([&] {
        ok = ok && k::reduceDevice(d, a, b, count, type, k::ReduceOp::kSum, nullptr).ok();
      });
      const float tc = medianMs([&] { cudaMemcpyAsync(d, a, bytes, cudaMemcpyDeviceToDevice); });
      if (!ok) {
        std::fprintf(stderr, "bench_reduce_cuda: error: reduceDevice failed\n");
        return 1;
      }
      const double gr = 3.0 * static_cast<double>(bytes) / (tr * 1e-3) / 1e9;
      const double gc = 2.0 * static_cast<double>(bytes) / (tc * 1e-3) / 1e9;
      std::printf("%-12zu %-9s %14.1f %14.1f %8.3f\n", bytes, k::dataTypeName(type), gr, gc,
                  gr / gc);
    }
  }
  cudaFree(a);
  cudaFree(b);
  cudaFree(d);
  return 0;
}
