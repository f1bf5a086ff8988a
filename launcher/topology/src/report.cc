#include "gangway/topology/report.h"

#include <algorithm>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <absl/strings/str_join.h>

namespace gangway::topology {
namespace {

std::string bytes(int64_t b) {
  if (b <= 0) return "?";
  const double gib = static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0);
  return gib >= 1024 ? absl::StrFormat("%.1f TiB", gib / 1024) : absl::StrFormat("%.1f GiB", gib);
}

std::string pad(const std::string& s, std::size_t w) {
  return s.size() >= w ? s + " " : s + std::string(w - s.size(), ' ');
}

}  // namespace

std::string formatReport(const NodeTopology& t) {
  std::string out;
  absl::StrAppend(&out, "Node ", t.hostname.empty() ? "?" : t.hostname, "  (from ", t.source,
                  ")\n");
  absl::StrAppend(&out, "CPUs: ", formatCpuList(t.cpus), " (", t.cpus.size(),
                  ")   NUMA nodes: ", t.numa_nodes.size(), "\n");
  for (const auto& n : t.numa_nodes) {
    absl::StrAppend(&out, "  NUMA ", n.id, ": CPUs ", formatCpuList(n.cpus),
                    n.memory_bytes > 0 ? absl::StrCat("  memory ", bytes(n.memory_bytes)) : "",
                    "\n");
  }
  absl::StrAppend(&out, "GPUs: ", t.gpus.size(), "  (", t.gpu_source, ")\n");
  for (const auto& g : t.gpus) {
    absl::StrAppend(&out, "  GPU", g.index, ": ", g.name.empty() ? "?" : g.name, "  ", g.bus_id,
                    g.compute_capability.empty() ? "" : absl::StrCat("  sm ", g.compute_capability),
                    g.memory_bytes > 0 ? absl::StrCat("  ", bytes(g.memory_bytes)) : "",
                    g.uuid.empty() ? "" : absl::StrCat("  ", g.uuid),
                    g.fabric_clique.empty() ? "" : absl::StrCat("  clique ", g.fabric_clique),
                    "\n");
  }
  absl::StrAppend(&out, "NICs: ", t.nics.size(), "\n");
  for (std::size_t i = 0; i < t.nics.size(); ++i) {
    const Nic& n = t.nics[i];
    std::vector<std::string> ports;
    for (const auto& p : n.ports) {
      ports.push_back(absl::StrCat("port ", p.port, " ", p.state.empty() ? "?" : p.state, " ",
                                   p.link_layer,
                                   p.rate_gbps > 0 ? absl::StrCat(" ", p.rate_gbps, " Gb/s") : ""));
    }
    absl::StrAppend(
        &out, "  NIC", i, ": ", n.name, n.rdma ? " (RDMA)" : "", "  ",
        n.bus_id.empty() ? "no PCI address" : n.bus_id, "  NUMA ",
        n.numa_node >= 0 ? absl::StrCat(n.numa_node) : "?",
        n.speed_gbps > 0 && n.ports.empty() ? absl::StrCat("  ", n.speed_gbps, " Gb/s") : "",
        ports.empty() ? "" : absl::StrCat("  ", absl::StrJoin(ports, "; ")),
        n.netdevs.empty() ? "" : absl::StrCat("  netdev ", absl::StrJoin(n.netdevs, ",")), "\n");
  }
  if (!t.gpus.empty()) {
    // The matrix: GPUs and RDMA NICs as columns, like nvidia-smi topo -m.
    std::vector<std::string> cols;
    for (const auto& g : t.gpus) cols.push_back(absl::StrCat("GPU", g.index));
    std::vector<const Nic*> nics;
    for (std::size_t i = 0; i < t.nics.size(); ++i) {
      nics.push_back(&t.nics[i]);
      cols.push_back(absl::StrCat("NIC", i));
    }
    std::size_t w = 6;
    for (const auto& c : cols) w = std::max(w, c.size() + 1);
    absl::StrAppend(&out, "\n", pad("", 8));
    for (const auto& c : cols) absl::StrAppend(&out, pad(c, w));
    absl::StrAppend(&out, pad("CPU Affinity", 20), "NUMA Affinity\n");
    for (const auto& a : t.gpus) {
      absl::StrAppend(&out, pad(absl::StrCat("GPU", a.index), 8));
      for (const auto& b : t.gpus) {
        int nv = 0;
        const Link l = gpuLink(a, b, &nv);
        absl::StrAppend(&out, pad(linkLabel(l, nv), w));
      }
      for (const Nic* n : nics) {
        absl::StrAppend(
            &out,
            pad(linkLabel(pciLink(a.pci_path, a.numa_node, n->pci_path, n->numa_node), 0), w));
      }
      absl::StrAppend(&out, pad(a.cpus.empty() ? "N/A" : formatCpuList(a.cpus), 20),
                      a.numa_node >= 0 ? absl::StrCat(a.numa_node) : "N/A", "\n");
    }
    absl::StrAppend(&out,
                    "\nLegend: X = self; NV# = # NVLinks (direct, or through NVSwitches); PIX = at "
                    "most one PCIe switch;\n  PXB = several PCIe switches; PHB = through a PCIe "
                    "host bridge; NODE = across host bridges\n  within a NUMA node; SYS = across "
                    "NUMA nodes\n");
  }
  if (!t.network_path.empty() || !t.nvlink_domain.empty()) {
    absl::StrAppend(&out, "\nNetwork path: ", t.network_path.empty() ? "-" : t.network_path,
                    "   NVLink domain: ", t.nvlink_domain.empty() ? "-" : t.nvlink_domain, "\n");
  }
  if (!t.notes.empty()) {
    absl::StrAppend(&out, "\nNotes:\n");
    for (const auto& n : t.notes) absl::StrAppend(&out, "  - ", n, "\n");
  }
  return out;
}

std::string formatMapping(const LocalMapping& m, NumaBinding binding) {
  std::string out;
  if (m.ranks.empty()) {
    absl::StrAppend(&out,
                    "Local mapping: none (workers keep the agent's GPUs, CPUs and memory "
                    "policy)\n");
  } else {
    absl::StrAppend(&out, "Local mapping (--numa-binding ", numaBindingName(binding), "):\n");
    absl::StrAppend(&out, "  rank  GPU   NIC            CPUs                 memory\n");
    for (const auto& b : m.ranks) {
      const std::string nic =
          b.nic.empty() ? "-" : absl::StrCat(b.nic, ":", b.nic_port, " ", b.nic_link);
      const std::string mem = b.bind_memory     ? absl::StrCat("bind NUMA ", b.numa_node)
                              : b.prefer_memory ? absl::StrCat("prefer NUMA ", b.numa_node)
                                                : "-";
      absl::StrAppend(&out, "  ", pad(absl::StrCat(b.local_rank), 6),
                      pad(b.gpu >= 0 ? absl::StrCat(b.gpu) : "-", 6), pad(nic, 15),
                      pad(b.cpus.empty() ? "-" : formatCpuList(b.cpus), 21), mem, "\n");
    }
    absl::StrAppend(&out, "  every worker: CUDA_VISIBLE_DEVICES=",
                    m.visible_devices.empty() ? "its own GPU" : m.visible_devices,
                    " CUDA_DEVICE_ORDER=PCI_BUS_ID (cuda:LOCAL_RANK is the rank's GPU)\n");
  }
  for (const auto& n : m.notes) absl::StrAppend(&out, "  note: ", n, "\n");
  return out;
}

}  // namespace gangway::topology
