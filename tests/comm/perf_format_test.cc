// The *_perf benchmarks, run as programs and read the way scripts read nccl-tests: a parser written
// to nccl-tests' format (its column titles, row columns, trailer lines) checks every row against
// the flags (each size once, nccl-tests' count rounding, bus-bandwidth factor, no wrong values),
// the average line against the printed rows, and --json against the text. One rank (a world of
// one), two ranks under mpirun (mpi backend) and under `gangway run --standalone` (ucx backend),
// and the failures: bad flags exit 2 with one line on stderr, a communicator that cannot be
// created exits 1 naming the backend.
//
// Paths come from CMake: GANGWAY_PERF_DIR (the benchmarks), GANGWAY_BIN (gangway) and
// GANGWAY_MPIRUN (empty when mpirun was not found). Every run is bounded by `timeout`.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace {

constexpr int kRunTimeoutSeconds = 240;

// ---------------------------------------------------------------------------------------------
// Running a program.

struct RunResult {
  int code = -1;  // exit status; 128+N for signal N; 124 when `timeout` stopped it
  std::string out;
  std::string err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class PerfFormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "perf_format_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + quote(dir_)).c_str()); }

  // Runs argv without any world in the environment (unless `env` adds one), bounded in time.
  RunResult run(const std::vector<std::string>& argv,
                const std::vector<std::string>& env = {}) const {
    std::string cmd =
        "env -u GANGWAY_STORE -u WORLD_SIZE -u RANK -u LOCAL_RANK -u OMPI_COMM_WORLD_SIZE "
        "-u OMPI_COMM_WORLD_RANK -u OMPI_COMM_WORLD_LOCAL_RANK -u NCCL_TESTS_MIN_BW";
    for (const std::string& e : env) absl::StrAppend(&cmd, " ", quote(e));
    absl::StrAppend(&cmd, " timeout -k 10 ", kRunTimeoutSeconds);
    for (const std::string& a : argv) absl::StrAppend(&cmd, " ", quote(a));
    const std::string out = dir_ + "/stdout";
    const std::string err = dir_ + "/stderr";
    absl::StrAppend(&cmd, " >", quote(out), " 2>", quote(err), " </dev/null");
    const int status = std::system(cmd.c_str());
    RunResult r;
    if (WIFEXITED(status)) {
      r.code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      r.code = 128 + WTERMSIG(status);
    }
    r.out = readFile(out);
    r.err = readFile(err);
    return r;
  }

  std::string bench(const std::string& name) const {
    return std::string(GANGWAY_PERF_DIR) + "/" + name;
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
};

// ---------------------------------------------------------------------------------------------
// nccl-tests' output format.

// The column titles exactly as nccl-tests prints them.
const char* const kColumnTitles[] = {
    "#                                                              out-of-place                 "
    "      in-place          ",
    "#       size         count      type   redop    root     time   algbw   busbw #wrong     "
    "time   algbw   busbw #wrong",
    "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            "
    "(us)  (GB/s)  (GB/s)       ",
};

struct Placement {
  std::string time, algbw, busbw, wrong;  // as printed
};

struct ParsedRow {
  long long size = 0;
  long long count = 0;
  std::string type, redop;
  int root = 0;
  Placement oop, ip;
};

struct ParsedOutput {
  std::vector<std::string> lines;  // without the launcher's "[rankN]:" prefix
  std::vector<ParsedRow> rows;
  std::vector<std::string> device_lines;
  std::optional<std::string> parameters;  // the "# nThread ..." line
  bool has_column_titles = false;
  std::optional<int> out_of_bounds;
  std::string out_of_bounds_verdict;
  std::optional<std::string> avg_busbw;  // as printed
  std::vector<std::string> unparsed;     // lines that are neither comments nor rows
};

ParsedOutput parseNcclTestsOutput(const std::string& text) {
  static const std::regex kPrefix(R"(^\[rank\d+\]:)");
  static const std::regex kRow(
      R"(^\s*(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(-?\d+))"
      R"(\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$)");
  static const std::regex kOob(R"(^# Out of bounds values : (\d+) (OK|FAILED)$)");
  static const std::regex kAvg(R"(^# Avg bus bandwidth    : (\S+) ?(OK|FAILED)?$)");
  static const std::regex kDevice(
      R"(^#  Rank +\d+ Group +\d+ Pid +\d+ on +\S+ device +-?\d+ \[[^\]]+\] .+$)");
  ParsedOutput p;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    const std::string line = std::regex_replace(std::string(raw), kPrefix, "");
    p.lines.push_back(line);
    std::smatch m;
    if (line.rfind("# nThread ", 0) == 0) {
      p.parameters = line;
    } else if (line == kColumnTitles[1]) {
      p.has_column_titles = true;
    } else if (std::regex_match(line, m, kOob)) {
      p.out_of_bounds = std::stoi(m[1]);
      p.out_of_bounds_verdict = m[2];
    } else if (std::regex_match(line, m, kAvg)) {
      p.avg_busbw = m[1];
    } else if (std::regex_match(line, kDevice)) {
      p.device_lines.push_back(line);
    } else if (std::regex_match(line, m, kRow)) {
      ParsedRow r;
      r.size = std::stoll(m[1]);
      r.count = std::stoll(m[2]);
      r.type = m[3];
      r.redop = m[4];
      r.root = std::stoi(m[5]);
      r.oop = {m[6], m[7], m[8], m[9]};
      r.ip = {m[10], m[11], m[12], m[13]};
      p.rows.push_back(r);
    } else if (!line.empty() && line[0] != '#') {
      p.unparsed.push_back(line);
    }
  }
  return p;
}

