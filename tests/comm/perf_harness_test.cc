// The *_perf harness's pieces, in process: nccl-tests' count rounding and bandwidth factors, the
// flag parser, the exact output formats, and the checker (that it finds wrong, misplaced and
// imprecise values, and accepts what a correct backend produces).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <gtest/gtest.h>

#include "gangway/kernels/reduce.h"

#include "perf_args.h"
#include "perf_collectives.h"
#include "perf_data.h"
#include "perf_report.h"

namespace gangway::bench {
namespace {

using comm::DataType;
using comm::ReduceOp;

constexpr Collective kAll[] = {Collective::kAllReduce,     Collective::kAllGather,
                               Collective::kReduceScatter, Collective::kBroadcast,
                               Collective::kReduce,        Collective::kAllToAll,
                               Collective::kSendRecv};

TEST(PerfCounts, FollowNcclTests) {
  // 1 MiB of float over 8 ranks: all-gather's share is 32768 elements per rank.
  Counts ag = collectiveCounts(Collective::kAllGather, 262144, 4, 8);
  EXPECT_EQ(ag.param, 32768u);
  EXPECT_EQ(ag.send, 32768u);
  EXPECT_EQ(ag.recv, 262144u);
  EXPECT_EQ(ag.send_inplace_offset, 32768u);
  EXPECT_EQ(printedBytes(ag, 4), 1048576u);
  // Shares are rounded down to 16 bytes: 100 floats over 3 ranks -> 33 -> 32 each.
  Counts rs = collectiveCounts(Collective::kReduceScatter, 100, 4, 3);
  EXPECT_EQ(rs.param, 32u);
  EXPECT_EQ(rs.send, 96u);
  EXPECT_EQ(rs.recv, 32u);
  EXPECT_EQ(rs.recv_inplace_offset, 32u);
  EXPECT_EQ(printedBytes(rs, 4), 384u);
  // Below one aligned share per rank, nothing moves (nccl-tests prints size 0).
  EXPECT_EQ(collectiveCounts(Collective::kAllToAll, 2, 4, 2).param, 0u);
  EXPECT_EQ(collectiveCounts(Collective::kAllToAll, 16, 1, 1).param, 16u);
  Counts ar = collectiveCounts(Collective::kAllReduce, 7, 8, 4);
  EXPECT_EQ(ar.param, 7u);
  EXPECT_EQ(ar.send, 7u);
  EXPECT_EQ(ar.recv, 7u);
}

TEST(PerfCounts, BandwidthFactors) {
  EXPECT_DOUBLE_EQ(busFactor(Collective::kAllReduce, 4), 1.5);
  EXPECT_DOUBLE_EQ(busFactor(Collective::kAllReduce, 1), 0.0);
  EXPECT_DOUBLE_EQ(busFactor(Collective::kAllGather, 4), 0.75);
  EXPECT_DOUBLE_EQ(busFactor(Collective::kReduceScatter, 2), 0.5);
  EXPECT_DOUBLE_EQ(busFactor(Collective::kAllToAll, 8), 0.875);
  EXPECT_DOUBLE_EQ(busFactor(Collective::kBroadcast, 8), 1.0);
  EXPECT_DOUBLE_EQ(busFactor(Collective::kReduce, 8), 1.0);
  EXPECT_DOUBLE_EQ(busFactor(Collective::kSendRecv, 8), 1.0);
  // algbw counts the whole array for the sliced collectives.
  const Counts ag = collectiveCounts(Collective::kAllGather, 1024, 4, 4);
  EXPECT_DOUBLE_EQ(algBytes(Collective::kAllGather, ag, 4, 4), 4096.0);
  const Counts ar = collectiveCounts(Collective::kAllReduce, 1024, 4, 4);
  EXPECT_DOUBLE_EQ(algBytes(Collective::kAllReduce, ar, 4, 4), 4096.0);
}

absl::StatusOr<ParsedArgs> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "all_reduce_perf");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return parsePerfArgs(static_cast<int>(args.size()), argv.data(), Collective::kAllReduce);
}

