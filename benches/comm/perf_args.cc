#include "perf_args.h"

#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include <getopt.h>

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>

namespace gangway::bench {

namespace {

// Long-only options of gangway's own.
enum LongOnly : int {
  kBackend = 256,
  kMemory,
  kAlgorithm,
  kJson,
};

const option kLongOptions[] = {
    {"nthreads", required_argument, nullptr, 't'},
    {"ngpus", required_argument, nullptr, 'g'},
    {"minbytes", required_argument, nullptr, 'b'},
    {"maxbytes", required_argument, nullptr, 'e'},
    {"stepbytes", required_argument, nullptr, 'i'},
    {"stepfactor", required_argument, nullptr, 'f'},
    {"iters", required_argument, nullptr, 'n'},
    {"agg_iters", required_argument, nullptr, 'm'},
    {"warmup_iters", required_argument, nullptr, 'w'},
    {"parallel_init", required_argument, nullptr, 'p'},
    {"check", required_argument, nullptr, 'c'},
    {"op", required_argument, nullptr, 'o'},
    {"datatype", required_argument, nullptr, 'd'},
    {"root", required_argument, nullptr, 'r'},
    {"blocking", required_argument, nullptr, 'z'},
    {"stream_null", required_argument, nullptr, 'y'},
    {"timeout", required_argument, nullptr, 'T'},
    {"cudagraph", required_argument, nullptr, 'G'},
    {"report_cputime", required_argument, nullptr, 'C'},
    {"average", required_argument, nullptr, 'a'},
    {"help", no_argument, nullptr, 'h'},
    {"backend", required_argument, nullptr, kBackend},
    {"memory", required_argument, nullptr, kMemory},
    {"algorithm", required_argument, nullptr, kAlgorithm},
    {"json", required_argument, nullptr, kJson},
    {nullptr, 0, nullptr, 0},
};
constexpr const char* kShortOptions = ":t:g:b:e:i:f:n:m:w:p:c:o:d:r:z:y:T:hG:C:a:";

bool hasOp(Collective c) {
  return c == Collective::kAllReduce || c == Collective::kReduceScatter || c == Collective::kReduce;
}
bool hasRoot(Collective c) { return c == Collective::kBroadcast || c == Collective::kReduce; }

absl::Status badValue(const char* value, const char* name, const char* expected) {
  return absl::InvalidArgumentError(
      absl::StrFormat("invalid value '%s' for '%s': expected %s", value, name, expected));
}

// A whole-string integer in [min, max] (strtol base 0, as nccl-tests, but checked).
absl::StatusOr<long> intValue(const char* value, const char* name, long min, long max,
                              const char* expected) {
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(value, &end, 0);
  if (errno != 0 || end == value || *end != '\0' || v < min || v > max) {
    return badValue(value, name, expected);
  }
  return v;
}

std::string typeChoices() {
  return "int8, uint8, int32, uint32, int64, uint64, half, float, double, bfloat16 or all";
}

}  // namespace

std::optional<std::size_t> parseSize(const char* text) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text, &end);
  if (errno != 0 || end == text || !std::isfinite(v) || v < 0) return std::nullopt;
  while (*end == ' ') ++end;
  double units = 1;
  if (*end != '\0') {
    switch (*end) {
      case 'G':
      case 'g':
        units = 1024.0 * 1024 * 1024;
        break;
      case 'M':
      case 'm':
        units = 1024.0 * 1024;
        break;
      case 'K':
      case 'k':
        units = 1024.0;
        break;
      default:
        return std::nullopt;
    }
    ++end;
    if (*end != '\0') return std::nullopt;
  }
  const double bytes = v * units;
  if (bytes > 9.0e18) return std::nullopt;
  return static_cast<std::size_t>(bytes);
}

