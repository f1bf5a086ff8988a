#include "gangway/topology/mapping.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include <absl/strings/ascii.h>
#include <absl/strings/match.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>

namespace gangway::topology {
namespace {

// Orders GPUs so that each next one is the best connected to the previous.
std::vector<const Gpu*> chainGpus(const std::vector<const Gpu*>& gpus) {
  std::vector<const Gpu*> order;
  std::vector<bool> used(gpus.size(), false);
  if (gpus.empty()) return order;
  std::size_t at = 0;
  used[0] = true;
  order.push_back(gpus[0]);
  while (order.size() < gpus.size()) {
    std::size_t best = gpus.size();
    std::tuple<int, int, int> best_key{0, 0, 0};
    for (std::size_t j = 0; j < gpus.size(); ++j) {
      if (used[j]) continue;
      int nv = 0;
      const Link link = gpuLink(*gpus[at], *gpus[j], &nv);
      // Larger is better: NVLink count, then closer PCI relation, then lower index.
      std::tuple<int, int, int> key{nv, -static_cast<int>(link), -gpus[j]->index};
      if (best == gpus.size() || key > best_key) {
        best = j;
        best_key = key;
      }
    }
    used[best] = true;
    order.push_back(gpus[best]);
    at = best;
  }
  return order;
}

std::vector<int> intersect(const std::vector<int>& a, const std::vector<int>& allowed) {
  if (allowed.empty()) return a;
  std::vector<int> out;
  for (int c : a) {
    if (std::binary_search(allowed.begin(), allowed.end(), c)) out.push_back(c);
  }
  return out;
}

}  // namespace

absl::StatusOr<NumaBinding> parseNumaBinding(absl::string_view text) {
  if (text == "none") return NumaBinding::kNone;
  if (text == "node") return NumaBinding::kNode;
  if (text == "exclusive") return NumaBinding::kExclusive;
  return absl::InvalidArgumentError(
      absl::StrCat("--numa-binding: '", text, "' is not one of none, node, exclusive"));
}

const char* numaBindingName(NumaBinding b) {
  switch (b) {
    case NumaBinding::kNone:
      return "none";
    case NumaBinding::kNode:
      return "node";
    case NumaBinding::kExclusive:
      return "exclusive";
  }
  return "?";
}

LocalMapping mapLocalRanks(const NodeTopology& topo, const MappingOptions& options) {
  LocalMapping m;
  std::vector<const Gpu*> gpus;
  for (const auto& g : topo.gpus) gpus.push_back(&g);
  if (options.visible_devices_set) {
    std::vector<const Gpu*> visible;
    bool understood = true;
    for (absl::string_view item : absl::StrSplit(options.visible_devices, ',', absl::SkipEmpty())) {
      item = absl::StripAsciiWhitespace(item);
      int index = -1;
      const Gpu* found = nullptr;
      for (const Gpu* g : gpus) {
        if ((absl::SimpleAtoi(item, &index) && g->index == index) ||
            (absl::StartsWith(item, "GPU-") && absl::StartsWith(g->uuid, item))) {
          found = g;
        }
      }
      if (found == nullptr) {
        understood = false;
        break;
      }
      if (std::find(visible.begin(), visible.end(), found) == visible.end())
        visible.push_back(found);
    }
    if (!understood) {
      m.notes.push_back(absl::StrCat("CUDA_VISIBLE_DEVICES=", options.visible_devices,
                                     " names devices this topology does not have (MIG "
                                     "instances?): GPUs are left as they are"));
      gpus.clear();
    } else {
      gpus = visible;
    }
  }
  if (gpus.empty()) {
    if (topo.gpus.empty()) m.notes.emplace_back("no GPUs: workers are not bound");
    return m;
  }
  const std::vector<const Gpu*> chain = chainGpus(gpus);
  const int nproc = std::max(1, options.nproc);
  const bool shared = nproc > static_cast<int>(chain.size());
  if (shared) {
    m.notes.push_back(absl::StrCat(nproc, " local ranks on ", chain.size(),
                                   " GPU(s): ranks share GPUs, each worker sees only its own"));
  }
  std::vector<const Nic*> nics;
  for (const auto& n : topo.nics) {
    if (!n.rdma) continue;
    const bool usable =
        n.ports.empty() || std::any_of(n.ports.begin(), n.ports.end(),
                                       [](const NicPort& p) { return p.state == "ACTIVE"; });
    if (usable) nics.push_back(&n);
  }
  std::map<std::string, int> nic_load;
  std::map<int, std::vector<int>> ranks_on_numa;
  for (int lr = 0; lr < nproc; ++lr) {
    const Gpu& g = *chain[static_cast<std::size_t>(lr) % chain.size()];
    RankBinding b;
    b.local_rank = lr;
    b.gpu = g.index;
    b.gpu_uuid = g.uuid;
    b.numa_node = g.numa_node;
    const Nic* best = nullptr;
    std::tuple<int, int, std::string> best_key;
    for (const Nic* n : nics) {
      const Link link = pciLink(g.pci_path, g.numa_node, n->pci_path, n->numa_node);
      std::tuple<int, int, std::string> key{static_cast<int>(link), nic_load[n->name], n->name};
      if (best == nullptr || key < best_key) {
        best = n;
        best_key = key;
      }
    }
    if (best != nullptr) {
      ++nic_load[best->name];
      b.nic = best->name;
      b.nic_port = 1;
      for (const auto& p : best->ports) {
        if (p.state == "ACTIVE") {
          b.nic_port = p.port;
          break;
        }
      }
      b.nic_link = linkLabel(pciLink(g.pci_path, g.numa_node, best->pci_path, best->numa_node), 0);
    }
    if (g.numa_node >= 0) ranks_on_numa[g.numa_node].push_back(lr);
    m.ranks.push_back(std::move(b));
  }
  if (!shared) {
    std::vector<std::string> ids;
    for (const auto& b : m.ranks) ids.push_back(absl::StrCat(b.gpu));
    m.visible_devices = absl::StrJoin(ids, ",");
  }
  if (options.numa == NumaBinding::kNone) return m;
  std::vector<int> allowed = options.allowed_cpus;
  std::sort(allowed.begin(), allowed.end());
  for (const auto& [numa, ranks] : ranks_on_numa) {
    std::vector<int> node_cpus;
    for (const auto& n : topo.numa_nodes) {
      if (n.id == numa) node_cpus = n.cpus;
    }
    node_cpus = intersect(node_cpus, allowed);
    if (node_cpus.empty()) {
      m.notes.push_back(absl::StrCat("NUMA node ", numa,
                                     " has no CPU this agent may use: its ranks keep the agent's "
                                     "CPU set and memory policy"));
      continue;
    }
    const std::size_t k = ranks.size();
    for (std::size_t i = 0; i < k; ++i) {
      RankBinding& b = m.ranks[static_cast<std::size_t>(ranks[i])];
      if (options.numa == NumaBinding::kNode) {
        b.cpus = node_cpus;
        b.prefer_memory = true;
        continue;
      }
      b.bind_memory = true;
      if (node_cpus.size() < k) {
        b.cpus = {node_cpus[i % node_cpus.size()]};
        continue;
      }
      // Even, disjoint shares; the first (size % k) ranks get one more CPU.
      const std::size_t base = node_cpus.size() / k;
      const std::size_t extra = node_cpus.size() % k;
      const std::size_t begin = i * base + std::min(i, extra);
      const std::size_t len = base + (i < extra ? 1 : 0);
      b.cpus.assign(node_cpus.begin() + static_cast<std::ptrdiff_t>(begin),
                    node_cpus.begin() + static_cast<std::ptrdiff_t>(begin + len));
    }
    if (options.numa == NumaBinding::kExclusive && node_cpus.size() < k) {
      m.notes.push_back(absl::StrCat("NUMA node ", numa, ": ", k, " ranks on ", node_cpus.size(),
                                     " CPU(s): ranks share CPUs"));
    }
  }
  return m;
}

std::vector<std::pair<std::string, std::string>> bindingEnv(const LocalMapping& m, int local_rank) {
  std::vector<std::pair<std::string, std::string>> env;
  if (local_rank < 0 || local_rank >= static_cast<int>(m.ranks.size())) return env;
  const RankBinding& b = m.ranks[static_cast<std::size_t>(local_rank)];
  if (b.gpu >= 0) {
    env.emplace_back("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
    env.emplace_back("CUDA_VISIBLE_DEVICES",
                     m.visible_devices.empty() ? absl::StrCat(b.gpu) : m.visible_devices);
    env.emplace_back("GANGWAY_GPU", absl::StrCat(b.gpu));
    if (!b.gpu_uuid.empty()) env.emplace_back("GANGWAY_GPU_UUID", b.gpu_uuid);
  }
  if (!b.nic.empty()) {
    // "=" makes NCCL match the name exactly: plain "mlx5_1" would also select mlx5_10..19.
    env.emplace_back("NCCL_IB_HCA", absl::StrCat("=", b.nic, ":", b.nic_port));
    env.emplace_back("GANGWAY_NIC", absl::StrCat(b.nic, ":", b.nic_port));
  }
  if (!b.cpus.empty()) env.emplace_back("GANGWAY_CPUS", formatCpuList(b.cpus));
  if (b.numa_node >= 0 && (b.bind_memory || b.prefer_memory)) {
    env.emplace_back("GANGWAY_NUMA_NODE", absl::StrCat(b.numa_node));
  }
  return env;
}

}  // namespace gangway::topology