TEST(PerfArgs, NcclTestsDefaultsAndFlags) {
  auto d = parse({});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->options.min_bytes, 32u << 20);
  EXPECT_EQ(d->options.max_bytes, 32u << 20);
  EXPECT_EQ(d->options.iters, 20);
  EXPECT_EQ(d->options.warmup_iters, 5);
  EXPECT_EQ(d->options.check, 1);
  EXPECT_EQ(d->options.average, 1);
  EXPECT_EQ(d->options.type, DataType::kFloat32);
  EXPECT_EQ(d->options.op, ReduceOp::kSum);

  auto o = parse({"-b",       "1.5K", "--maxbytes",  "2g",   "-f",     "2",         "-n",
                  "7",        "-w",   "0",           "-c",   "0",      "-o",        "all",
                  "-d",       "bf16", "-r",          "all",  "-z",     "1",         "-a",
                  "3",        "-m",   "2",           "-T",   "5",      "--backend", "mpi",
                  "--memory", "host", "--algorithm", "ring", "--json", "x.json"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->options.min_bytes, 1536u);
  EXPECT_EQ(o->options.max_bytes, std::size_t{2} << 30);
  EXPECT_EQ(o->options.step_factor, 2u);
  EXPECT_EQ(o->options.iters, 7);
  EXPECT_EQ(o->options.warmup_iters, 0);
  EXPECT_EQ(o->options.check, 0);
  EXPECT_TRUE(o->options.all_ops);
  EXPECT_EQ(o->options.type, DataType::kBFloat16);
  EXPECT_TRUE(o->options.all_roots);
  EXPECT_TRUE(o->options.blocking);
  EXPECT_EQ(o->options.average, 3);
  EXPECT_EQ(o->options.agg_iters, 2);
  EXPECT_EQ(o->options.timeout_s, 5.0);
  EXPECT_EQ(o->options.backend, "mpi");
  EXPECT_EQ(o->options.algorithm, comm::Algorithm::kRing);
  EXPECT_EQ(o->options.json_path, "x.json");

  EXPECT_TRUE(parse({"-h"})->help);
  EXPECT_TRUE(absl::IsInvalidArgument(parse({"-b", "2M", "-e", "1M"}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(parse({"-d", "complex"}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(parse({"-f", "0"}).status()));
  EXPECT_TRUE(absl::IsNotFound(parse({"--nope"}).status()));
  EXPECT_TRUE(absl::IsNotFound(parse({"-b"}).status()));
  EXPECT_TRUE(absl::IsNotFound(parse({"stray"}).status()));
}

TEST(PerfArgs, Sizes) {
  EXPECT_EQ(parseSize("8"), 8u);
  EXPECT_EQ(parseSize("4k"), 4096u);
  EXPECT_EQ(parseSize("128M"), std::size_t{128} << 20);
  EXPECT_EQ(parseSize("1G"), std::size_t{1} << 30);
  EXPECT_FALSE(parseSize("1T"));
  EXPECT_FALSE(parseSize("-1"));
  EXPECT_FALSE(parseSize("1MB"));
  EXPECT_FALSE(parseSize(""));
}

TEST(PerfReport, ExactNcclTestsFormats) {
  EXPECT_EQ(formatTimeUs(12.345), "  12.35");
  EXPECT_EQ(formatTimeUs(123.45), "  123.5");
  EXPECT_EQ(formatTimeUs(12345.6), "  12346");
  Row row;
  row.bytes = 1048576;
  row.count = 262144;
  row.type = "float";
  row.redop = "sum";
  row.root = -1;
  EXPECT_EQ(formatRowStart(row), "     1048576        262144     float     sum      -1");
  Measurement m{105.9, 9.9, 17.33, 0};
  EXPECT_EQ(formatMeasurement(m), "    105.9    9.90   17.33      0");
  m.wrong.reset();
  EXPECT_EQ(formatMeasurement(m), "    105.9    9.90   17.33    N/A");
  EXPECT_EQ(formatTrailer(0, 220.921, std::nullopt),
            "# Out of bounds values : 0 OK\n# Avg bus bandwidth    : 220.921 \n#\n");
  EXPECT_EQ(formatTrailer(2, 1.5, 10.0),
            "# Out of bounds values : 2 FAILED\n# Avg bus bandwidth    : 1.5 FAILED\n#\n");
  EXPECT_EQ(formatDevice(0, 0, 5092, "GENOA-06", 0, "0x21", "NVIDIA GeForce RTX 5090"),
            "#  Rank  0 Group  0 Pid   5092 on   GENOA-06 device  0 [0x21] NVIDIA GeForce RTX "
            "5090\n");
  PerfOptions o;
  o.min_bytes = 8;
  o.max_bytes = 134217728;
  o.step_factor = 2;
  EXPECT_EQ(formatParameters(o),
            "# nThread 1 nGpus 1 minBytes 8 maxBytes 134217728 step: 2(factor) warmup iters: 5 "
            "iters: 20 agg iters: 1 validation: 1 graph: 0\n");
  const std::string columns = formatColumns(false);
  EXPECT_NE(columns.find("#       size         count      type   redop    root     time   algbw"
                         "   busbw #wrong     time   algbw   busbw #wrong\n"),
            std::string::npos);
  EXPECT_NE(formatColumns(true).find(" cputime "), std::string::npos);
}

DataSpec spec(Collective c, DataType type, ReduceOp op, int ranks, std::size_t count) {
  DataSpec s;
  s.collective = c;
  s.type = type;
  s.op = op;
  s.ranks = ranks;
  s.root = ranks - 1;
  s.seed = 7;
  s.counts = collectiveCounts(c, count, kernels::dataTypeSize(type), ranks);
  return s;
}

// A correct result passes; one element changed by one unit fails; so do swapped slices.
TEST(PerfData, CheckerFindsWrongValues) {
  for (Collective c : kAll) {
    for (DataType type : kernels::kAllDataTypes) {
      for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kProd, ReduceOp::kMin, ReduceOp::kAvg}) {
        const DataSpec s = spec(c, type, op, 3, 96);
        const std::size_t es = kernels::dataTypeSize(type);
        SCOPED_TRACE(std::string(collectiveName(c)) + " " + kernels::dataTypeName(type) + " " +
                     kernels::reduceOpName(op));
        const std::vector<char> want = makeExpected(s, 1, false);
        ASSERT_EQ(want.size(), s.counts.recv * es);
        EXPECT_EQ(countWrong(s, want.data(), want.data(), s.counts.recv), 0);
        // One element, one unit off (in the type's own representation).
        std::vector<char> got = want;
        const std::size_t at = s.counts.recv / 2;
        if (type == DataType::kFloat16 || type == DataType::kBFloat16) {
          std::uint16_t bits;
          std::memcpy(&bits, got.data() + at * es, 2);
          const float v = type == DataType::kFloat16 ? kernels::halfToFloat(bits)
                                                     : kernels::bfloat16ToFloat(bits);
          bits = type == DataType::kFloat16 ? kernels::floatToHalf(v + 1)
                                            : kernels::floatToBfloat16(v + 1);
          std::memcpy(got.data() + at * es, &bits, 2);
        } else if (type == DataType::kFloat32) {
          float v;
          std::memcpy(&v, got.data() + at * es, 4);
          v += 1;
          std::memcpy(got.data() + at * es, &v, 4);
        } else if (type == DataType::kFloat64) {
          double v;
          std::memcpy(&v, got.data() + at * es, 8);
          v += 1;
          std::memcpy(got.data() + at * es, &v, 8);
        } else {
          got[at * es] = static_cast<char>(got[at * es] + 1);  // little endian: +1
        }
        EXPECT_EQ(countWrong(s, got.data(), want.data(), s.counts.recv), 1);
      }
    }
  }
}

TEST(PerfData, CheckerFindsMisplacedSlices) {
  // All-gather: rank 0's and rank 1's slices swapped.
  const DataSpec s = spec(Collective::kAllGather, DataType::kInt32, ReduceOp::kSum, 3, 96);
  const std::vector<char> want = makeExpected(s, 0, false);
  std::vector<char> got = want;
  const std::size_t slice = s.counts.param * 4;
  std::memcpy(got.data(), want.data() + slice, slice);
  std::memcpy(got.data() + slice, want.data(), slice);
  EXPECT_GT(countWrong(s, got.data(), want.data(), s.counts.recv),
            static_cast<std::int64_t>(s.counts.param));
  // All-to-all and send/recv: another rank's expected output is not this rank's.
  for (Collective c : {Collective::kAllToAll, Collective::kSendRecv, Collective::kReduceScatter}) {
    const DataSpec t = spec(c, DataType::kFloat32, ReduceOp::kSum, 4, 256);
    const std::vector<char> mine = makeExpected(t, 1, false);
    const std::vector<char> other = makeExpected(t, 2, false);
    EXPECT_GT(countWrong(t, other.data(), mine.data(), t.counts.recv), 0) << collectiveName(c);
  }
}

TEST(PerfData, FloatToleranceAcceptsRounding) {
  // A reduced float result one unit in the last place away is not wrong; data only moved is.
  DataSpec s = spec(Collective::kAllReduce, DataType::kFloat32, ReduceOp::kAvg, 3, 64);
  std::vector<char> want = makeExpected(s, 0, false);
  std::vector<char> got = want;
  float v;
  std::memcpy(&v, got.data(), 4);
  v = std::nextafter(v, 1e30f);
  std::memcpy(got.data(), &v, 4);
  EXPECT_EQ(countWrong(s, got.data(), want.data(), s.counts.recv), 0);
  s = spec(Collective::kBroadcast, DataType::kFloat32, ReduceOp::kSum, 3, 64);
  want = makeExpected(s, 0, false);
  got = want;
  std::memcpy(&v, got.data(), 4);
  v = std::nextafter(v, 1e30f);
  std::memcpy(got.data(), &v, 4);
  EXPECT_EQ(countWrong(s, got.data(), want.data(), s.counts.recv), 1);
}

TEST(PerfData, ExpectedValues) {
  // All-reduce sum of three ranks = the element-wise sum of their inputs.
  const DataSpec s = spec(Collective::kAllReduce, DataType::kInt64, ReduceOp::kSum, 3, 16);
  std::vector<std::int64_t> in[3];
  for (int r = 0; r < 3; ++r) {
    in[r].resize(16);
    makeInput(s, r, 0, 16, in[r].data());
  }
  const std::vector<char> want = makeExpected(s, 2, false);
  for (std::size_t i = 0; i < 16; ++i) {
    std::int64_t v;
    std::memcpy(&v, want.data() + i * 8, 8);
    EXPECT_EQ(v, in[0][i] + in[1][i] + in[2][i]);
  }
  // Ranks differ, and inputs are not all equal (a backend that copies would be caught).
  EXPECT_NE(in[0], in[1]);
  // Reduce: non-root ranks keep their buffer (zeros out of place, their input in place).
  const DataSpec red = spec(Collective::kReduce, DataType::kInt32, ReduceOp::kMax, 3, 16);
  const std::vector<char> zeros = makeExpected(red, 0, false);
  EXPECT_EQ(zeros, std::vector<char>(zeros.size(), 0));
  std::vector<char> input(16 * 4);
  makeInput(red, 0, 0, 16, input.data());
  EXPECT_EQ(makeExpected(red, 0, true), input);
}

}  // namespace
}  // namespace gangway::bench
