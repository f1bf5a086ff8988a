#include "perf_common.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/time/time.h>

#include "gangway/comm/communicator.h"
#include "gangway/kernels/reduce.h"

#include "perf_collectives.h"
#include "perf_data.h"
#include "perf_memory.h"
#include "perf_report.h"

namespace gangway::bench {

namespace {

using comm::DataType;
using comm::ReduceOp;
using Clock = std::chrono::steady_clock;

#define GW_PERF_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    if (absl::Status s_ = (expr); !s_.ok()) return s_; \
  } while (false)

// nccl-tests' orders for -d all and -o all.
constexpr DataType kTypeOrder[] = {DataType::kInt8,    DataType::kUint8,   DataType::kInt32,
                                   DataType::kUint32,  DataType::kInt64,   DataType::kUint64,
                                   DataType::kFloat16, DataType::kFloat32, DataType::kFloat64,
                                   DataType::kBFloat16};
constexpr ReduceOp kOpOrder[] = {ReduceOp::kSum, ReduceOp::kProd, ReduceOp::kMax, ReduceOp::kMin,
                                 ReduceOp::kAvg};
constexpr std::size_t kLineBytes = 256;  // one rank's device line

std::string programName(const char* argv0) {
  const char* slash = std::strrchr(argv0, '/');
  return slash != nullptr ? slash + 1 : argv0;
}

int envInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::atoi(v);
}

// What to run, resolved from the flags and the backend's capabilities before any communicator.
struct Plan {
  std::string backend;
  comm::MemoryKind memory = comm::MemoryKind::kHost;
  std::vector<DataType> types;
  std::vector<ReduceOp> ops;       // one entry for collectives without an operation
  std::vector<std::string> notes;  // comment lines for the header
  comm::Options options;
};

std::string memoryList(const comm::Capabilities& caps) {
  std::vector<std::string> names;
  for (comm::MemoryKind k : caps.memory) names.emplace_back(comm::memoryKindName(k));
  return absl::StrJoin(names, ", ");
}

absl::StatusOr<Plan> resolvePlan(Collective c, const PerfOptions& o) {
  Plan p;
  const std::vector<std::string> backends = comm::availableBackends();
  p.backend = o.backend;
  if (p.backend.empty()) {
    p.backend = o.memory == comm::MemoryKind::kCuda ? "nccl" : "ucx";
  }
  if (std::find(backends.begin(), backends.end(), p.backend) == backends.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid backend '", p.backend,
                     "': expected one of this build's backends: ", absl::StrJoin(backends, ", ")));
  }
  absl::StatusOr<comm::Capabilities> caps = comm::backendCapabilities(p.backend);
  if (!caps.ok()) return caps.status();
  if (o.memory) {
    p.memory = *o.memory;
  } else {
    p.memory =
        caps->supports(comm::MemoryKind::kHost) ? comm::MemoryKind::kHost : comm::MemoryKind::kCuda;
  }
  if (!caps->supports(p.memory)) {
    return absl::InvalidArgumentError(
        absl::StrCat("backend '", p.backend, "' does not support ", comm::memoryKindName(p.memory),
                     " memory (it supports: ", memoryList(*caps), ")"));
  }
  if (o.algorithm && *o.algorithm != comm::Algorithm::kAuto && p.backend != "ucx") {
    return absl::InvalidArgumentError(absl::StrCat("invalid --algorithm '",
                                                   comm::algorithmName(*o.algorithm),
                                                   "': it applies to the ucx backend only"));
  }
  if (o.all_types) {
    for (DataType t : kTypeOrder) {
      if (caps->supports(t)) {
        p.types.push_back(t);
      } else {
        p.notes.push_back(absl::StrCat("# Skipping datatype ", kernels::dataTypeName(t), ": the ",
                                       p.backend, " backend does not support it"));
      }
    }
  } else if (caps->supports(o.type)) {
    p.types.push_back(o.type);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("backend '", p.backend,
                                                   "' does not support datatype '",
                                                   kernels::dataTypeName(o.type), "'"));
  }
  if (p.types.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("backend '", p.backend, "' supports none of the datatypes"));
  }
  if (!collectiveHasOp(c)) {
    p.ops.push_back(o.op);
  } else if (o.all_ops) {
    for (ReduceOp op : kOpOrder) {
      if (caps->supports(op)) {
        p.ops.push_back(op);
      } else {
        p.notes.push_back(absl::StrCat("# Skipping op ", kernels::reduceOpName(op), ": the ",
                                       p.backend, " backend does not support it"));
      }
    }
  } else if (caps->supports(o.op)) {
    p.ops.push_back(o.op);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "backend '", p.backend, "' does not support op '", kernels::reduceOpName(o.op), "'"));
  }
  p.options.backend = p.backend;
  p.options.memory = p.memory;
  if (o.algorithm) p.options.algorithm = *o.algorithm;
  if (o.timeout_s) {
    p.options.timeout = *o.timeout_s > 0 ? absl::Seconds(*o.timeout_s) : absl::Hours(24);
  }
  return p;
}

