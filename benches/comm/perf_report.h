// nccl-tests' text output, byte for byte where nccl-tests has a line (header, column titles, rows,
// trailer), and the --json document.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "perf_args.h"

namespace gangway::bench {

// One placement (out-of-place or in-place) of one row.
struct Measurement {
  double time_us = 0;
  double algbw = 0;                   // GB/s
  double busbw = 0;                   // GB/s
  std::optional<std::int64_t> wrong;  // empty when not checked (-c 0): "N/A"
};

struct Row {
  std::size_t bytes = 0;
  std::size_t count = 0;
  std::string type;
  std::string redop;
  int root = -1;
  Measurement out_of_place;
  Measurement in_place;
};

// "# nThread 1 nGpus 1 minBytes ... graph: 0"
std::string formatParameters(const PerfOptions& o);
// "#  Rank  0 Group  0 Pid   1234 on   hostname device  0 [id] name"
std::string formatDevice(int rank, int group, int pid, const std::string& host, int device,
                         const std::string& id, const std::string& name);
// The three column-title lines, each ending in a newline.
std::string formatColumns(bool cputime);
// The size, count, type, redop and root columns.
std::string formatRowStart(const Row& row);
// time, algbw, busbw and #wrong of one placement.
std::string formatMeasurement(const Measurement& m);
// The time as nccl-tests prints it: 7 wide, 2, 1 or 0 decimals by magnitude.
std::string formatTimeUs(double us);
// "# Out of bounds values : N OK|FAILED" and "# Avg bus bandwidth    : X [OK|FAILED]" and "#".
std::string formatTrailer(int errors, double avg_busbw, std::optional<double> min_busbw);

struct RunSummary {
  std::string collective;
  std::string backend;
  std::string memory;
  std::string algorithm;
  int world_size = 1;
  const PerfOptions* options = nullptr;
  std::vector<Row> rows;
  int errors = 0;
  double avg_busbw = 0;
  double bus_factor = 1;
  bool ok = true;
  std::string error;  // a failure that stopped the run early
};

nlohmann::json toJson(const RunSummary& s);

}  // namespace gangway::bench
