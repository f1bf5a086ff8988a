// memcpy_perf: the host's copy bandwidth at the sizes of the *_perf benchmarks, the ceiling a
// collective between processes of one machine is compared with (benches/comm/compare).
// Takes the same -b/-e/-i/-f/-n/-w/--json flags; bandwidth = bytes copied / time, and --json
// writes rows shaped like the *_perf ones (out_of_place.busbw = algbw = that bandwidth).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include <absl/strings/str_format.h>
#include <nlohmann/json.hpp>

#include "perf_args.h"
#include "perf_memory.h"
#include "perf_report.h"

namespace b = gangway::bench;

int main(int argc, char** argv) {
  setlinebuf(stdout);
  auto parsed = b::parsePerfArgs(argc, argv, b::Collective::kSendRecv);
  if (!parsed.ok()) {
    std::fprintf(stderr, "memcpy_perf: %s\n", std::string(parsed.status().message()).c_str());
    return 2;
  }
  if (parsed->help) {
    std::puts(
        "USAGE: memcpy_perf [-b minbytes] [-e maxbytes] [-i stepbytes] [-f stepfactor] "
        "[-n iters] [-w warmup_iters] [--json FILE]");
    return 0;
  }
  const b::PerfOptions& o = parsed->options;
  auto memory = b::makeHostMemory();
  auto src = b::Buffer::allocate(*memory, o.max_bytes);
  auto dst = b::Buffer::allocate(*memory, o.max_bytes);
  if (!src.ok() || !dst.ok()) {
    std::fprintf(stderr, "memcpy_perf: cannot allocate %zu bytes\n", o.max_bytes);
    return 1;
  }
  std::memset(src->data(), 1, o.max_bytes);
  std::memset(dst->data(), 2, o.max_bytes);
  std::printf("# memcpy_perf minBytes %zu maxBytes %zu iters: %d (%s)\n", o.min_bytes, o.max_bytes,
              o.iters, memory->deviceName().c_str());
  std::printf("# %10s  %7s  %6s\n# %10s  %7s  %6s\n", "size", "time", "bw", "(B)", "(us)",
              "(GB/s)");
  nlohmann::json rows = nlohmann::json::array();
  double bw_sum = 0;
  int bw_count = 0;
  for (std::size_t size = o.min_bytes; size <= o.max_bytes;) {
    const std::size_t steps = size > 0 ? std::max<std::size_t>(1, o.max_bytes / size) : 1;
    const auto copy = [&](int iter) {
      const std::size_t shift = size * (static_cast<std::size_t>(iter) % steps);
      std::memcpy(dst->data() + shift, src->data() + shift, size);
    };
    for (int i = 0; i < o.warmup_iters; ++i) copy(i);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.iters; ++i) copy(i);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / o.iters;
    const double bw = seconds > 0 ? static_cast<double>(size) / 1e9 / seconds : 0;
    std::printf("%12zu  %s  %6.2f\n", size, b::formatTimeUs(seconds * 1e6).c_str(), bw);
    const nlohmann::json m = {
        {"time_us", seconds * 1e6}, {"algbw", bw}, {"busbw", bw}, {"wrong", nullptr}};
    rows.push_back({{"size", size},
                    {"count", size},
                    {"type", "int8"},
                    {"redop", "none"},
                    {"root", -1},
                    {"out_of_place", m},
                    {"in_place", m}});
    bw_sum += bw;
    ++bw_count;
    const std::size_t next = o.step_factor > 1 ? size * o.step_factor : size + o.step_bytes;
    if (next <= size) break;
    size = next;
  }
  const double avg = bw_count > 0 ? bw_sum / bw_count : 0;
  std::printf("# Avg bus bandwidth    : %g \n#\n", avg);
  if (!o.json_path.empty()) {
    std::ofstream out(o.json_path, std::ios::trunc);
    out << nlohmann::json{{"collective", "memcpy"}, {"backend", "memcpy"}, {"memory", "host"},
                          {"world_size", 1},        {"bus_factor", 1.0},   {"rows", rows},
                          {"avg_busbw", avg},       {"ok", true}}
               .dump(2)
        << "\n";
    if (!out) {
      std::fprintf(stderr, "memcpy_perf: cannot write --json file '%s'\n", o.json_path.c_str());
      return 1;
    }
  }
  return 0;
}
