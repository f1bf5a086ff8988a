#include "gangway/launcher/topo_cli.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include <sched.h>

#include <CLI/CLI.hpp>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <absl/strings/str_join.h>
#include <nlohmann/json.hpp>

#include "gangway/common/file.h"
#include "gangway/topology/discover.h"
#include "gangway/topology/mapping.h"
#include "gangway/topology/nccl_xml.h"
#include "gangway/topology/network_path.h"
#include "gangway/topology/placement.h"
#include "gangway/topology/report.h"

namespace gangway::launcher {
namespace {

namespace topo = gangway::topology;

std::string opt(const CLI::App& app, const char* name) {
  const CLI::Option* o = app.get_option(name);
  return o->count() > 0 ? o->as<std::string>() : std::string();
}

int fail(const std::string& message) {
  std::fprintf(stderr, "gangway topo: error: %s\n", message.c_str());
  return 2;
}

// A cluster for --plan: {"nproc_per_node": 8, "parallelism": "tp=8,pp=4",
//   "nodes": [{"name": "n1", "network_path": "spine1/leaf3", "nvlink_domain": "rack7"}, ...]}
// The nodes' order in the file is their arrival order.
struct Cluster {
  int nproc = 1;
  std::string parallelism;
  std::vector<topo::PlacementNode> nodes;
};

absl::StatusOr<Cluster> loadCluster(const std::string& path) {
  auto text = readFile(path, "--plan");
  if (absl::IsNotFound(text.status())) {
    return absl::NotFoundError(absl::StrCat("--plan: cannot read ", path));
  }
  if (!text.ok()) return text.status();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(*text);
  } catch (const nlohmann::json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("--plan ", path, ": not valid JSON at byte ", e.byte));
  }
  Cluster c;
  auto bad = [&](const std::string& where, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("--plan ", path, ": ", where, ": ", what));
  };
  if (!j.is_object() || !j.contains("nodes") || !j["nodes"].is_array()) {
    return bad("nodes", "expected an object with an array \"nodes\"");
  }
  if (j.contains("nproc_per_node")) {
    if (!j["nproc_per_node"].is_number_integer() || j["nproc_per_node"].get<int>() < 1) {
      return bad("nproc_per_node", "expected a positive integer");
    }
    c.nproc = j["nproc_per_node"].get<int>();
  }
  if (j.contains("parallelism")) {
    if (!j["parallelism"].is_string()) return bad("parallelism", "expected a string");
    c.parallelism = j["parallelism"].get<std::string>();
  }
  for (std::size_t i = 0; i < j["nodes"].size(); ++i) {
    const auto& e = j["nodes"][i];
    const std::string where = absl::StrCat("nodes[", i, "]");
    if (!e.is_object() || !e.contains("name") || !e["name"].is_string()) {
      return bad(where, "expected an object with a string \"name\"");
    }
    topo::PlacementNode n;
    n.name = e["name"].get<std::string>();
    if (e.contains("network_path")) {
      if (!e["network_path"].is_string()) return bad(where + ".network_path", "expected a string");
      auto parts = topo::parseNetworkPath(e["network_path"].get<std::string>());
      if (!parts.ok()) return bad(where + ".network_path", std::string(parts.status().message()));
      n.path = *parts;
    }
    if (e.contains("nvlink_domain")) {
      if (!e["nvlink_domain"].is_string())
        return bad(where + ".nvlink_domain", "expected a string");
      n.domain = e["nvlink_domain"].get<std::string>();
    }
    c.nodes.push_back(std::move(n));
  }
  if (c.nodes.empty()) return bad("nodes", "is empty");
  return c;
}

