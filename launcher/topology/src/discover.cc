#include "gangway/topology/discover.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <optional>

#include <unistd.h>

#include <absl/strings/ascii.h>
#include <absl/strings/match.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>

#include "gangway/common/file.h"
#include "gangway/common/hostname.h"
#include "gangway/topology/nccl_xml.h"
#include "gangway/topology/network_path.h"

#include "nvml.h"
#include "verbs.h"

namespace gangway::topology {
namespace {

namespace fs = std::filesystem;

std::optional<std::string> readText(const fs::path& p) {
  auto text = readFile(p.string(), "sysfs file", 1 << 20);
  if (!text.ok()) return std::nullopt;
  return std::string(absl::StripAsciiWhitespace(*text));
}

int readInt(const fs::path& p, int fallback) {
  int v = fallback;
  if (auto t = readText(p); !t || !absl::SimpleAtoi(*t, &v)) return fallback;
  return v;
}

bool looksLikeBusId(const std::string& s) { return normalizeBusId(s).ok() && s.size() >= 12; }

// The PCI path of the device a sysfs link points to: the host bridge ("pci0000:17"), then every
// bus id on the way down. Stops at the last bus id (a virtio or infiniband child is not PCI).
std::vector<std::string> pciPathOf(const fs::path& link) {
  std::error_code ec;
  const fs::path real = fs::canonical(link, ec);
  if (ec) return {};
  std::vector<std::string> path;
  bool started = false;
  for (const auto& part : real) {
    const std::string s = part.string();
    if (!started) {
      if (absl::StartsWith(s, "pci") && s.size() > 3 && s.find(':') != std::string::npos) {
        started = true;
        path.push_back(s);
      }
      continue;
    }
    if (!looksLikeBusId(s)) break;
    path.push_back(*normalizeBusId(s));
  }
  if (path.size() < 2) return {};
  return path;
}

std::vector<std::string> listDir(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end(), naturalLess);
  return names;
}

// "400 Gb/sec (4X NDR)" -> 400.
double leadingNumber(const std::string& text) {
  std::vector<absl::string_view> words = absl::StrSplit(text, ' ');
  double v = 0;
  if (words.empty() || !absl::SimpleAtod(words[0], &v)) return 0;
  return v;
}

class Discovery {
 public:
  explicit Discovery(const DiscoverOptions& o)
      : options_(o), root_(o.root.empty() ? "/" : o.root) {}

  NodeTopology run() {
    topo_.source = absl::StrCat("sysfs ", options_.root.empty() ? "/" : options_.root);
    topo_.hostname = options_.hostname.empty() ? hostName() : options_.hostname;
    if (!fs::exists(sys("class/pci_bus")) && fs::exists(sys("bus/pci/devices"))) {
      topo_.notes.emplace_back(
          "no /sys/class/pci_bus (usual in containers): PCI paths come from /sys/bus/pci/devices");
    }
    cpusAndNuma();
    gpus();
    rdmaNics();
    netInterfaces();
    pciDevices();
    cpuModel();
    networkPath();
    return std::move(topo_);
  }

 private:
  fs::path sys(const std::string& rel) const { return root_ / "sys" / rel; }