std::vector<std::size_t> sizeList(const PerfOptions& o) {
  std::vector<std::size_t> sizes;
  for (std::size_t size = o.min_bytes; size <= o.max_bytes;) {
    sizes.push_back(size);
    const std::size_t next = o.step_factor > 1 ? size * o.step_factor : size + o.step_bytes;
    if (next <= size || (o.step_factor > 1 && next / o.step_factor != size)) break;
    size = next;
  }
  return sizes;
}

class PerfRun {
 public:
  PerfRun(Collective c, const PerfOptions& o, Plan plan, std::string program,
          std::unique_ptr<comm::Communicator> comm, std::unique_ptr<Memory> memory)
      : c_(c),
        o_(o),
        plan_(std::move(plan)),
        program_(std::move(program)),
        comm_(std::move(comm)),
        memory_(std::move(memory)),
        rank_(comm_->rank()),
        size_(comm_->size()) {}

  int run();

 private:
  absl::Status body();
  absl::Status printHeader();
  absl::Status timeTest(DataType type, ReduceOp op, int root);
  absl::StatusOr<Measurement> benchTime(const Counts& counts, DataType type, ReduceOp op, int root,
                                        bool in_place);
  absl::Status startColl(const Counts& counts, DataType type, ReduceOp op, int root, bool in_place,
                         int iter);
  absl::Status fillBenign(DataType type, ReduceOp op);
  absl::StatusOr<std::int64_t> check(const Counts& counts, DataType type, ReduceOp op, int root,
                                     bool in_place, std::uint64_t seed);

  // Collective helpers over the benchmarked communicator, in its memory.
  absl::StatusOr<double> combineTime(double seconds);
  absl::StatusOr<std::int64_t> sumOverRanks(std::int64_t v);
  absl::StatusOr<std::vector<std::string>> gatherLines(const std::string& line);

  void print(const std::string& text) const {
    if (rank_ == 0) std::fputs(text.c_str(), stdout);
  }
  void writeJson();

  const Collective c_;
  const PerfOptions& o_;
  const Plan plan_;
  const std::string program_;
  std::unique_ptr<comm::Communicator> comm_;
  std::unique_ptr<Memory> memory_;
  const int rank_;
  const int size_;

  Buffer send_;
  Buffer recv_;
  Buffer scalars_;  // 4 doubles
  std::uint64_t rep_ = 0;
  int local_errors_ = 0;  // checks where this rank found wrong values (nccl-tests' "errors")
  double bw_sum_ = 0;
  int bw_count_ = 0;
  RunSummary summary_;
  Row row_;
};

int PerfRun::run() {
  summary_.collective = collectiveName(c_);
  summary_.backend = plan_.backend;
  summary_.memory = comm::memoryKindName(plan_.memory);
  summary_.algorithm = comm::algorithmName(plan_.options.algorithm);
  summary_.world_size = size_;
  summary_.options = &o_;
  summary_.bus_factor = busFactor(c_, size_);
  if (collectiveHasRoot(c_) && !o_.all_roots && o_.root >= size_) {
    if (rank_ == 0) {
      std::fprintf(stderr, "%s: invalid root %d: the world has %d rank%s (0..%d)\n",
                   program_.c_str(), o_.root, size_, size_ == 1 ? "" : "s", size_ - 1);
    }
    return 2;
  }
  const absl::Status s = body();
  if (!s.ok()) {
    std::fprintf(stderr, "%s: rank %d: %s\n", program_.c_str(), rank_, s.ToString().c_str());
    summary_.ok = false;
    summary_.error = s.ToString();
    writeJson();
    return 1;
  }
  writeJson();
  return summary_.ok ? 0 : 1;
}

