#include "perf_report.h"

#include <absl/strings/str_format.h>

#include "gangway/kernels/reduce.h"

namespace gangway::bench {

std::string formatParameters(const PerfOptions& o) {
  const bool factor = o.step_factor > 1;
  return absl::StrFormat(
      "# nThread %d nGpus %d minBytes %d maxBytes %d step: %d(%s) warmup iters: %d iters: %d agg "
      "iters: %d validation: %d graph: %d\n",
      1, 1, o.min_bytes, o.max_bytes, factor ? o.step_factor : o.step_bytes,
      factor ? "factor" : "bytes", o.warmup_iters, o.iters, o.agg_iters, o.check, 0);
}

std::string formatDevice(int rank, int group, int pid, const std::string& host, int device,
                         const std::string& id, const std::string& name) {
  return absl::StrFormat("#  Rank %2d Group %2d Pid %6d on %10s device %2d [%s] %s\n", rank, group,
                         pid, host, device, id, name);
}

std::string formatColumns(bool cputime) {
  const char* t = cputime ? "cputime" : "time";
  std::string out = absl::StrFormat(
      "# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place          "
      "\n",
      "", "", "", "", "");
  out += absl::StrFormat("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s %6s  %7s  %6s  %6s %6s\n",
                         "size", "count", "type", "redop", "root", t, "algbw", "busbw", "#wrong", t,
                         "algbw", "busbw", "#wrong");
  out += absl::StrFormat("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %5s  %7s  %6s  %6s  %5s\n",
                         "(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)",
                         "(GB/s)", "(GB/s)", "");
  return out;
}

std::string formatRowStart(const Row& r) {
  return absl::StrFormat("%12d  %12d  %8s  %6s  %6d", r.bytes, r.count, r.type, r.redop, r.root);
}

std::string formatTimeUs(double us) {
  if (us >= 10000.0) return absl::StrFormat("%7.0f", us);
  if (us >= 100.0) return absl::StrFormat("%7.1f", us);
  return absl::StrFormat("%7.2f", us);
}

std::string formatMeasurement(const Measurement& m) {
  const std::string t = formatTimeUs(m.time_us);
  if (!m.wrong) return absl::StrFormat("  %7s  %6.2f  %6.2f  %5s", t, m.algbw, m.busbw, "N/A");
  return absl::StrFormat("  %7s  %6.2f  %6.2f  %5g", t, m.algbw, m.busbw,
                         static_cast<double>(*m.wrong));
}

std::string formatTrailer(int errors, double avg_busbw, std::optional<double> min_busbw) {
  std::string out =
      absl::StrFormat("# Out of bounds values : %d %s\n", errors, errors != 0 ? "FAILED" : "OK");
  const char* verdict = "";
  if (min_busbw) verdict = avg_busbw < *min_busbw * 0.9 ? "FAILED" : "OK";
  out += absl::StrFormat("# Avg bus bandwidth    : %g %s\n", avg_busbw, verdict);
  out += "#\n";
  return out;
}

namespace {

nlohmann::json measurementJson(const Measurement& m) {
  nlohmann::json j = {{"time_us", m.time_us}, {"algbw", m.algbw}, {"busbw", m.busbw}};
  j["wrong"] = m.wrong ? nlohmann::json(*m.wrong) : nlohmann::json(nullptr);
  return j;
}

}  // namespace

nlohmann::json toJson(const RunSummary& s) {
  const PerfOptions& o = *s.options;
  nlohmann::json params = {
      {"minbytes", o.min_bytes},
      {"maxbytes", o.max_bytes},
      {"stepbytes", o.step_bytes},
      {"stepfactor", o.step_factor},
      {"iters", o.iters},
      {"warmup_iters", o.warmup_iters},
      {"agg_iters", o.agg_iters},
      {"check", o.check},
      {"op", o.all_ops ? "all" : kernels::reduceOpName(o.op)},
      {"datatype", o.all_types ? "all" : kernels::dataTypeName(o.type)},
      {"root", o.all_roots ? nlohmann::json("all") : nlohmann::json(o.root)},
      {"blocking", o.blocking ? 1 : 0},
      {"average", o.average},
      {"report_cputime", o.report_cputime ? 1 : 0},
  };
  nlohmann::json rows = nlohmann::json::array();
  for (const Row& r : s.rows) {
    rows.push_back({{"size", r.bytes},
                    {"count", r.count},
                    {"type", r.type},
                    {"redop", r.redop},
                    {"root", r.root},
                    {"out_of_place", measurementJson(r.out_of_place)},
                    {"in_place", measurementJson(r.in_place)}});
  }
  nlohmann::json j = {
      {"collective", s.collective},
      {"backend", s.backend},
      {"memory", s.memory},
      {"algorithm", s.algorithm},
      {"world_size", s.world_size},
      {"bus_factor", s.bus_factor},
      {"parameters", params},
      {"rows", rows},
      {"out_of_bounds", s.errors},
      {"avg_busbw", s.avg_busbw},
      {"ok", s.ok},
  };
  if (!s.error.empty()) j["error"] = s.error;
  return j;
}

}  // namespace gangway::bench