absl::StatusOr<ParsedArgs> parsePerfArgs(int argc, char** argv, Collective /*collective*/) {
  ParsedArgs out;
  PerfOptions& o = out.options;
  optind = 0;  // glibc: full re-initialisation
  opterr = 0;  // our own messages
  while (true) {
    int index = 0;
    const int c = getopt_long(argc, argv, kShortOptions, kLongOptions, &index);
    if (c == -1) break;
    const char* v = optarg;
    switch (c) {
      case 't':
      case 'g': {
        const char* name = c == 't' ? "nthreads" : "ngpus";
        auto n = intValue(v, name, 1, 1, "1");
        if (!n.ok()) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "invalid value '%s' for '%s': gangway's benchmarks run one rank per process (use "
              "gangway run --nproc-per-node N or mpirun -np N)",
              v, name));
        }
        break;
      }
      case 'b':
      case 'e': {
        const char* name = c == 'b' ? "minbytes" : "maxbytes";
        const std::optional<std::size_t> size = parseSize(v);
        if (!size) {
          return absl::InvalidArgumentError(
              absl::StrFormat("invalid size specified for '%s': '%s'", name, v));
        }
        (c == 'b' ? o.min_bytes : o.max_bytes) = *size;
        break;
      }
      case 'i': {
        const std::optional<std::size_t> size = parseSize(v);
        if (!size) {
          return absl::InvalidArgumentError(
              absl::StrFormat("invalid size specified for 'stepbytes': '%s'", v));
        }
        o.step_bytes = *size;
        break;
      }
      case 'f': {
        auto n = intValue(v, "stepfactor", 1, 1 << 20, "an integer >= 1");
        if (!n.ok()) return n.status();
        o.step_factor = static_cast<std::size_t>(*n);
        break;
      }
      case 'n': {
        auto n = intValue(v, "iters", 1, INT_MAX, "an integer >= 1");
        if (!n.ok()) return n.status();
        o.iters = static_cast<int>(*n);
        break;
      }
      case 'm': {
        auto n = intValue(v, "agg_iters", 1, INT_MAX, "an integer >= 1");
        if (!n.ok()) return n.status();
        o.agg_iters = static_cast<int>(*n);
        break;
      }
      case 'w': {
        auto n = intValue(v, "warmup_iters", 0, INT_MAX, "an integer >= 0");
        if (!n.ok()) return n.status();
        o.warmup_iters = static_cast<int>(*n);
        break;
      }
      case 'c': {
        auto n = intValue(v, "check", 0, INT_MAX, "an integer >= 0");
        if (!n.ok()) return n.status();
        o.check = static_cast<int>(*n);
        break;
      }
      case 'p':
      case 'y': {
        auto n = intValue(v, c == 'p' ? "parallel_init" : "stream_null", 0, 1, "0 or 1");
        if (!n.ok()) return n.status();
        break;  // no meaning for one rank per process
      }
      case 'G': {
        auto n = intValue(v, "cudagraph", 0, INT_MAX, "an integer >= 0");
        if (!n.ok()) return n.status();
        break;  // no CUDA graphs: the header says "graph: 0"
      }
      case 'C': {
        auto n = intValue(v, "report_cputime", 0, 1, "0 or 1");
        if (!n.ok()) return n.status();
        o.report_cputime = *n == 1;
        break;
      }
      case 'z': {
        auto n = intValue(v, "blocking", 0, 1, "0 or 1");
        if (!n.ok()) return n.status();
        o.blocking = *n == 1;
        break;
      }
      case 'a': {
        auto n = intValue(v, "average", 0, 3, "0 (rank 0), 1 (mean), 2 (min) or 3 (max)");
        if (!n.ok()) return n.status();
        o.average = static_cast<int>(*n);
        break;
      }
      case 'o': {
        if (std::strcmp(v, "all") == 0) {
          o.all_ops = true;
        } else if (auto op = kernels::parseReduceOp(v); op.ok()) {
          o.all_ops = false;
          o.op = *op;
        } else {
          return absl::InvalidArgumentError(
              absl::StrFormat("invalid op '%s': expected sum, prod, min, max, avg or all", v));
        }
        break;
      }
      case 'd': {
        if (std::strcmp(v, "all") == 0) {
          o.all_types = true;
        } else if (auto type = kernels::parseDataType(v); type.ok()) {
          o.all_types = false;
          o.type = *type;
        } else {
          return absl::InvalidArgumentError(
              absl::StrFormat("invalid type '%s': expected %s", v, typeChoices()));
        }
        break;
      }
      case 'r': {
        if (std::strcmp(v, "all") == 0) {
          o.all_roots = true;
        } else {
          auto n = intValue(v, "root", 0, INT_MAX, "a rank >= 0 or all");
          if (!n.ok()) return n.status();
          o.all_roots = false;
          o.root = static_cast<int>(*n);
        }
        break;
      }
      case 'T': {
        errno = 0;
        char* end = nullptr;
        const double s = std::strtod(v, &end);
        if (errno != 0 || end == v || *end != '\0' || !(s >= 0) || s > 1e7) {
          return badValue(v, "timeout", "a number of seconds >= 0");
        }
        o.timeout_s = s;
        break;
      }
      case kBackend:
        if (*v == '\0') return badValue(v, "backend", "ucx, mpi or nccl");
        o.backend = v;
        break;
      case kMemory: {
        auto kind = comm::parseMemoryKind(v);
        if (!kind.ok()) return badValue(v, "memory", "host or cuda");
        o.memory = *kind;
        break;
      }
      case kAlgorithm: {
        auto a = comm::parseAlgorithm(v);
        if (!a.ok()) return badValue(v, "algorithm", "auto, rd, rabenseifner or ring");
        o.algorithm = *a;
        break;
      }
      case kJson:
        if (*v == '\0') return badValue(v, "json", "a file name");
        o.json_path = v;
        break;
      case 'h':
        out.help = true;
        return out;
      case ':':
        return absl::NotFoundError(
            absl::StrFormat("option '%s' requires an argument", argv[optind - 1]));
      default: {
        const std::string name =
            optopt != 0 ? std::string("-") + static_cast<char>(optopt) : argv[optind - 1];
        return absl::NotFoundError(absl::StrFormat("invalid option '%s'", name));
      }
    }
  }
  if (optind < argc) {
    return absl::NotFoundError(absl::StrFormat("unexpected argument '%s'", argv[optind]));
  }
  if (o.min_bytes > o.max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("invalid sizes for 'minbytes' and 'maxbytes': %llu > %llu",
                        static_cast<unsigned long long>(o.min_bytes),
                        static_cast<unsigned long long>(o.max_bytes)));
  }
  if (o.step_factor <= 1 && o.step_bytes == 0 && o.min_bytes < o.max_bytes) {
    return absl::InvalidArgumentError(
        "invalid value '0' for 'stepbytes': expected a size > 0 (or a stepfactor > 1)");
  }
  return out;
}