void PerfRun::writeJson() {
  if (rank_ != 0 || o_.json_path.empty()) return;
  std::ofstream out(o_.json_path, std::ios::trunc);
  out << toJson(summary_).dump(2) << "\n";
  if (!out) {
    std::fprintf(stderr, "%s: cannot write --json file '%s'\n", program_.c_str(),
                 o_.json_path.c_str());
    summary_.ok = false;
  }
}

absl::Status PerfRun::body() {
  absl::StatusOr<Buffer> scalars = Buffer::allocate(*memory_, 4 * sizeof(double));
  if (!scalars.ok()) return scalars.status();
  scalars_ = std::move(*scalars);

  // Rank 0 must be able to write the JSON file; every rank learns whether it can.
  std::int64_t json_failed = 0;
  if (rank_ == 0 && !o_.json_path.empty()) {
    std::ofstream probe(o_.json_path, std::ios::trunc);
    json_failed = probe ? 0 : 1;
  }
  absl::StatusOr<std::int64_t> any_json_failed = sumOverRanks(json_failed);
  if (!any_json_failed.ok()) return any_json_failed.status();
  if (*any_json_failed != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot write --json file '", o_.json_path, "'"));
  }

  GW_PERF_RETURN_IF_ERROR(printHeader());

  absl::StatusOr<Buffer> send = Buffer::allocate(*memory_, o_.max_bytes);
  if (!send.ok()) return send.status();
  absl::StatusOr<Buffer> recv = Buffer::allocate(*memory_, o_.max_bytes);
  if (!recv.ok()) return recv.status();
  send_ = std::move(*send);
  recv_ = std::move(*recv);

  std::fflush(stdout);
  print(formatColumns(o_.report_cputime));
  std::vector<int> roots;
  if (!collectiveHasRoot(c_)) {
    roots.push_back(-1);
  } else if (o_.all_roots) {
    for (int r = 0; r < size_; ++r) roots.push_back(r);
  } else {
    roots.push_back(o_.root);
  }
  for (DataType type : plan_.types) {
    for (ReduceOp op : plan_.ops) {
      for (int root : roots) GW_PERF_RETURN_IF_ERROR(timeTest(type, op, root));
    }
  }

  absl::StatusOr<std::int64_t> errors = sumOverRanks(local_errors_);
  if (!errors.ok()) return errors.status();
  summary_.errors = static_cast<int>(*errors);
  summary_.avg_busbw = bw_count_ > 0 ? bw_sum_ / bw_count_ : 0;
  std::optional<double> min_bw;
  if (const char* v = std::getenv("NCCL_TESTS_MIN_BW"); v != nullptr && *v != '\0') {
    min_bw = std::atof(v);
  }
  print(formatTrailer(summary_.errors, summary_.avg_busbw, min_bw));
  summary_.ok = summary_.errors == 0 && !(min_bw && summary_.avg_busbw < *min_bw * 0.9);
  return absl::OkStatus();
}

absl::Status PerfRun::printHeader() {
  print(formatParameters(o_));
  if (o_.blocking) {
    print("# Blocking Enabled: wait for completion and barrier after each collective \n");
  }
  print(absl::StrCat("# gangway ", collectiveName(c_), ": backend ", plan_.backend, ", ",
                     comm::memoryKindName(plan_.memory), " memory, algorithm ",
                     comm::algorithmName(plan_.options.algorithm), ", ", size_, " rank",
                     size_ == 1 ? "" : "s", "\n"));
  for (const std::string& note : plan_.notes) print(note + "\n");
  print("#\n");
  print("# Using devices\n");
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "localhost");
  const int local_rank = envInt("LOCAL_RANK", envInt("OMPI_COMM_WORLD_LOCAL_RANK", 0));
  const std::string line =
      formatDevice(rank_, 0, static_cast<int>(getpid()), host, memory_->deviceIndex(local_rank),
                   memory_->deviceId(), memory_->deviceName());
  absl::StatusOr<std::vector<std::string>> lines = gatherLines(line);
  if (!lines.ok()) return lines.status();
  for (const std::string& l : *lines) print(l);
  print("#\n");
  return absl::OkStatus();
}