  void cpusAndNuma() {
    if (auto online = readText(sys("devices/system/cpu/online"))) {
      if (auto cpus = parseCpuList(*online); cpus.ok()) topo_.cpus = *cpus;
    }
    for (const auto& name : listDir(sys("devices/system/node"))) {
      int id = 0;
      if (!absl::StartsWith(name, "node") || !absl::SimpleAtoi(name.substr(4), &id)) continue;
      NumaNode n;
      n.id = id;
      if (auto list = readText(sys("devices/system/node") / name / "cpulist")) {
        if (auto cpus = parseCpuList(*list); cpus.ok()) n.cpus = *cpus;
      }
      if (auto meminfo = readText(sys("devices/system/node") / name / "meminfo")) {
        for (absl::string_view line : absl::StrSplit(*meminfo, '\n')) {
          std::vector<absl::string_view> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
          int64_t kb = 0;
          if (w.size() >= 4 && w[2] == "MemTotal:" && absl::SimpleAtoi(w[3], &kb)) {
            n.memory_bytes = kb * 1024;
          }
        }
      }
      topo_.numa_nodes.push_back(std::move(n));
    }
    if (topo_.cpus.empty()) {
      for (const auto& n : topo_.numa_nodes)
        topo_.cpus.insert(topo_.cpus.end(), n.cpus.begin(), n.cpus.end());
      std::sort(topo_.cpus.begin(), topo_.cpus.end());
      if (topo_.cpus.empty() && root_ == "/") {
        const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
        for (long c = 0; c < n; ++c) topo_.cpus.push_back(static_cast<int>(c));
      }
      topo_.notes.emplace_back("no /sys/devices/system/cpu/online: CPUs taken from the NUMA nodes");
    }
    if (topo_.numa_nodes.empty()) {
      topo_.numa_nodes.push_back(NumaNode{0, topo_.cpus, 0});
      topo_.notes.emplace_back(
          "no /sys/devices/system/node: one NUMA node assumed, holding every online CPU");
    }
  }

  // PCI path, NUMA node and local CPUs of a device, from /sys/bus/pci/devices/<bus id>.
  bool pciDetails(const std::string& bus_id, const std::string& what,
                  std::vector<std::string>* path, int* numa, std::vector<int>* cpus) {
    const fs::path dev = sys("bus/pci/devices") / bus_id;
    std::error_code ec;
    if (!fs::exists(dev, ec)) {
      topo_.notes.push_back(
          absl::StrCat("no /sys/bus/pci/devices/", bus_id, " for ", what,
                       ": its PCI path is unknown, so its links are judged by NUMA "
                       "node only (NODE or SYS)"));
      return false;
    }
    *path = pciPathOf(dev);
    *numa = readInt(dev / "numa_node", -1);
    if (auto list = readText(dev / "local_cpulist")) {
      if (auto c = parseCpuList(*list); c.ok()) *cpus = *c;
    }
    if (*numa < 0 && topo_.numa_nodes.size() == 1) *numa = topo_.numa_nodes[0].id;
    if (*numa >= 0 && cpus->empty()) {
      for (const auto& n : topo_.numa_nodes) {
        if (n.id == *numa) *cpus = n.cpus;
      }
    }
    return true;
  }

  void gpus() {
    std::string library = options_.nvml_library;
    if (library.empty()) {
      if (const char* env = std::getenv("GANGWAY_NVML_LIBRARY"); env != nullptr && *env != 0) {
        library = env;
      } else if (root_ == "/") {
        library = "libnvidia-ml.so.1";
      }
    }
    // NVIDIA display or 3D controllers on the PCI bus, to say what NVML would have found.
    std::vector<std::string> pci_gpus;
    for (const auto& name : listDir(sys("bus/pci/devices"))) {
      const fs::path dev = sys("bus/pci/devices") / name;
      const auto vendor = readText(dev / "vendor");
      const auto cls = readText(dev / "class");
      if (vendor && *vendor == "0x10de" && cls &&
          (absl::StartsWith(*cls, "0x0302") || absl::StartsWith(*cls, "0x0300"))) {
        pci_gpus.push_back(name);
      }
    }
    std::sort(pci_gpus.begin(), pci_gpus.end());
    if (library.empty()) {
      topo_.gpu_source = "none: NVML is not used under a fixture root unless named";
      if (!pci_gpus.empty()) {
        topo_.notes.push_back(absl::StrCat(pci_gpus.size(), " NVIDIA PCI device(s) seen (",
                                           absl::StrJoin(pci_gpus, ", "),
                                           ") but no NVML library named: no GPUs mapped"));
      }
      return;
    }
    NvmlResult nvml = queryNvml(library);
    if (!nvml.loaded) {
      topo_.gpu_source = absl::StrCat("none: ", nvml.error);
      if (!pci_gpus.empty()) {
        topo_.notes.push_back(absl::StrCat(pci_gpus.size(), " NVIDIA PCI device(s) seen (",
                                           absl::StrJoin(pci_gpus, ", "),
                                           ") but NVML is not usable: no GPUs mapped"));
      }
      return;
    }
    topo_.gpu_source =
        absl::StrCat("nvml", nvml.driver_version.empty() ? "" : " driver ", nvml.driver_version);
    if (!nvml.error.empty()) topo_.notes.push_back(absl::StrCat("NVML: ", nvml.error));
    for (auto& g : nvml.gpus) {
      pciDetails(g.bus_id, absl::StrCat("GPU", g.index, " (", g.bus_id, ")"), &g.pci_path,
                 &g.numa_node, &g.cpus);
      topo_.gpus.push_back(std::move(g));
    }
    std::string clique;
    bool same = !topo_.gpus.empty();
    for (const auto& g : topo_.gpus) {
      if (g.fabric_clique.empty() || (!clique.empty() && g.fabric_clique != clique)) same = false;
      clique = g.fabric_clique;
    }
    if (same) {
      topo_.nvlink_domain = clique;
    } else if (!clique.empty()) {
      topo_.notes.emplace_back(
          "the GPUs report different NVLink fabric cliques: no NVLink domain set");
    }
  }