bool isNumber(const std::string& s, double* v) {
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size() && std::isfinite(*v);
}

// ---------------------------------------------------------------------------------------------
// What the rows must be, from the flags (nccl-tests' definitions).

struct CollectiveRule {
  const char* bench;
  bool sliced;  // all_gather, reduce_scatter, alltoall: sizes rounded to an equal share per rank
  bool has_op;
  bool has_root;
  double (*factor)(int n);
};

const CollectiveRule kCollectives[] = {
    {"all_reduce_perf", false, true, false, [](int n) { return 2.0 * (n - 1) / n; }},
    {"all_gather_perf", true, false, false, [](int n) { return (n - 1.0) / n; }},
    {"reduce_scatter_perf", true, true, false, [](int n) { return (n - 1.0) / n; }},
    {"broadcast_perf", false, false, true, [](int) { return 1.0; }},
    {"reduce_perf", false, true, true, [](int) { return 1.0; }},
    {"alltoall_perf", true, false, false, [](int n) { return (n - 1.0) / n; }},
    {"sendrecv_perf", false, false, false, [](int) { return 1.0; }},
};

std::size_t typeSize(const std::string& type) {
  static const std::map<std::string, std::size_t> kSizes = {
      {"int8", 1},   {"uint8", 1}, {"int32", 4},    {"uint32", 4}, {"int64", 8},
      {"uint64", 8}, {"half", 2},  {"bfloat16", 2}, {"float", 4},  {"double", 8}};
  auto it = kSizes.find(type);
  return it == kSizes.end() ? 0 : it->second;
}

// (printed size, printed count) for a requested size.
std::pair<long long, long long> expectedSizeCount(const CollectiveRule& c, long long bytes,
                                                  std::size_t es, int n) {
  const long long count = bytes / static_cast<long long>(es);
  if (!c.sliced) return {count * static_cast<long long>(es), count};
  const long long per16 = std::max<long long>(1, 16 / static_cast<long long>(es));
  const long long base = (count / n) & ~(per16 - 1);
  return {base * n * static_cast<long long>(es), base};
}

struct Flags {
  long long min_bytes = 8;
  long long max_bytes = 64 << 10;
  long long factor = 4;
};

std::vector<long long> requestedSizes(const Flags& f) {
  std::vector<long long> s;
  for (long long b = f.min_bytes; b <= f.max_bytes; b *= f.factor) s.push_back(b);
  return s;
}