absl::Status PerfRun::fillBenign(DataType type, ReduceOp op) {
  DataSpec spec;
  spec.collective = c_;
  spec.type = type;
  spec.op = op;
  spec.ranks = size_;
  spec.seed = 0x5eed;
  const std::size_t es = kernels::dataTypeSize(type);
  const std::size_t count = o_.max_bytes / es;
  for (Buffer* b : {&send_, &recv_}) {
    if (memory_->kind() == comm::MemoryKind::kHost) {
      makeInput(spec, rank_, 0, count, b->data());
      continue;
    }
    constexpr std::size_t kChunk = std::size_t{1} << 20;
    std::vector<char> host(kChunk * es);
    for (std::size_t at = 0; at < count; at += kChunk) {
      const std::size_t n = std::min(kChunk, count - at);
      makeInput(spec, rank_, at, n, host.data());
      GW_PERF_RETURN_IF_ERROR(memory_->toDevice(b->data() + at * es, host.data(), n * es));
    }
  }
  return absl::OkStatus();
}

absl::Status PerfRun::timeTest(DataType type, ReduceOp op, int root) {
  GW_PERF_RETURN_IF_ERROR(fillBenign(type, op));
  GW_PERF_RETURN_IF_ERROR(comm_->barrier());
  const std::size_t es = kernels::dataTypeSize(type);
  // Warm-up at the largest and at the smallest size.
  for (std::size_t bytes : {o_.max_bytes, o_.min_bytes}) {
    const Counts counts = collectiveCounts(c_, bytes / es, es, size_);
    for (int i = 0; i < o_.warmup_iters; ++i) {
      GW_PERF_RETURN_IF_ERROR(startColl(counts, type, op, root, false, i));
    }
    GW_PERF_RETURN_IF_ERROR(comm_->synchronize());
  }
  for (std::size_t size : sizeList(o_)) {
    const Counts counts = collectiveCounts(c_, size / es, es, size_);
    row_ = Row{};
    row_.bytes = printedBytes(counts, es);
    row_.count = counts.param;
    row_.type = kernels::dataTypeName(type);
    row_.redop = collectiveHasOp(c_) ? kernels::reduceOpName(op) : "none";
    row_.root = root;
    print(formatRowStart(row_));
    for (bool in_place : {false, true}) {
      absl::StatusOr<Measurement> m = benchTime(counts, type, op, root, in_place);
      if (!m.ok()) {
        print("\n");
        return m.status();
      }
      print(formatMeasurement(*m));
      (in_place ? row_.in_place : row_.out_of_place) = *m;
    }
    print("\n");
    summary_.rows.push_back(row_);
  }
  return absl::OkStatus();
}

absl::Status PerfRun::startColl(const Counts& counts, DataType type, ReduceOp op, int root,
                                bool in_place, int iter) {
  const std::size_t es = kernels::dataTypeSize(type);
  // Move through the buffers from one iteration to the next, as nccl-tests does, so that
  // consecutive iterations do not reuse the same cache lines.
  const std::size_t total = std::max(counts.send, counts.recv) * es;
  const std::size_t steps = total > 0 ? std::max<std::size_t>(1, o_.max_bytes / total) : 1;
  const std::size_t shift = total * (static_cast<std::size_t>(iter) % steps);
  const auto r = static_cast<std::size_t>(rank_);
  CallArgs a;
  a.counts = counts;
  a.type = type;
  a.op = op;
  a.root = root;
  a.in_place = in_place;
  a.scratch = send_.data() + shift;
  if (in_place) {
    a.send = recv_.data() + shift + counts.send_inplace_offset * r * es;
    a.recv = recv_.data() + shift + counts.recv_inplace_offset * r * es;
  } else {
    a.send = send_.data() + shift;
    a.recv = recv_.data() + shift;
  }
  GW_PERF_RETURN_IF_ERROR(runCollective(c_, *comm_, *memory_, a));
  if (o_.blocking) {
    GW_PERF_RETURN_IF_ERROR(comm_->synchronize());
    GW_PERF_RETURN_IF_ERROR(comm_->barrier());
  }
  return absl::OkStatus();
}