  void rdmaNics() {
    const fs::path dir = sys("class/infiniband");
    for (const auto& name : listDir(dir)) {
      Nic n;
      n.name = name;
      n.rdma = true;
      const fs::path dev = dir / name;
      n.pci_path = pciPathOf(dev / "device");
      if (!n.pci_path.empty()) n.bus_id = n.pci_path.back();
      n.numa_node = readInt(dev / "device/numa_node", -1);
      if (n.numa_node < 0 && topo_.numa_nodes.size() == 1) n.numa_node = topo_.numa_nodes[0].id;
      if (auto guid = readText(dev / "node_guid")) n.guid = *guid;
      for (const auto& netdev : listDir(dev / "device/net")) n.netdevs.push_back(netdev);
      for (const auto& p : listDir(dev / "ports")) {
        NicPort port;
        if (!absl::SimpleAtoi(p, &port.port)) continue;
        const fs::path pd = dev / "ports" / p;
        if (auto state = readText(pd / "state")) {
          // "4: ACTIVE"
          const auto colon = state->find(':');
          port.state = std::string(absl::StripAsciiWhitespace(
              colon == std::string::npos ? *state : state->substr(colon + 1)));
        }
        if (auto ll = readText(pd / "link_layer")) port.link_layer = *ll;
        if (auto rate = readText(pd / "rate")) port.rate_gbps = leadingNumber(*rate);
        n.speed_gbps = std::max(n.speed_gbps, port.rate_gbps);
        n.ports.push_back(std::move(port));
      }
      if (n.pci_path.empty()) {
        topo_.notes.push_back(
            absl::StrCat("RDMA device ", name, ": no PCI path in sysfs; judged by NUMA node only"));
      }
      topo_.nics.push_back(std::move(n));
    }
    if (root_ == "/") mergeVerbs(&topo_);
  }

  void netInterfaces() {
    std::vector<std::string> taken;
    for (const auto& n : topo_.nics) taken.insert(taken.end(), n.netdevs.begin(), n.netdevs.end());
    const fs::path dir = sys("class/net");
    for (const auto& name : listDir(dir)) {
      if (std::find(taken.begin(), taken.end(), name) != taken.end()) continue;
      std::error_code ec;
      if (!fs::exists(dir / name / "device", ec)) continue;  // virtual: lo, veth, bridges
      Nic n;
      n.name = name;
      n.pci_path = pciPathOf(dir / name / "device");
      if (!n.pci_path.empty()) {
        n.bus_id = n.pci_path.back();
        const fs::path pci = sys("bus/pci/devices") / n.bus_id;
        n.numa_node = readInt(pci / "numa_node", -1);
      }
      if (n.numa_node < 0 && topo_.numa_nodes.size() == 1) n.numa_node = topo_.numa_nodes[0].id;
      const int mbps = readInt(dir / name / "speed", -1);
      if (mbps > 0) n.speed_gbps = mbps / 1000.0;
      topo_.nics.push_back(std::move(n));
    }
  }