std::string perfUsage(const char* program, Collective collective) {
  std::string u = absl::StrCat("USAGE: ", program, " \n\t");
  const auto line = [&u](const char* text) { absl::StrAppend(&u, text, " \n\t"); };
  line("[-t,--nthreads <num threads>] (1: one rank per process)");
  line("[-g,--ngpus <gpus per thread>] (1: one rank per process)");
  line("[-b,--minbytes <min size in bytes>]");
  line("[-e,--maxbytes <max size in bytes>]");
  line("[-i,--stepbytes <increment size>]");
  line("[-f,--stepfactor <increment factor>]");
  line("[-n,--iters <iteration count>]");
  line("[-m,--agg_iters <aggregated iteration count>]");
  line("[-w,--warmup_iters <warmup iteration count>]");
  line("[-p,--parallel_init <0/1>] (accepted, no effect)");
  line("[-c,--check <check iteration count>]");
  if (hasOp(collective)) line("[-o,--op <sum/prod/min/max/avg/all>]");
  line("[-d,--datatype <nccltype/all>]");
  if (hasRoot(collective)) line("[-r,--root <root/all>]");
  line("[-z,--blocking <0/1>]");
  line("[-y,--stream_null <0/1>] (accepted, no effect)");
  line("[-T,--timeout <time in seconds>]");
  line("[-G,--cudagraph <num graph launches>] (accepted, no effect)");
  line("[-C,--report_cputime <0/1>]");
  line("[-a,--average <0/1/2/3> report average iteration time <0=RANK0/1=AVG/2=MIN/3=MAX>]");
  line("[--backend <ucx/mpi/nccl>] (default: nccl for cuda memory, ucx otherwise)");
  line("[--memory <host/cuda>] (default: what the backend supports, host first)");
  line("[--algorithm <auto/rd/rabenseifner/ring>] (ucx all-reduce only)");
  line("[--json <file>] (rank 0 writes the parameters and every row as JSON)");
  absl::StrAppend(&u, "[-h,--help]\n");
  return u;
}

}  // namespace gangway::bench