absl::StatusOr<Measurement> PerfRun::benchTime(const Counts& counts, DataType type, ReduceOp op,
                                               int root, bool in_place) {
  // One call to settle, then everyone starts together.
  GW_PERF_RETURN_IF_ERROR(startColl(counts, type, op, root, in_place, 0));
  GW_PERF_RETURN_IF_ERROR(comm_->synchronize());
  GW_PERF_RETURN_IF_ERROR(comm_->barrier());

  const int calls = o_.iters * o_.agg_iters;
  const Clock::time_point t0 = Clock::now();
  for (int iter = 0; iter < o_.iters; ++iter) {
    for (int a = 0; a < o_.agg_iters; ++a) {
      GW_PERF_RETURN_IF_ERROR(startColl(counts, type, op, root, in_place, iter * o_.agg_iters + a));
    }
  }
  const double cpu_seconds = std::chrono::duration<double>(Clock::now() - t0).count() / calls;
  GW_PERF_RETURN_IF_ERROR(comm_->synchronize());
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count() / calls;
  absl::StatusOr<double> combined = combineTime(o_.report_cputime ? cpu_seconds : seconds);
  if (!combined.ok()) return combined.status();

  const std::size_t es = kernels::dataTypeSize(type);
  Measurement m;
  m.time_us = *combined * 1e6;
  m.algbw = *combined > 0 ? algBytes(c_, counts, es, size_) / 1e9 / *combined : 0;
  m.busbw = m.algbw * busFactor(c_, size_);
  GW_PERF_RETURN_IF_ERROR(comm_->barrier());

  ++rep_;
  if (o_.check > 0) {
    std::int64_t wrong = 0;
    for (int i = 0; i < o_.check; ++i) {
      absl::StatusOr<std::int64_t> local =
          check(counts, type, op, root, in_place, rep_ * 33 + static_cast<std::uint64_t>(i));
      if (!local.ok()) return local.status();
      if (*local != 0) ++local_errors_;
      absl::StatusOr<std::int64_t> total = sumOverRanks(*local);
      if (!total.ok()) return total.status();
      wrong = *total;
      if (wrong != 0) break;
    }
    m.wrong = wrong;
  }
  bw_sum_ += m.busbw;
  ++bw_count_;
  return m;
}

absl::StatusOr<std::int64_t> PerfRun::check(const Counts& counts, DataType type, ReduceOp op,
                                            int root, bool in_place, std::uint64_t seed) {
  const std::size_t es = kernels::dataTypeSize(type);
  const auto r = static_cast<std::size_t>(rank_);
  DataSpec spec;
  spec.collective = c_;
  spec.type = type;
  spec.op = op;
  spec.root = root;
  spec.ranks = size_;
  spec.seed = seed;
  spec.counts = counts;

  GW_PERF_RETURN_IF_ERROR(memory_->zero(recv_.data(), counts.recv * es));
  std::vector<char> input(counts.send * es);
  makeInput(spec, rank_, 0, counts.send, input.data());
  char* input_at = in_place ? recv_.data() + counts.send_inplace_offset * r * es : send_.data();
  GW_PERF_RETURN_IF_ERROR(memory_->toDevice(input_at, input.data(), input.size()));

  GW_PERF_RETURN_IF_ERROR(startColl(counts, type, op, root, in_place, 0));
  GW_PERF_RETURN_IF_ERROR(comm_->synchronize());

  std::vector<char> got(counts.recv * es);
  const char* output_at = recv_.data() + (in_place ? counts.recv_inplace_offset * r * es : 0);
  GW_PERF_RETURN_IF_ERROR(memory_->toHost(got.data(), output_at, got.size()));
  const std::vector<char> want = makeExpected(spec, rank_, in_place);
  return countWrong(spec, got.data(), want.data(), counts.recv);
}

absl::StatusOr<double> PerfRun::combineTime(double seconds) {
  double* host_in = &seconds;
  char* in = scalars_.data();
  char* out = scalars_.data() + sizeof(double);
  GW_PERF_RETURN_IF_ERROR(memory_->toDevice(in, host_in, sizeof(double)));
  switch (o_.average) {
    case 0:
      GW_PERF_RETURN_IF_ERROR(comm_->broadcast(in, out, 1, DataType::kFloat64, 0));
      break;
    case 1:
      GW_PERF_RETURN_IF_ERROR(comm_->allReduce(in, out, 1, DataType::kFloat64, ReduceOp::kSum));
      break;
    case 2:
      GW_PERF_RETURN_IF_ERROR(comm_->allReduce(in, out, 1, DataType::kFloat64, ReduceOp::kMin));
      break;
    default:
      GW_PERF_RETURN_IF_ERROR(comm_->allReduce(in, out, 1, DataType::kFloat64, ReduceOp::kMax));
      break;
  }
  GW_PERF_RETURN_IF_ERROR(comm_->synchronize());
  double result = 0;
  GW_PERF_RETURN_IF_ERROR(memory_->toHost(&result, out, sizeof(double)));
  if (o_.average == 1) result /= size_;
  return result;
}

