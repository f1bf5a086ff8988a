// Timing for the kernel benchmarks: medians over repetitions, on the host clock or, for device
// work, with CUDA events (bench_timing_cuda.h).
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace gangway::benches {

// The median wall time of `reps` calls of f, in seconds.
template <typename F>
double medianSeconds(int reps, F f) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace gangway::benches
