#include "gangway/topology/nccl_xml.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>

#include <absl/strings/match.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <tinyxml2.h>

namespace gangway::topology {
namespace {

using tinyxml2::XMLElement;

constexpr const char* kNvSwitchClass = "0x068000";
constexpr const char* kGpuClass = "0x030200";
constexpr const char* kBridgeClass = "0x060400";
// Written on the first <pci> below a <cpu> so that an export read back keeps host bridges apart
// (NCCL ignores attributes it does not know).
constexpr const char* kHostBridgeAttr = "gangway_host_bridge";
// Written on the <net> of an RDMA device whose GUID is unknown.
constexpr const char* kRdmaAttr = "gangway_rdma";

class Importer {
 public:
  explicit Importer(std::string source) : source_(std::move(source)) {}

  absl::StatusOr<NodeTopology> run(absl::string_view text) {
    tinyxml2::XMLDocument doc;
    if (doc.Parse(text.data(), text.size()) != tinyxml2::XML_SUCCESS) {
      return absl::InvalidArgumentError(absl::StrCat(
          source_, ":", doc.ErrorLineNum(), ": not well-formed XML (", doc.ErrorName(), ")"));
    }
    const XMLElement* root = doc.RootElement();
    if (root == nullptr || std::string(root->Name()) != "system") {
      return absl::InvalidArgumentError(
          absl::StrCat(source_, ":", root != nullptr ? root->GetLineNum() : 1,
                       ": expected <system> as the root element of an NCCL topology file, found <",
                       root != nullptr ? root->Name() : "", ">"));
    }
    topo_.source = absl::StrCat("nccl-xml ", source_);
    topo_.gpu_source = "file";
    for (const XMLElement* e = root->FirstChildElement(); e != nullptr && error_.empty();
         e = e->NextSiblingElement()) {
      if (std::string(e->Name()) == "cpu") cpu(e);
    }
    if (!error_.empty()) return absl::InvalidArgumentError(error_);
    std::sort(topo_.gpus.begin(), topo_.gpus.end(),
              [](const Gpu& a, const Gpu& b) { return a.index < b.index; });
    for (std::size_t i = 1; i < topo_.gpus.size(); ++i) {
      if (topo_.gpus[i].index == topo_.gpus[i - 1].index) {
        return absl::InvalidArgumentError(
            absl::StrCat(source_, ": two <gpu> elements have dev=\"", topo_.gpus[i].index, "\""));
      }
    }
    for (const auto& n : topo_.numa_nodes)
      topo_.cpus.insert(topo_.cpus.end(), n.cpus.begin(), n.cpus.end());
    std::sort(topo_.cpus.begin(), topo_.cpus.end());
    topo_.cpus.erase(std::unique(topo_.cpus.begin(), topo_.cpus.end()), topo_.cpus.end());
    // As discovery lists them: RDMA devices first, each group by name.
    std::sort(topo_.nics.begin(), topo_.nics.end(), [](const Nic& a, const Nic& b) {
      return a.rdma != b.rdma ? a.rdma : naturalLess(a.name, b.name);
    });
    return std::move(topo_);
  }

 private:
  void fail(const XMLElement* e, const std::string& what) {
    if (error_.empty()) {
      error_ = absl::StrCat(source_, ":", e->GetLineNum(), ": <", e->Name(), ">: ", what);
    }
  }
  const char* attr(const XMLElement* e, const char* name, bool required) {
    const char* v = e->Attribute(name);
    if (v == nullptr && required) fail(e, absl::StrCat("needs attribute '", name, "'"));
    return v;
  }
  bool integer(const XMLElement* e, const char* name, bool required, int64_t* out) {
    const char* v = attr(e, name, required);
    if (v == nullptr) return false;
    if (!absl::SimpleAtoi(v, out)) {
      fail(e, absl::StrCat(name, "=\"", v, "\" is not an integer"));
      return false;
    }
    return true;
  }
  bool busId(const XMLElement* e, const char* name, std::string* out) {
    const char* v = attr(e, name, true);
    if (v == nullptr) return false;
    auto id = normalizeBusId(v);
    if (!id.ok()) {
      fail(e, absl::StrCat(name, "=", id.status().message()));
      return false;
    }
    *out = *id;
    return true;
  }

