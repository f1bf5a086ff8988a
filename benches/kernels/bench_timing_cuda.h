// Device timing for the kernel benchmarks: the median of 20 runs of f on the default stream, timed
// with CUDA events, after one warm-up run; milliseconds.
#pragma once

#include <algorithm>
#include <vector>

#include <cuda_runtime_api.h>

namespace gangway::benches {

template <typename F>
float medianMs(F f) {
  cudaEvent_t start;
  cudaEvent_t stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  f();  // warm-up
  std::vector<float> t;
  for (int i = 0; i < 20; ++i) {
    cudaEventRecord(start);
    f();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    t.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace gangway::benches