// Checks the parsed output of one successful run. `n`: ranks.
void checkOutput(const CollectiveRule& c, const ParsedOutput& p, const Flags& flags, int n) {
  SCOPED_TRACE(c.bench);
  EXPECT_TRUE(p.unparsed.empty()) << "unparsed: " << absl::StrJoin(p.unparsed, " | ");
  ASSERT_TRUE(p.parameters.has_value());
  EXPECT_NE(p.parameters->find(absl::StrCat("# nThread 1 nGpus 1 minBytes ", flags.min_bytes,
                                            " maxBytes ", flags.max_bytes, " step: ", flags.factor,
                                            "(factor) warmup iters: ")),
            std::string::npos)
      << *p.parameters;
  EXPECT_EQ(p.device_lines.size(), static_cast<std::size_t>(n));
  EXPECT_TRUE(p.has_column_titles);
  // The three title lines, consecutive and exact.
  bool titles = false;
  for (std::size_t i = 0; i + 2 < p.lines.size(); ++i) {
    if (p.lines[i] == kColumnTitles[0] && p.lines[i + 1] == kColumnTitles[1] &&
        p.lines[i + 2] == kColumnTitles[2]) {
      titles = true;
    }
  }
  EXPECT_TRUE(titles) << "column titles differ from nccl-tests'";
  ASSERT_FALSE(p.rows.empty());

  // Rows grouped by (type, redop, root): each group holds every size once, in order.
  std::map<std::tuple<std::string, std::string, int>, std::vector<const ParsedRow*>> groups;
  for (const ParsedRow& r : p.rows) groups[{r.type, r.redop, r.root}].push_back(&r);
  double sum = 0;
  int values = 0;
  for (const auto& [key, rows] : groups) {
    const std::size_t es = typeSize(std::get<0>(key));
    ASSERT_NE(es, 0u) << "unknown type " << std::get<0>(key);
    const std::vector<long long> sizes = requestedSizes(flags);
    ASSERT_EQ(rows.size(), sizes.size()) << std::get<0>(key) << " " << std::get<1>(key);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const ParsedRow& r = *rows[i];
      const auto [size, count] = expectedSizeCount(c, sizes[i], es, n);
      EXPECT_EQ(r.size, size) << "requested " << sizes[i];
      EXPECT_EQ(r.count, count) << "requested " << sizes[i];
      if (!c.has_root) {
        EXPECT_EQ(r.root, -1);
      }
      if (!c.has_op) {
        EXPECT_EQ(r.redop, "none");
      }
      for (const Placement* m : {&r.oop, &r.ip}) {
        double time = 0;
        double alg = 0;
        double bus = 0;
        double wrong = 0;
        ASSERT_TRUE(isNumber(m->time, &time)) << m->time;
        ASSERT_TRUE(isNumber(m->algbw, &alg)) << m->algbw;
        ASSERT_TRUE(isNumber(m->busbw, &bus)) << m->busbw;
        ASSERT_TRUE(isNumber(m->wrong, &wrong)) << m->wrong;
        EXPECT_GE(time, 0);
        EXPECT_EQ(wrong, 0) << "size " << r.size << " " << r.type << " " << r.redop;
        // busbw = algbw * factor, each rounded to 2 decimals when printed.
        const double f = c.factor(n);
        EXPECT_NEAR(bus, alg * f, 0.005 + 0.005 * f + 1e-9) << "size " << r.size;
        sum += bus;
        ++values;
      }
    }
  }
  ASSERT_TRUE(p.out_of_bounds.has_value());
  EXPECT_EQ(*p.out_of_bounds, 0);
  EXPECT_EQ(p.out_of_bounds_verdict, "OK");
  ASSERT_TRUE(p.avg_busbw.has_value());
  double avg = 0;
  ASSERT_TRUE(isNumber(*p.avg_busbw, &avg)) << *p.avg_busbw;
  // The average of every printed busbw (both placements), each printed value within 0.005.
  EXPECT_NEAR(avg, sum / values, 0.0051);
}