  void cpu(const XMLElement* e) {
    int64_t id = 0;
    if (!integer(e, "numaid", true, &id)) return;
    NumaNode n;
    n.id = static_cast<int>(id);
    if (const char* mask = attr(e, "affinity", false)) {
      auto cpus = parseCpuMask(mask);
      if (!cpus.ok()) return fail(e, absl::StrCat("affinity=", cpus.status().message()));
      n.cpus = *cpus;
    }
    if (n.cpus.empty()) {
      topo_.notes.push_back(absl::StrCat("<cpu numaid=\"", n.id, "\"> (line ", e->GetLineNum(),
                                         ") gives no CPU affinity: its devices have no CPU list"));
    }
    if (const char* arch = e->Attribute("arch")) topo_.cpu_arch = arch;
    if (const char* vendor = e->Attribute("vendor")) topo_.cpu_vendor = vendor;
    int64_t v = 0;
    if (integer(e, "familyid", false, &v)) topo_.cpu_family = static_cast<int>(v);
    if (integer(e, "modelid", false, &v)) topo_.cpu_model = static_cast<int>(v);
    numa_ = n.id;
    cpus_ = n.cpus;
    topo_.numa_nodes.push_back(std::move(n));
    for (const XMLElement* c = e->FirstChildElement(); c != nullptr && error_.empty();
         c = c->NextSiblingElement()) {
      const std::string name = c->Name();
      std::vector<std::string> path{absl::StrCat("cpu", numa_)};
      if (name == "pci") {
        if (const char* hb = c->Attribute(kHostBridgeAttr)) path[0] = hb;
        pci(c, path);
      } else if (name == "nic") {
        nic(c, {}, "");
      }
    }
  }

  void pci(const XMLElement* e, std::vector<std::string> path) {
    std::string bus;
    if (!busId(e, "busid", &bus)) return;
    path.push_back(bus);
    const char* cls = attr(e, "class", false);
    if (findPci(topo_, bus) == nullptr) {
      PciDevice d;
      d.bus_id = bus;
      auto text = [e](const char* name) {
        const char* v = e->Attribute(name);
        return v != nullptr ? std::string(v) : std::string();
      };
      d.pci_class = text("class");
      d.vendor = text("vendor");
      d.device = text("device");
      d.subsystem_vendor = text("subsystem_vendor");
      d.subsystem_device = text("subsystem_device");
      d.link_speed = text("link_speed");
      int64_t width = 0;
      if (integer(e, "link_width", false, &width)) d.link_width = static_cast<int>(width);
      topo_.pci_devices.push_back(std::move(d));
    }
    for (const XMLElement* c = e->FirstChildElement(); c != nullptr && error_.empty();
         c = c->NextSiblingElement()) {
      const std::string name = c->Name();
      if (name == "pci") {
        pci(c, path);
      } else if (name == "gpu") {
        gpu(c, path);
      } else if (name == "nic") {
        nic(c, path, cls != nullptr ? cls : "");
      }
    }
  }

