// Command line of the *_perf benchmarks: nccl-tests' flags (same letters, long names, defaults and
// size suffixes) plus gangway's --backend, --memory, --algorithm, --timeout and --json.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include <absl/status/statusor.h>

#include "gangway/comm/communicator.h"

namespace gangway::bench {

enum class Collective {
  kAllReduce,
  kAllGather,
  kReduceScatter,
  kBroadcast,
  kReduce,
  kAllToAll,
  kSendRecv
};

struct PerfOptions {
  // nccl-tests' defaults.
  std::size_t min_bytes = std::size_t{32} << 20;
  std::size_t max_bytes = std::size_t{32} << 20;
  std::size_t step_bytes = std::size_t{1} << 20;
  std::size_t step_factor = 1;  // > 1: multiply; otherwise add step_bytes
  int iters = 20;
  int warmup_iters = 5;
  int agg_iters = 1;
  int check = 1;  // check iterations after the timed loop; 0 skips checking (#wrong: N/A)
  bool all_ops = false;
  comm::ReduceOp op = comm::ReduceOp::kSum;
  bool all_types = false;
  comm::DataType type = comm::DataType::kFloat32;
  bool all_roots = false;
  int root = 0;
  bool blocking = false;  // synchronize and barrier after each operation
  int average = 1;        // time across ranks: 0 rank 0, 1 mean, 2 min, 3 max
  bool report_cputime = false;

  // gangway's own.
  std::string backend;                     // empty: nccl for cuda memory, ucx otherwise
  std::optional<comm::MemoryKind> memory;  // unset: what the backend supports (host first)
  std::optional<comm::Algorithm> algorithm;
  std::optional<double> timeout_s;  // 0: effectively none (a day)
  std::string json_path;
};

struct ParsedArgs {
  PerfOptions options;
  bool help = false;  // -h: print usage and exit 0
};

// Errors are one line, nccl-tests' wording where it has one. NotFound: an unknown option or a
// missing argument (the caller prints the usage after the line); InvalidArgument: a bad value.
absl::StatusOr<ParsedArgs> parsePerfArgs(int argc, char** argv, Collective collective);

std::string perfUsage(const char* program, Collective collective);

// Byte sizes as nccl-tests reads them: a number with an optional K, M or G (powers of 1024).
std::optional<std::size_t> parseSize(const char* text);

}  // namespace gangway::bench