// --json against the text rows.
void checkJson(const ParsedOutput& p, const std::string& json_path, const std::string& backend,
               int n) {
  std::ifstream in(json_path);
  ASSERT_TRUE(in) << json_path;
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << "--json is not valid JSON";
  EXPECT_EQ(j.value("backend", ""), backend);
  EXPECT_EQ(j.value("world_size", 0), n);
  EXPECT_TRUE(j.value("ok", false));
  ASSERT_TRUE(j.contains("parameters"));
  ASSERT_TRUE(j.contains("rows") && j["rows"].is_array());
  ASSERT_EQ(j["rows"].size(), p.rows.size());
  for (std::size_t i = 0; i < p.rows.size(); ++i) {
    const nlohmann::json& row = j["rows"][i];
    const ParsedRow& r = p.rows[i];
    EXPECT_EQ(row["size"].get<long long>(), r.size);
    EXPECT_EQ(row["count"].get<long long>(), r.count);
    EXPECT_EQ(row["type"].get<std::string>(), r.type);
    EXPECT_EQ(row["redop"].get<std::string>(), r.redop);
    EXPECT_EQ(row["root"].get<int>(), r.root);
    for (const auto& [key, m] : {std::pair{"out_of_place", &r.oop}, std::pair{"in_place", &r.ip}}) {
      const nlohmann::json& jm = row[key];
      EXPECT_NEAR(jm["algbw"].get<double>(), std::stod(m->algbw), 0.0051) << key;
      EXPECT_NEAR(jm["busbw"].get<double>(), std::stod(m->busbw), 0.0051) << key;
      const double t = jm["time_us"].get<double>();
      EXPECT_NEAR(t, std::stod(m->time), std::max(0.0051, t * 1e-3)) << key;
      EXPECT_EQ(jm["wrong"].get<long long>(), std::stoll(m->wrong)) << key;
    }
  }
  EXPECT_NEAR(j["avg_busbw"].get<double>(), std::stod(*p.avg_busbw),
              1e-5 * std::max(1.0, std::stod(*p.avg_busbw)));
  EXPECT_EQ(j["out_of_bounds"].get<int>(), *p.out_of_bounds);
}

// head + nccl-tests flags for `f` + extra.
std::vector<std::string> command(std::vector<std::string> head, const Flags& f,
                                 const std::vector<std::string>& extra) {
  for (const std::string& s :
       {std::string("-b"), std::to_string(f.min_bytes), std::string("-e"),
        std::to_string(f.max_bytes), std::string("-f"), std::to_string(f.factor), std::string("-n"),
        std::string("3"), std::string("-w"), std::string("1")}) {
    head.push_back(s);
  }
  head.insert(head.end(), extra.begin(), extra.end());
  return head;
}

// ---------------------------------------------------------------------------------------------
// Runs.

TEST_F(PerfFormatTest, ParserReadsNcclTestsOwnOutput) {
  // A run of nccl-tests' all_reduce_perf (2 ranks), as published: the parser must read it, so
  // that what it accepts from gangway is what scripts accept from nccl-tests.
  const std::string nccl =
      "# nThread 1 nGpus 1 minBytes 8 maxBytes 32 step: 2(factor) warmup iters: 5 iters: 20 agg "
      "iters: 1 validation: 1 graph: 0\n#\n# Using devices\n"
      "#  Rank  0 Group  0 Pid   5092 on   GENOA-06 device  0 [0x21] NVIDIA GeForce RTX 5090\n"
      "#  Rank  1 Group  0 Pid   5093 on   GENOA-06 device  1 [0x41] NVIDIA GeForce RTX 5090\n#\n" +
      std::string(kColumnTitles[0]) + "\n" + kColumnTitles[1] + "\n" + kColumnTitles[2] +
      "\n"
      "           8             2     float     sum      -1    14.54    0.00    0.00      0    "
      "15.94    0.00    0.00      0\n"
      "          16             4     float     sum      -1    16.82    0.00    0.00      0    "
      "16.50    0.00    0.00      0\n"
      "          32             8     float     sum      -1    21.87    0.00    0.00      0    "
      "22.93    0.00    0.00      0\n"
      "# Out of bounds values : 0 OK\n# Avg bus bandwidth    : 0 \n#\n";
  const ParsedOutput p = parseNcclTestsOutput(nccl);
  checkOutput(kCollectives[0], p, Flags{8, 32, 2}, 2);
}

TEST_F(PerfFormatTest, EveryBenchmarkWithOneRank) {
  const Flags flags;
  for (const CollectiveRule& c : kCollectives) {
    const std::string json = path(std::string(c.bench) + ".json");
    const RunResult r = run(command({bench(c.bench)}, flags, {"--backend", "ucx", "--json", json}));
    ASSERT_EQ(r.code, 0) << c.bench << "\n" << r.out << r.err;
    const ParsedOutput p = parseNcclTestsOutput(r.out);
    checkOutput(c, p, flags, 1);
    checkJson(p, json, "ucx", 1);
  }
}