int runPlan(const CLI::App& app, const std::string& file) {
  auto cluster = loadCluster(file);
  if (!cluster.ok()) return fail(std::string(cluster.status().message()));
  if (const std::string n = opt(app, "--nproc-per-node"); !n.empty()) {
    if (!absl::SimpleAtoi(n, &cluster->nproc) || cluster->nproc < 1) {
      return fail(absl::StrCat("--nproc-per-node: '", n, "' is not a positive integer"));
    }
  }
  std::string ptext = opt(app, "--parallelism");
  if (ptext.empty()) ptext = cluster->parallelism;
  topo::Parallelism par;
  const topo::Parallelism* p = nullptr;
  const int world = static_cast<int>(cluster->nodes.size()) * cluster->nproc;
  if (!ptext.empty()) {
    auto parsed = topo::parseParallelism(ptext);
    if (!parsed.ok()) return fail(std::string(parsed.status().message()));
    par = *parsed;
    if (auto s = topo::resolveParallelism(&par, world); !s.ok()) {
      return fail(std::string(s.message()));
    }
    p = &par;
  }
  const topo::TrafficModel model;
  const auto& nodes = cluster->nodes;
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int> order = topo::orderNodes(nodes, cluster->nproc, p);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const bool as_json = app.get_option("--json")->count() > 0;
  std::vector<int> arrival(nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i) arrival[i] = static_cast<int>(i);
  std::vector<int> by_name = arrival;
  std::sort(by_name.begin(), by_name.end(), [&](int a, int b) {
    return nodes[static_cast<std::size_t>(a)].name < nodes[static_cast<std::size_t>(b)].name;
  });
  struct Row {
    const char* label;
    topo::PlacementCost cost;
  };
  const std::vector<Row> rows{
      {"arrival order", topo::evaluatePlacement(nodes, arrival, cluster->nproc, p, model)},
      {"hostname order", topo::evaluatePlacement(nodes, by_name, cluster->nproc, p, model)},
      {"gangway", topo::evaluatePlacement(nodes, order, cluster->nproc, p, model)},
      {"lower bound", topo::placementLowerBound(nodes, cluster->nproc, p, model)},
  };
  if (as_json) {
    nlohmann::json j;
    j["parallelism"] = p != nullptr ? topo::formatParallelism(*p) : "";
    j["nproc_per_node"] = cluster->nproc;
    j["plan_ms"] = ms;
    for (std::size_t r = 0; r < order.size(); ++r) {
      const auto& n = nodes[static_cast<std::size_t>(order[r])];
      j["node_ranks"].push_back({{"node_rank", r},
                                 {"name", n.name},
                                 {"network_path", absl::StrJoin(n.path, "/")},
                                 {"nvlink_domain", n.domain}});
    }
    for (const auto& row : rows) {
      j["costs"][row.label] = {{"ring_leaf_crossings", row.cost.ring_leaf},
                               {"ring_spine_crossings", row.cost.ring_spine},
                               {"bytes_leaving_nodes", row.cost.bytes_node},
                               {"bytes_off_domain", row.cost.bytes_off_domain},
                               {"bytes_crossing_leaves", row.cost.bytes_leaf},
                               {"bytes_crossing_spines", row.cost.bytes_spine},
                               {"cost", row.cost.cost}};
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("Plan for %zu nodes x %d processes%s (computed in %.2f ms)\n", nodes.size(),
              cluster->nproc,
              p != nullptr ? absl::StrCat(", ", topo::formatParallelism(*p)).c_str() : "", ms);
  std::printf("  node rank  name                  network path          NVLink domain\n");
  for (std::size_t r = 0; r < order.size(); ++r) {
    const auto& n = nodes[static_cast<std::size_t>(order[r])];
    std::printf("  %-9zu  %-20s  %-20s  %s\n", r, n.name.c_str(),
                n.path.empty() ? "-" : absl::StrJoin(n.path, "/").c_str(),
                n.domain.empty() ? "-" : n.domain.c_str());
  }
  std::printf(
      "\nCost (ring: edges of the node ring crossing leaves / spines; traffic: GB per step under "
      "the model\n  tp=%.0f cp=%.0f ep=%.0f dp=%.0f pp=%.1f GB sent per rank per step to its ring "
      "successor):\n",
      model.tp / 1e9, model.cp / 1e9, model.ep / 1e9, model.dp / 1e9, model.pp / 1e9);
  std::printf("  %-15s %10s %11s %14s %14s %14s %14s\n", "order", "ring leaf", "ring spine",
              "off-domain GB", "cross-leaf GB", "cross-spine GB", "cost");
  for (const auto& row : rows) {
    std::printf("  %-15s %10d %11d %14.1f %14.1f %14.1f %14.1f\n", row.label, row.cost.ring_leaf,
                row.cost.ring_spine, row.cost.bytes_off_domain / 1e9, row.cost.bytes_leaf / 1e9,
                row.cost.bytes_spine / 1e9, row.cost.cost / 1e9);
  }
  return 0;
}

}  // namespace

void addTopoFlags(CLI::App& app) {
  app.add_flag("--json")->description(
      "Print the snapshot (or the plan) as JSON instead of the report.");
  app.add_option("--nccl-xml")
      ->description(
          "Also write the snapshot as NCCL's topology XML to FILE (- for stdout); "
          "give it to NCCL with NCCL_TOPO_FILE=FILE.")
      ->type_name("FILE");
  app.add_option("--from")
      ->description(
          "Read a saved snapshot instead of discovering: gangway's JSON (--json) or "
          "NCCL's topology XML (NCCL_TOPO_DUMP_FILE).")
      ->type_name("FILE");
  app.add_option("--sysfs-root")
      ->description(
          "Discover under DIR instead of / (a copy or fixture of /sys). NVML is then "
          "used only when GANGWAY_NVML_LIBRARY names it. [default: /]")
      ->type_name("DIR");
  app.add_option("--network-path")
      ->description(
          "This node's switch path, top first (e.g. spine2/leaf7). [default: "
          "$GANGWAY_NETWORK_PATH]")
      ->type_name("PATH");
  app.add_option("--nproc-per-node")
      ->description("Show the local mapping for N workers. [default: one per GPU]")
      ->type_name("N");
  app.add_option("--numa-binding")
      ->description(
          "CPU and memory binding shown in the mapping: none, node or exclusive "
          "(as for gangway run). [default: node]")
      ->type_name("MODE");
  app.add_option("--plan")
      ->description(
          "Show the node ranks gangway gives the cluster in FILE (JSON: nodes with "
          "name, network_path, nvlink_domain, in arrival order) and their cost "
          "against arrival order, hostname order and the lower bound.")
      ->type_name("FILE");
  app.add_option("--parallelism")
      ->description("With --plan: Megatron's parallel sizes, e.g. tp=8,pp=4 (dp: the rest).")
      ->type_name("SPEC");
}

int runTopo(const CLI::App& app) {
  if (const std::string plan = opt(app, "--plan"); !plan.empty()) return runPlan(app, plan);
  topo::NodeTopology t;
  if (const std::string from = opt(app, "--from"); !from.empty()) {
    auto loaded = topo::loadTopologyFile(from);
    if (!loaded.ok()) return fail(std::string(loaded.status().message()));
    t = *std::move(loaded);
    if (const std::string np = opt(app, "--network-path"); !np.empty()) {
      auto parts = topo::parseNetworkPath(np);
      if (!parts.ok()) return fail(absl::StrCat("--network-path: ", parts.status().message()));
      t.network_path = absl::StrJoin(*parts, "/");
    }
  } else {
    topo::DiscoverOptions o;
    o.root = opt(app, "--sysfs-root");
    if (o.root.empty()) o.root = "/";
    std::error_code ec;
    if (!std::filesystem::is_directory(o.root, ec)) {
      return fail(absl::StrCat("--sysfs-root: '", o.root, "' is not a directory"));
    }
    o.network_path = opt(app, "--network-path");
    if (!o.network_path.empty()) {
      auto parts = topo::parseNetworkPath(o.network_path);
      if (!parts.ok()) return fail(absl::StrCat("--network-path: ", parts.status().message()));
    }
    t = topo::discover(o);
  }
  topo::MappingOptions mo;
  mo.nproc = static_cast<int>(std::max<std::size_t>(1, t.gpus.size()));
  if (const std::string n = opt(app, "--nproc-per-node"); !n.empty()) {
    if (!absl::SimpleAtoi(n, &mo.nproc) || mo.nproc < 1 || mo.nproc > 4096) {
      return fail(absl::StrCat("--nproc-per-node: '", n, "' is not a positive integer"));
    }
  }
  if (const std::string b = opt(app, "--numa-binding"); !b.empty()) {
    auto binding = topo::parseNumaBinding(b);
    if (!binding.ok()) return fail(std::string(binding.status().message()));
    mo.numa = *binding;
  }
  const topo::LocalMapping mapping = topo::mapLocalRanks(t, mo);
  if (const std::string xml = opt(app, "--nccl-xml"); !xml.empty()) {
    const std::string text = topo::toNcclXml(t);
    if (xml == "-") {
      std::fputs(text.c_str(), stdout);
      return 0;
    }
    const std::string tmp = xml + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << text;
      if (!out.flush()) return fail(absl::StrCat("--nccl-xml: cannot write ", xml));
    }
    if (std::rename(tmp.c_str(), xml.c_str()) != 0) {
      std::remove(tmp.c_str());
      return fail(absl::StrCat("--nccl-xml: cannot write ", xml));
    }
  }
  if (app.get_option("--json")->count() > 0) {
    std::fputs(topo::toJsonText(t).c_str(), stdout);
    return 0;
  }
  std::fputs(topo::formatReport(t).c_str(), stdout);
  std::fputs("\n", stdout);
  std::fputs(topo::formatMapping(mapping, mo.numa).c_str(), stdout);
  return 0;
}

}  // namespace gangway::launcher
