#include "node_binding.h"

#include <sched.h>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include "gangway/common/log.h"
#include "gangway/topology/discover.h"

namespace gangway::launcher {

absl::StatusOr<NodeBinding> bindNode(const RunOptions& options, const EnvMap& base_env,
                                     const std::string& hostname) {
  static Logger& log = logger("launcher");
  NodeBinding node;
  if (options.topology == "off") return node;
  if (options.topology == "auto") {
    topology::DiscoverOptions d;
    d.root = options.sysfs_root;
    d.network_path = options.network_path;
    d.hostname = hostname;
    node.topology = topology::discover(d);
  } else {
    auto loaded = topology::loadTopologyFile(options.topology);
    if (!loaded.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--topology: ", loaded.status().message()));
    }
    node.topology = *std::move(loaded);
    if (!options.network_path.empty()) node.topology.network_path = options.network_path;
  }
  topology::MappingOptions m;
  m.nproc = options.nproc_per_node;
  m.numa = options.numa_binding;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) m.allowed_cpus.push_back(c);
    }
  }
  if (auto it = base_env.find("CUDA_VISIBLE_DEVICES"); it != base_env.end()) {
    m.visible_devices_set = true;
    m.visible_devices = it->second;
  }
  node.mapping = topology::mapLocalRanks(node.topology, m);
  if (!node.mapping.ranks.empty()) {
    std::vector<std::string> ranks;
    for (const auto& b : node.mapping.ranks) {
      ranks.push_back(absl::StrCat(b.local_rank, ":GPU", b.gpu, b.nic.empty() ? "" : "/", b.nic,
                                   b.cpus.empty() ? "" : "/CPUs ",
                                   b.cpus.empty() ? "" : topology::formatCpuList(b.cpus)));
    }
    log.info("topology: {} GPU(s), {} NIC(s), {} NUMA node(s); binding (--numa-binding {}) {}",
             node.topology.gpus.size(), node.topology.nics.size(), node.topology.numa_nodes.size(),
             topology::numaBindingName(options.numa_binding), absl::StrJoin(ranks, " "));
  }
  for (const auto& note : node.mapping.notes) {
    if (!node.topology.gpus.empty()) log.info("topology: {}", note);
  }
  return node;
}

}  // namespace gangway::launcher