TEST_F(PerfFormatTest, AllTypesAndOpsWithOneRank) {
  const Flags flags{1024, 16384, 4};
  const RunResult r = run(
      command({bench("all_reduce_perf")}, flags, {"-d", "all", "-o", "all", "--backend", "ucx"}));
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const ParsedOutput p = parseNcclTestsOutput(r.out);
  checkOutput(kCollectives[0], p, flags, 1);
  EXPECT_EQ(p.rows.size(), 10u * 5u * requestedSizes(flags).size());  // types x ops x sizes
}

// Open MPI unloads its components at MPI_Finalize, leaving allocations LeakSanitizer reports with
// unsymbolizable stacks (no suppression can name them); leaks in gangway's own code are covered by
// the ucx runs. Harmless without sanitizers.
constexpr char kNoLeakCheck[] = "ASAN_OPTIONS=detect_leaks=0";

TEST_F(PerfFormatTest, TwoRanksUnderMpirun) {
  const std::string mpirun = GANGWAY_MPIRUN;
  if (mpirun.empty()) GTEST_SKIP() << "mpirun not found";
  if (!GANGWAY_PERF_HAVE_MPI) GTEST_SKIP() << "this build has no mpi backend";
  const Flags flags;
  for (const CollectiveRule& c : kCollectives) {
    const std::string json = path(std::string(c.bench) + ".json");
    std::vector<std::string> a = command({mpirun, "--allow-run-as-root", "--oversubscribe", "-x",
                                          kNoLeakCheck, "-np", "2", bench(c.bench)},
                                         flags, {"--backend", "mpi", "--json", json, "-T", "60"});
    if (c.has_root) {
      a.push_back("-r");
      a.push_back("all");
    }
    const RunResult r = run(a);
    ASSERT_EQ(r.code, 0) << c.bench << "\n" << r.out << r.err;
    const ParsedOutput p = parseNcclTestsOutput(r.out);
    checkOutput(c, p, flags, 2);
    checkJson(p, json, "mpi", 2);
  }
}

TEST_F(PerfFormatTest, TwoRanksUnderMpirunEveryTypeAndOp) {
  const std::string mpirun = GANGWAY_MPIRUN;
  if (mpirun.empty()) GTEST_SKIP() << "mpirun not found";
  if (!GANGWAY_PERF_HAVE_MPI) GTEST_SKIP() << "this build has no mpi backend";
  const Flags flags{256, 16384, 8};
  for (const char* name : {"all_reduce_perf", "reduce_scatter_perf"}) {
    const RunResult r =
        run(command({mpirun, "--allow-run-as-root", "--oversubscribe", "-x", kNoLeakCheck, "-np",
                     "2", bench(name)},
                    flags, {"--backend", "mpi", "-d", "all", "-o", "all", "-T", "60"}));
    ASSERT_EQ(r.code, 0) << name << "\n" << r.out << r.err;
    const CollectiveRule& c =
        std::string(name) == "all_reduce_perf" ? kCollectives[0] : kCollectives[2];
    checkOutput(c, parseNcclTestsOutput(r.out), flags, 2);
  }
}

// The intended path: ranks started by `gangway run`, bootstrapped through the job's store.
TEST_F(PerfFormatTest, TwoRanksUnderGangwayRun) {
  const Flags flags;
  for (const CollectiveRule& c : kCollectives) {
    const std::string json = path(std::string(c.bench) + ".json");
    const RunResult r = run(command({GANGWAY_BIN, "run", "--standalone", "--nproc-per-node", "2",
                                     "--no-python", bench(c.bench)},
                                    flags, {"--backend", "ucx", "--json", json, "-T", "60"}));
    ASSERT_NE(r.code, 124) << c.bench << " timed out under gangway run\n" << r.out << r.err;
    ASSERT_EQ(r.code, 0) << c.bench << "\n" << r.out << r.err;
    const ParsedOutput p = parseNcclTestsOutput(r.out);
    checkOutput(c, p, flags, 2);
    checkJson(p, json, "ucx", 2);
  }
}