  void gpu(const XMLElement* e, const std::vector<std::string>& path) {
    Gpu g;
    int64_t dev = 0;
    if (!integer(e, "dev", true, &dev)) return;
    g.index = static_cast<int>(dev);
    g.bus_id = path.back();
    g.pci_path = path;
    g.numa_node = numa_;
    g.cpus = cpus_;
    int64_t sm = 0;
    if (integer(e, "sm", false, &sm)) g.compute_capability = absl::StrCat(sm / 10, ".", sm % 10);
    int link = 0;
    for (const XMLElement* c = e->FirstChildElement("nvlink"); c != nullptr && error_.empty();
         c = c->NextSiblingElement("nvlink")) {
      std::string target;
      if (!busId(c, "target", &target)) return;
      int64_t count = 1;
      if (integer(c, "count", false, &count) && (count < 1 || count > 64)) {
        return fail(c, absl::StrCat("count=\"", count, "\" is not between 1 and 64"));
      }
      const char* tclass = attr(c, "tclass", false);
      std::string type = "unknown";
      if (tclass != nullptr && absl::StartsWith(tclass, "0x0680")) type = "nvswitch";
      if (tclass != nullptr && absl::StartsWith(tclass, "0x030")) type = "gpu";
      if (tclass != nullptr && absl::StartsWith(tclass, "0x06") && type == "unknown") type = "cpu";
      for (int64_t k = 0; k < count; ++k) g.nvlinks.push_back(NvLink{link++, target, type});
    }
    topo_.gpus.push_back(std::move(g));
  }

  void nic(const XMLElement* e, const std::vector<std::string>& path, const std::string& cls) {
    for (const XMLElement* c = e->FirstChildElement("net"); c != nullptr && error_.empty();
         c = c->NextSiblingElement("net")) {
      const char* name = attr(c, "name", true);
      if (name == nullptr) return;
      int64_t port = 1;
      integer(c, "port", false, &port);
      int64_t speed = 0;
      integer(c, "speed", false, &speed);
      if (!error_.empty()) return;
      auto it = std::find_if(topo_.nics.begin(), topo_.nics.end(),
                             [&](const Nic& n) { return n.name == name; });
      if (it == topo_.nics.end()) {
        Nic n;
        n.name = name;
        n.pci_path = path;
        n.bus_id = path.empty() ? "" : path.back();
        n.numa_node = numa_;
        topo_.nics.push_back(std::move(n));
        it = topo_.nics.end() - 1;
      }
      // NCCL writes guid="0x0" for socket interfaces: only a real GUID (or an InfiniBand class,
      // or gangway's own mark) makes an RDMA device.
      const char* guid = c->Attribute("guid");
      const bool real_guid = guid != nullptr && std::strtoull(guid, nullptr, 0) != 0;
      const char* mark = c->Attribute(kRdmaAttr);
      it->rdma = it->rdma || absl::StartsWith(cls, "0x0207") || real_guid ||
                 (mark != nullptr && std::string(mark) == "1");
      if (real_guid) it->guid = guid;
      NicPort p;
      p.port = static_cast<int>(port);
      p.state = "ACTIVE";  // NCCL lists usable ports only
      p.link_layer = absl::StartsWith(cls, "0x0207") ? "InfiniBand" : "Ethernet";
      p.rate_gbps = static_cast<double>(speed) / 1000.0;
      it->speed_gbps = std::max(it->speed_gbps, p.rate_gbps);
      if (it->rdma) it->ports.push_back(p);
    }
  }