absl::StatusOr<std::int64_t> PerfRun::sumOverRanks(std::int64_t v) {
  char* in = scalars_.data() + 2 * sizeof(double);
  char* out = scalars_.data() + 3 * sizeof(double);
  GW_PERF_RETURN_IF_ERROR(memory_->toDevice(in, &v, sizeof(v)));
  GW_PERF_RETURN_IF_ERROR(comm_->allReduce(in, out, 1, DataType::kInt64, ReduceOp::kSum));
  GW_PERF_RETURN_IF_ERROR(comm_->synchronize());
  std::int64_t result = 0;
  GW_PERF_RETURN_IF_ERROR(memory_->toHost(&result, out, sizeof(result)));
  return result;
}

absl::StatusOr<std::vector<std::string>> PerfRun::gatherLines(const std::string& line) {
  std::vector<char> mine(kLineBytes, 0);
  std::memcpy(mine.data(), line.data(), std::min(line.size(), kLineBytes - 2));
  if (line.size() > kLineBytes - 2) mine[kLineBytes - 2] = '\n';
  const std::size_t n = static_cast<std::size_t>(size_);
  absl::StatusOr<Buffer> send = Buffer::allocate(*memory_, kLineBytes);
  if (!send.ok()) return send.status();
  absl::StatusOr<Buffer> recv = Buffer::allocate(*memory_, kLineBytes * n);
  if (!recv.ok()) return recv.status();
  GW_PERF_RETURN_IF_ERROR(memory_->toDevice(send->data(), mine.data(), kLineBytes));
  GW_PERF_RETURN_IF_ERROR(
      comm_->allGather(send->data(), recv->data(), kLineBytes, DataType::kUint8));
  GW_PERF_RETURN_IF_ERROR(comm_->synchronize());
  std::vector<char> all(kLineBytes * n);
  GW_PERF_RETURN_IF_ERROR(memory_->toHost(all.data(), recv->data(), all.size()));
  std::vector<std::string> lines;
  for (std::size_t i = 0; i < n; ++i) {
    const char* p = all.data() + i * kLineBytes;
    lines.emplace_back(p, strnlen(p, kLineBytes));
  }
  return lines;
}

}  // namespace

int perfMain(Collective collective, int argc, char** argv) {
  setlinebuf(stdout);
  const std::string program = programName(argc > 0 ? argv[0] : "perf");
  absl::StatusOr<ParsedArgs> parsed = parsePerfArgs(argc, argv, collective);
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(),
                 std::string(parsed.status().message()).c_str());
    if (absl::IsNotFound(parsed.status())) {
      std::fputs(perfUsage(program.c_str(), collective).c_str(), stdout);
    }
    return 2;
  }
  if (parsed->help) {
    std::fputs(perfUsage(program.c_str(), collective).c_str(), stdout);
    return 0;
  }
  const PerfOptions& options = parsed->options;
  absl::StatusOr<Plan> plan = resolvePlan(collective, options);
  if (!plan.ok()) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), std::string(plan.status().message()).c_str());
    return 2;
  }
  if (plan->memory == comm::MemoryKind::kCuda) {
    // Fail before the collective creation when this machine cannot have CUDA buffers.
    if (absl::StatusOr<std::unique_ptr<Memory>> probe = makeCudaMemory(); !probe.ok()) {
      std::fprintf(stderr, "%s: %s\n", program.c_str(),
                   std::string(probe.status().message()).c_str());
      return 1;
    }
  }
  absl::StatusOr<std::unique_ptr<comm::Communicator>> comm =
      comm::createFromEnvironment(plan->options);
  if (!comm.ok()) {
    std::fprintf(stderr, "%s: cannot create the %s communicator: %s\n", program.c_str(),
                 plan->backend.c_str(), comm.status().ToString().c_str());
    return 1;
  }
  // After the communicator: the nccl backend picks the CUDA device the buffers must live on.
  absl::StatusOr<std::unique_ptr<Memory>> memory = makeMemory(plan->memory);
  if (!memory.ok()) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), memory.status().ToString().c_str());
    return 1;
  }
  PerfRun run(collective, options, std::move(*plan), program, std::move(*comm), std::move(*memory));
  return run.run();
}

}  // namespace gangway::bench