TEST_F(PerfFormatTest, UncheckedRunsPrintNotAvailable) {
  const RunResult r =
      run({bench("all_reduce_perf"), "-b", "8", "-e", "8", "-c", "0", "--backend", "ucx"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const ParsedOutput p = parseNcclTestsOutput(r.out);
  ASSERT_EQ(p.rows.size(), 1u);
  EXPECT_EQ(p.rows[0].oop.wrong, "N/A");
  EXPECT_EQ(p.rows[0].ip.wrong, "N/A");
}

TEST_F(PerfFormatTest, HelpPrintsUsageAndSucceeds) {
  const RunResult r = run({bench("all_reduce_perf"), "-h"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out.rfind("USAGE: all_reduce_perf", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("--backend"), std::string::npos);
}

struct BadFlags {
  std::string bench;
  std::vector<std::string> args;
  std::vector<std::string> message;  // substrings of the one line on stderr
};

TEST_F(PerfFormatTest, BadFlagsExitTwoWithOneLine) {
  std::vector<BadFlags> cases = {
      {"all_reduce_perf", {"-b", "2M", "-e", "1M"}, {"invalid sizes", "minbytes", "maxbytes"}},
      {"all_reduce_perf", {"-b", "1X"}, {"invalid size", "minbytes"}},
      {"all_reduce_perf", {"-d", "complex"}, {"invalid type 'complex'", "bfloat16", "all"}},
      {"all_reduce_perf", {"-o", "xor"}, {"invalid op 'xor'", "sum", "avg"}},
      {"all_reduce_perf", {"--backend", "gloo"}, {"invalid backend 'gloo'", "ucx"}},
      {"all_reduce_perf", {"--bogus"}, {"invalid option '--bogus'"}},
      {"all_reduce_perf", {"-q", "1"}, {"invalid option '-q'"}},
      {"all_reduce_perf", {"-n", "many"}, {"'many'", "iters"}},
      {"all_reduce_perf", {"-a", "7"}, {"'7'", "average"}},
      {"all_reduce_perf", {"-g", "2"}, {"'2'", "ngpus", "one rank per process"}},
      {"all_reduce_perf", {"--memory", "disk"}, {"'disk'", "host or cuda"}},
      {"all_reduce_perf", {"--algorithm", "tree"}, {"'tree'", "ring"}},
      {"all_reduce_perf", {"-e"}, {"'-e' requires an argument"}},
      {"all_reduce_perf", {"extra"}, {"unexpected argument 'extra'"}},
      {"broadcast_perf",
       {"-b", "8", "-e", "8", "-r", "5", "--backend", "ucx"},
       {"invalid root 5", "1 rank"}},
  };
  if (GANGWAY_PERF_HAVE_MPI) {
    cases.push_back({"all_reduce_perf",
                     {"--backend", "mpi", "--memory", "cuda"},
                     {"backend 'mpi' does not support cuda memory", "host"}});
    cases.push_back({"all_reduce_perf",
                     {"--backend", "mpi", "--algorithm", "ring"},
                     {"--algorithm", "ucx backend only"}});
  }
  for (const BadFlags& c : cases) {
    std::vector<std::string> argv = {bench(c.bench)};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const RunResult r = run(argv);
    const std::string what = absl::StrJoin(c.args, " ");
    EXPECT_EQ(r.code, 2) << what << "\n" << r.out << r.err;
    ASSERT_FALSE(r.err.empty()) << what;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << what << ": not one line:\n" << r.err;
    EXPECT_EQ(r.err.rfind(c.bench + ": ", 0), 0u) << r.err;
    for (const std::string& m : c.message) {
      EXPECT_NE(r.err.find(m), std::string::npos) << what << ": '" << m << "' not in " << r.err;
    }
  }
}

TEST_F(PerfFormatTest, CommunicatorFailureExitsOneNamingTheBackend) {
  // Two ranks claimed but no store to meet through: the bootstrap refuses, the benchmark says so.
  const RunResult r = run({bench("all_reduce_perf"), "-b", "8", "-e", "8", "--backend", "ucx"},
                          {"WORLD_SIZE=2", "RANK=0"});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("cannot create the ucx communicator"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
}

TEST_F(PerfFormatTest, UnwritableJsonFileFails) {
  const RunResult r = run({bench("all_reduce_perf"), "-b", "8", "-e", "8", "--backend", "ucx",
                           "--json", path("no/such/dir/out.json")});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("cannot write --json file"), std::string::npos) << r.err;
}

TEST_F(PerfFormatTest, MinimumBandwidthFailsTheRun) {
  const RunResult r = run({bench("all_reduce_perf"), "-b", "8", "-e", "8", "--backend", "ucx"},
                          {"NCCL_TESTS_MIN_BW=1e12"});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("# Avg bus bandwidth    : 0 FAILED"), std::string::npos) << r.out;
}

}  // namespace