  std::string source_;
  std::string error_;
  NodeTopology topo_;
  int numa_ = 0;
  std::vector<int> cpus_;
};

// The PCI tree of one NUMA node, built from the devices' paths, for export.
struct PciNode {
  std::string bus_id;
  std::string host_bridge;  // set on the first level below a <cpu>
  std::map<std::string, PciNode> children;
  const Gpu* gpu = nullptr;
  const Nic* nic = nullptr;
};

// NCCL's GUID form: 0x followed by 16 hex digits ("b83f:d203:0019:0001" in sysfs).
std::string ncclGuid(const std::string& guid) {
  std::string hex;
  for (char c : guid) {
    if (std::isxdigit(static_cast<unsigned char>(c)) != 0) hex += c;
  }
  if (absl::StartsWith(guid, "0x")) return guid;
  return hex.empty() ? "0x0" : "0x" + hex;
}

void writePci(tinyxml2::XMLPrinter& out, const NodeTopology& t, const PciNode& n, int* nic_dev) {
  out.OpenElement("pci");
  out.PushAttribute("busid", n.bus_id.c_str());
  const PciDevice* d = findPci(t, n.bus_id);
  std::string cls = kBridgeClass;
  if (n.gpu != nullptr) cls = kGpuClass;
  if (n.nic != nullptr) {
    const bool ib = !n.nic->ports.empty() && n.nic->ports[0].link_layer == "InfiniBand";
    cls = ib ? "0x020700" : "0x020000";
  }
  if (d != nullptr && d->pci_class.size() >= 8) cls = d->pci_class.substr(0, 8);
  out.PushAttribute("class", cls.c_str());
  if (d != nullptr) {
    for (const auto& [name, value] :
         {std::pair<const char*, const std::string*>{"vendor", &d->vendor},
          {"device", &d->device},
          {"subsystem_vendor", &d->subsystem_vendor},
          {"subsystem_device", &d->subsystem_device}}) {
      if (!value->empty()) out.PushAttribute(name, value->c_str());
    }
  }
  // NCCL requires both; it reads width 0 as 16 lanes and an unknown speed as its default.
  out.PushAttribute("link_speed",
                    d != nullptr && !d->link_speed.empty() ? d->link_speed.c_str() : "Unknown");
  out.PushAttribute("link_width", d != nullptr ? d->link_width : 0);
  if (!n.host_bridge.empty()) out.PushAttribute(kHostBridgeAttr, n.host_bridge.c_str());
  if (n.gpu != nullptr) {
    const Gpu& g = *n.gpu;
    out.OpenElement("gpu");
    out.PushAttribute("dev", g.index);
    int major = 0;
    int minor = 0;
    if (std::sscanf(g.compute_capability.c_str(), "%d.%d", &major, &minor) == 2) {
      out.PushAttribute("sm", major * 10 + minor);
    }
    out.PushAttribute("rank", g.index);
    out.PushAttribute("gdr", 1);
    std::map<std::string, std::pair<int, std::string>> peers;  // target -> count, type
    for (const auto& l : g.nvlinks) {
      auto& p = peers[l.remote_bus_id];
      ++p.first;
      p.second = l.remote_type;
    }
    for (const auto& [target, p] : peers) {
      out.OpenElement("nvlink");
      out.PushAttribute("target", target.c_str());
      out.PushAttribute("count", p.first);
      const char* tclass = p.second == "nvswitch" ? kNvSwitchClass
                           : p.second == "gpu"    ? kGpuClass
                                                  : "0x060000";
      out.PushAttribute("tclass", tclass);
      out.CloseElement();
    }
    out.CloseElement();
  }
  if (n.nic != nullptr) {
    const Nic& nic = *n.nic;
    out.OpenElement("nic");
    std::vector<NicPort> ports = nic.ports;
    if (ports.empty()) ports.push_back(NicPort{1, "ACTIVE", "Ethernet", nic.speed_gbps});
    for (const auto& p : ports) {
      out.OpenElement("net");
      out.PushAttribute("name", nic.name.c_str());
      out.PushAttribute("dev", (*nic_dev)++);
      out.PushAttribute("speed", static_cast<int64_t>(p.rate_gbps * 1000));
      out.PushAttribute("port", p.port);
      out.PushAttribute("latency", "0");
      out.PushAttribute("guid", nic.rdma ? ncclGuid(nic.guid).c_str() : "0x0");
      if (nic.rdma && ncclGuid(nic.guid) == "0x0") out.PushAttribute(kRdmaAttr, "1");
      out.PushAttribute("maxconn", nic.rdma ? 131072 : 65536);
      out.PushAttribute("gdr", nic.rdma ? 1 : 0);
      out.CloseElement();
    }
    out.CloseElement();
  }
  for (const auto& [id, child] : n.children) writePci(out, t, child, nic_dev);
  out.CloseElement();
}

void insert(std::map<std::string, PciNode>& level, const std::vector<std::string>& path,
            const std::string& host_bridge, const Gpu* gpu, const Nic* nic) {
  std::map<std::string, PciNode>* at = &level;
  PciNode* node = nullptr;
  for (std::size_t i = 0; i < path.size(); ++i) {
    node = &(*at)[path[i]];
    node->bus_id = path[i];
    if (i == 0) node->host_bridge = host_bridge;
    at = &node->children;
  }
  if (node != nullptr) {
    if (gpu != nullptr) node->gpu = gpu;
    if (nic != nullptr) node->nic = nic;
  }
}

}  // namespace

absl::StatusOr<NodeTopology> parseNcclXml(absl::string_view text, const std::string& source) {
  auto t = Importer(source).run(text);
  if (!t.ok()) return oneLineError(t.status());
  return t;
}

std::string toNcclXml(const NodeTopology& t) {
  tinyxml2::XMLPrinter out;
  out.PushHeader(false, false);
  out.OpenElement("system");
  out.PushAttribute("version", 1);
  int nic_dev = 0;
  std::vector<int> numa_ids;
  for (const auto& n : t.numa_nodes) numa_ids.push_back(n.id);
  auto device_numa = [&](int numa) {
    if (numa >= 0) return numa;
    return numa_ids.empty() ? 0 : numa_ids.front();
  };
  for (const auto& node : t.numa_nodes) {
    std::map<std::string, PciNode> tree;
    std::vector<const Nic*> loose;  // NICs with no PCI path
    auto add = [&](const std::vector<std::string>& pci_path, const std::string& bus_id,
                   const Gpu* gpu, const Nic* nic) {
      std::vector<std::string> path;
      std::string host_bridge;
      if (pci_path.size() >= 2) {
        host_bridge = pci_path[0];
        path.assign(pci_path.begin() + 1, pci_path.end());
      } else if (!bus_id.empty()) {
        path.push_back(bus_id);
      }
      if (path.empty()) {
        if (nic != nullptr) loose.push_back(nic);
        return;
      }
      insert(tree, path, host_bridge, gpu, nic);
    };
    for (const auto& g : t.gpus) {
      if (device_numa(g.numa_node) == node.id) add(g.pci_path, g.bus_id, &g, nullptr);
    }
    for (const auto& n : t.nics) {
      if (device_numa(n.numa_node) == node.id) add(n.pci_path, n.bus_id, nullptr, &n);
    }
    out.OpenElement("cpu");
    out.PushAttribute("numaid", node.id);
    if (!node.cpus.empty()) out.PushAttribute("affinity", formatCpuMask(node.cpus).c_str());
    // NCCL reads the vendor (and Intel's family and model) when the arch is given.
    if (!t.cpu_arch.empty() && !t.cpu_vendor.empty()) {
      out.PushAttribute("arch", t.cpu_arch.c_str());
      out.PushAttribute("vendor", t.cpu_vendor.c_str());
      if (t.cpu_family >= 0) out.PushAttribute("familyid", t.cpu_family);
      if (t.cpu_model >= 0) out.PushAttribute("modelid", t.cpu_model);
    }
    for (const auto& [id, child] : tree) writePci(out, t, child, &nic_dev);
    for (const Nic* nic : loose) {
      out.OpenElement("nic");
      out.OpenElement("net");
      out.PushAttribute("name", nic->name.c_str());
      out.PushAttribute("dev", nic_dev++);
      out.PushAttribute("speed", static_cast<int64_t>(nic->speed_gbps * 1000));
      out.PushAttribute("port", 1);
      out.PushAttribute("latency", "0");
      out.PushAttribute("guid", "0x0");
      out.PushAttribute("maxconn", 65536);
      out.PushAttribute("gdr", 0);
      out.CloseElement();
      out.CloseElement();
    }
    out.CloseElement();
  }
  out.CloseElement();
  return out.CStr();
}

}  // namespace gangway::topology