  // What NCCL's XML records of every device and bridge on the GPUs' and NICs' paths.
  void pciDevices() {
    std::vector<std::string> ids;
    auto add = [&ids](const std::vector<std::string>& path) {
      for (std::size_t i = 1; i < path.size(); ++i) {
        if (std::find(ids.begin(), ids.end(), path[i]) == ids.end()) ids.push_back(path[i]);
      }
    };
    for (const auto& g : topo_.gpus) add(g.pci_path);
    for (const auto& n : topo_.nics) add(n.pci_path);
    for (const auto& id : ids) {
      const fs::path dev = sys("bus/pci/devices") / id;
      PciDevice d;
      d.bus_id = id;
      d.pci_class = readText(dev / "class").value_or("");
      d.vendor = readText(dev / "vendor").value_or("");
      d.device = readText(dev / "device").value_or("");
      d.subsystem_vendor = readText(dev / "subsystem_vendor").value_or("");
      d.subsystem_device = readText(dev / "subsystem_device").value_or("");
      d.link_speed = readText(dev / "current_link_speed").value_or("");
      d.link_width = readInt(dev / "current_link_width", 0);
      topo_.pci_devices.push_back(std::move(d));
    }
  }

  // The CPU's architecture and model, which NCCL's XML records (and its tuning reads).
  void cpuModel() {
#if defined(__aarch64__)
    topo_.cpu_arch = "arm64";
#elif defined(__powerpc64__)
    topo_.cpu_arch = "ppc64";
#else
    topo_.cpu_arch = "x86_64";
#endif
    const auto info = readText(root_ / "proc/cpuinfo");
    if (!info) return;
    for (absl::string_view line : absl::StrSplit(*info, '\n')) {
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(line, absl::MaxSplits(':', 1));
      const absl::string_view key = absl::StripAsciiWhitespace(kv.first);
      const absl::string_view value = absl::StripAsciiWhitespace(kv.second);
      if (key == "processor" && topo_.cpu_model >= 0) break;  // the first CPU says it all
      if (key == "vendor_id") topo_.cpu_vendor = std::string(value);
      if (key == "cpu family") (void)absl::SimpleAtoi(value, &topo_.cpu_family);
      if (key == "model") (void)absl::SimpleAtoi(value, &topo_.cpu_model);
    }
  }

  void networkPath() {
    std::string path = options_.network_path;
    if (path.empty()) {
      if (const char* env = std::getenv("GANGWAY_NETWORK_PATH"); env != nullptr) path = env;
    }
    if (path.empty()) return;
    auto parts = parseNetworkPath(path);
    if (!parts.ok()) {
      topo_.notes.push_back(absl::StrCat("network path ignored: ", parts.status().message()));
      return;
    }
    topo_.network_path = absl::StrJoin(*parts, "/");
  }

  const DiscoverOptions& options_;
  fs::path root_;
  NodeTopology topo_;
};

}  // namespace

NodeTopology discover(const DiscoverOptions& options) { return Discovery(options).run(); }

absl::StatusOr<NodeTopology> loadTopologyFile(const std::string& path) {
  auto content = readFile(path, "topology file");
  if (absl::IsNotFound(content.status())) {
    return absl::NotFoundError(absl::StrCat("cannot read topology file ", path));
  }
  if (!content.ok()) return content.status();
  const std::string& text = *content;
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '<') return parseNcclXml(text, path);
  auto t = parseJson(text, path);
  if (t.ok() && t->source.empty()) t->source = absl::StrCat("file ", path);
  return t;
}

}  // namespace gangway::topology
