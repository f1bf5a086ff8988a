// Host reduction bandwidth against memcpy, the machine's limit for moving the same bytes.
// Bandwidth counts every byte read and written: a reduction d = a OP b moves 3x its size, a
// memcpy 2x. Medians over repetitions. Usage: bench_reduce [--reps N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gangway/kernels/reduce.h"

#include "bench_timing.h"

namespace k = gangway::kernels;
using gangway::benches::medianSeconds;

int main(int argc, char** argv) {
  int reps = 21;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--reps" && i + 1 < argc && std::atoi(argv[i + 1]) > 0) {
      reps = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "bench_reduce: error: unknown flag %s (flags: --reps N)\n", argv[i]);
      return 2;
    }
  }
  const std::size_t max_bytes = std::size_t{256} << 20;
  std::vector<unsigned char> a(max_bytes, 1);
  std::vector<unsigned char> b(max_bytes, 2);
  std::vector<unsigned char> d(max_bytes, 0);
  std::printf("%-10s %-9s %12s %12s %8s\n", "bytes", "type", "reduce GB/s", "memcpy GB/s", "ratio");
  for (k::DataType type : {k::DataType::kFloat32, k::DataType::kBFloat16, k::DataType::kFloat16}) {
    for (std::size_t bytes = std::size_t{64} << 10; bytes <= max_bytes; bytes *= 16) {
      const std::size_t count = bytes / k::dataTypeSize(type);
      const double tr = medianSeconds(reps, [&] {
        k::reduceHost(d.data(), a.data(), b.data(), count, type, k::ReduceOp::kSum);
      });
      const double tm = medianSeconds(reps, [&] { std::memcpy(d.data(), a.data(), bytes); });
      const double gr = 3.0 * static_cast<double>(bytes) / tr / 1e9;
      const double gm = 2.0 * static_cast<double>(bytes) / tm / 1e9;
      std::printf("%-10zu %-9s %12.2f %12.2f %8.2f\n", bytes, k::dataTypeName(type), gr, gm,
                  gr / gm);
    }
  }
  return 0;
}
