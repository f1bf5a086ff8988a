#include "gangway/topology/model.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include <absl/strings/ascii.h>
#include <absl/strings/escaping.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <nlohmann/json.hpp>

namespace gangway::topology {
namespace {

using nlohmann::json;

bool isHex(absl::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return absl::ascii_isxdigit(c); });
}

// The index of the first element the two paths do not share.
std::size_t commonPrefix(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

}  // namespace

std::string linkLabel(Link link, int nvlinks) {
  switch (link) {
    case Link::kSelf:
      return "X";
    case Link::kNvLink:
      return absl::StrCat("NV", nvlinks);
    case Link::kPix:
      return "PIX";
    case Link::kPxb:
      return "PXB";
    case Link::kPhb:
      return "PHB";
    case Link::kNode:
      return "NODE";
    case Link::kSys:
      return "SYS";
  }
  return "?";
}

Link pciLink(const std::vector<std::string>& a, int numa_a, const std::vector<std::string>& b,
             int numa_b) {
  if (!a.empty() && a == b) return Link::kSelf;
  const bool same_numa = numa_a == numa_b || numa_a < 0 || numa_b < 0;
  if (a.size() < 2 || b.size() < 2 || a[0] != b[0]) return same_numa ? Link::kNode : Link::kSys;
  // Same host bridge. Element 1 is the root port; below it, a PCIe switch shows as an upstream
  // port followed by downstream ports, so path elements 2, 4, ... (before the device itself, the
  // last element) are the upstream ports of the switches the device sits under.
  if (commonPrefix(a, b) <= 1) return Link::kPhb;  // different root ports: via the host bridge
  auto upstream = [](const std::vector<std::string>& p) {
    std::vector<std::string> out;
    for (std::size_t i = 2; i + 1 < p.size(); i += 2) out.push_back(p[i]);
    return out;
  };
  const auto sa = upstream(a);
  const auto sb = upstream(b);
  const std::size_t shared = commonPrefix(sa, sb);
  // The switches between the two: each side's own, plus the one where they meet (or the root
  // port, a bridge too, when they share no switch).
  const std::size_t between = (sa.size() - shared) + (sb.size() - shared) + 1;
  return between <= 1 ? Link::kPix : Link::kPxb;
}

int nvlinkCount(const Gpu& a, const Gpu& b) {
  if (a.bus_id == b.bus_id) return 0;
  int direct = 0;
  int a_switch = 0;
  int b_switch = 0;
  for (const auto& l : a.nvlinks) {
    if (l.remote_type == "gpu" && l.remote_bus_id == b.bus_id) ++direct;
    if (l.remote_type == "nvswitch") ++a_switch;
  }
  for (const auto& l : b.nvlinks) {
    if (l.remote_type == "nvswitch") ++b_switch;
  }
  return direct + std::min(a_switch, b_switch);
}

Link gpuLink(const Gpu& a, const Gpu& b, int* nvlinks) {
  *nvlinks = 0;
  if (a.bus_id == b.bus_id) return Link::kSelf;
  *nvlinks = nvlinkCount(a, b);
  if (*nvlinks > 0) return Link::kNvLink;
  return pciLink(a.pci_path, a.numa_node, b.pci_path, b.numa_node);
}

absl::StatusOr<std::string> normalizeBusId(absl::string_view id) {
  const std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(id));
  std::vector<absl::string_view> parts = absl::StrSplit(lower, ':');
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", id, "' is not a PCI bus id (expected domain:bus:device.function, e.g. 0000:18:00.0)"));
  };
  if (parts.size() == 2) parts.insert(parts.begin(), "0000");
  if (parts.size() != 3) return bad();
  std::vector<absl::string_view> df = absl::StrSplit(parts[2], '.');
  if (df.size() != 2 || !isHex(parts[0]) || parts[0].size() > 8 || !isHex(parts[1]) ||
      parts[1].size() > 2 || !isHex(df[0]) || df[0].size() > 2 || !isHex(df[1]) ||
      df[1].size() != 1) {
    return bad();
  }
  unsigned domain = 0;
  unsigned bus = 0;
  unsigned dev = 0;
  unsigned fn = 0;
  if (!absl::SimpleHexAtoi(parts[0], &domain) || !absl::SimpleHexAtoi(parts[1], &bus) ||
      !absl::SimpleHexAtoi(df[0], &dev) || !absl::SimpleHexAtoi(df[1], &fn) || dev > 0x1f ||
      fn > 7) {
    return bad();
  }
  return absl::StrFormat("%04x:%02x:%02x.%x", domain, bus, dev, fn);
}

absl::StatusOr<std::vector<int>> parseCpuList(absl::string_view text) {
  std::vector<int> out;
  const absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t.empty()) return out;
  for (absl::string_view part : absl::StrSplit(t, ',')) {
    std::vector<absl::string_view> range = absl::StrSplit(part, '-');
    int lo = 0;
    int hi = 0;
    if (range.size() == 1 && absl::SimpleAtoi(range[0], &lo) && lo >= 0) {
      hi = lo;
    } else if (range.size() != 2 || !absl::SimpleAtoi(range[0], &lo) ||
               !absl::SimpleAtoi(range[1], &hi) || lo < 0 || hi < lo) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", t, "' is not a CPU list (expected e.g. 0-3,8,10-11)"));
    }
    if (hi >= kMaxCpus) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", t, "' names CPU ", hi, " (expected CPU numbers below ", kMaxCpus, ")"));
    }
    for (int c = lo; c <= hi; ++c) out.push_back(c);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string formatCpuList(const std::vector<int>& cpus) {
  std::vector<int> s = cpus;
  std::sort(s.begin(), s.end());
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t j = i;
    while (j + 1 < s.size() && s[j + 1] == s[j] + 1) ++j;
    if (!out.empty()) out += ",";
    out += j == i ? absl::StrCat(s[i]) : absl::StrCat(s[i], "-", s[j]);
    i = j + 1;
  }
  return out;
}

absl::StatusOr<std::vector<int>> parseCpuMask(absl::string_view text) {
  std::vector<absl::string_view> words = absl::StrSplit(absl::StripAsciiWhitespace(text), ',');
  if (words.size() > kMaxCpus / 32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a CPU mask of ", words.size(), " words (expected CPU numbers below ", kMaxCpus, ")"));
  }
  std::vector<int> out;
  int base = 0;
  for (auto it = words.rbegin(); it != words.rend(); ++it, base += 32) {
    absl::string_view w = *it;
    if (absl::StartsWith(w, "0x")) w.remove_prefix(2);
    uint32_t v = 0;
    if (!isHex(w) || w.size() > 8 || !absl::SimpleHexAtoi(w, &v)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", text, "' is not a CPU mask (expected 32-bit hex words, e.g. 00000000,0000ffff)"));
    }
    for (int b = 0; b < 32; ++b) {
      if ((v >> b) & 1U) out.push_back(base + b);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string formatCpuMask(const std::vector<int>& cpus) {
  int max_cpu = 0;
  for (int c : cpus) max_cpu = std::max(max_cpu, c);
  std::vector<uint32_t> words(static_cast<std::size_t>(max_cpu / 32 + 1), 0);
  for (int c : cpus) words[static_cast<std::size_t>(c / 32)] |= 1U << (c % 32);
  std::vector<std::string> parts;
  for (std::size_t i = words.size(); i-- > 0;) parts.push_back(absl::StrFormat("%08x", words[i]));
  return absl::StrJoin(parts, ",");
}

absl::Status oneLineError(const absl::Status& status) {
  if (status.ok()) return status;
  const absl::string_view m = status.message();
  if (std::none_of(m.begin(), m.end(), [](char c) { return absl::ascii_iscntrl(c); })) {
    return status;
  }
  return absl::Status(status.code(), absl::CEscape(m));
}

const PciDevice* findPci(const NodeTopology& topo, const std::string& bus_id) {
  for (const auto& d : topo.pci_devices) {
    if (d.bus_id == bus_id) return &d;
  }
  return nullptr;
}

bool naturalLess(const std::string& a, const std::string& b) {
  std::size_t i = 0;
  std::size_t j = 0;
  while (i < a.size() && j < b.size()) {
    if (absl::ascii_isdigit(a[i]) && absl::ascii_isdigit(b[j])) {
      std::size_t ie = i;
      std::size_t je = j;
      while (ie < a.size() && absl::ascii_isdigit(a[ie])) ++ie;
      while (je < b.size() && absl::ascii_isdigit(b[je])) ++je;
      const std::string na = a.substr(i, ie - i);
      const std::string nb = b.substr(j, je - j);
      if (na.size() != nb.size()) return na.size() < nb.size();
      if (na != nb) return na < nb;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

// ---- JSON ----------------------------------------------------------------------------------

json toJson(const NodeTopology& t) {
  json j;
  j["version"] = t.version;
  j["hostname"] = t.hostname;
  j["source"] = t.source;
  j["gpu_source"] = t.gpu_source;
  j["cpus"] = formatCpuList(t.cpus);
  j["numa_nodes"] = json::array();
  for (const auto& n : t.numa_nodes) {
    j["numa_nodes"].push_back(
        {{"id", n.id}, {"cpus", formatCpuList(n.cpus)}, {"memory_bytes", n.memory_bytes}});
  }
  j["gpus"] = json::array();
  for (const auto& g : t.gpus) {
    json links = json::array();
    for (const auto& l : g.nvlinks) {
      links.push_back(
          {{"link", l.link}, {"remote_bus_id", l.remote_bus_id}, {"remote_type", l.remote_type}});
    }
    j["gpus"].push_back({{"index", g.index},
                         {"bus_id", g.bus_id},
                         {"uuid", g.uuid},
                         {"name", g.name},
                         {"compute_capability", g.compute_capability},
                         {"memory_bytes", g.memory_bytes},
                         {"numa_node", g.numa_node},
                         {"cpus", formatCpuList(g.cpus)},
                         {"pci_path", g.pci_path},
                         {"nvlinks", links},
                         {"fabric_clique", g.fabric_clique}});
  }
  j["nics"] = json::array();
  for (const auto& n : t.nics) {
    json ports = json::array();
    for (const auto& p : n.ports) {
      ports.push_back({{"port", p.port},
                       {"state", p.state},
                       {"link_layer", p.link_layer},
                       {"rate_gbps", p.rate_gbps}});
    }
    j["nics"].push_back({{"name", n.name},
                         {"rdma", n.rdma},
                         {"netdevs", n.netdevs},
                         {"bus_id", n.bus_id},
                         {"numa_node", n.numa_node},
                         {"pci_path", n.pci_path},
                         {"ports", ports},
                         {"speed_gbps", n.speed_gbps},
                         {"guid", n.guid}});
  }
  j["pci_devices"] = json::array();
  for (const auto& d : t.pci_devices) {
    j["pci_devices"].push_back({{"bus_id", d.bus_id},
                                {"class", d.pci_class},
                                {"vendor", d.vendor},
                                {"device", d.device},
                                {"subsystem_vendor", d.subsystem_vendor},
                                {"subsystem_device", d.subsystem_device},
                                {"link_speed", d.link_speed},
                                {"link_width", d.link_width}});
  }
  j["cpu"] = {{"arch", t.cpu_arch},
              {"vendor", t.cpu_vendor},
              {"family", t.cpu_family},
              {"model", t.cpu_model}};
  j["network_path"] = t.network_path;
  j["nvlink_domain"] = t.nvlink_domain;
  j["notes"] = t.notes;
  return j;
}

std::string toJsonText(const NodeTopology& t) { return toJson(t).dump(2) + "\n"; }

namespace {

// Walks a parsed snapshot, remembering the first error with the element's path.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  const json* field(const json& obj, const std::string& path, const char* key, bool required) {
    if (!obj.is_object()) {
      fail(path, "expected an object");
      return nullptr;
    }
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
      if (required) fail(join(path, key), "is missing");
      return nullptr;
    }
    return &*it;
  }
  void str(const json& obj, const std::string& path, const char* key, std::string* out,
           bool required = false) {
    const json* v = field(obj, path, key, required);
    if (v == nullptr) return;
    if (!v->is_string()) return fail(join(path, key), "expected a string");
    *out = v->get<std::string>();
  }
  template <typename T>
  void num(const json& obj, const std::string& path, const char* key, T* out,
           bool required = false) {
    const json* v = field(obj, path, key, required);
    if (v == nullptr) return;
    if (!v->is_number()) return fail(join(path, key), "expected a number");
    *out = v->get<T>();
  }
  void boolean(const json& obj, const std::string& path, const char* key, bool* out) {
    const json* v = field(obj, path, key, false);
    if (v == nullptr) return;
    if (!v->is_boolean()) return fail(join(path, key), "expected true or false");
    *out = v->get<bool>();
  }
  void cpus(const json& obj, const std::string& path, const char* key, std::vector<int>* out) {
    std::string text;
    str(obj, path, key, &text);
    auto parsed = parseCpuList(text);
    if (!parsed.ok()) return fail(join(path, key), std::string(parsed.status().message()));
    *out = *std::move(parsed);
  }
  void busId(const json& obj, const std::string& path, const char* key, std::string* out,
             bool required) {
    std::string text;
    str(obj, path, key, &text, required);
    if (text.empty()) return;
    auto id = normalizeBusId(text);
    if (!id.ok()) return fail(join(path, key), std::string(id.status().message()));
    *out = *std::move(id);
  }
  void strings(const json& obj, const std::string& path, const char* key,
               std::vector<std::string>* out) {
    const json* v = field(obj, path, key, false);
    if (v == nullptr) return;
    if (!v->is_array()) return fail(join(path, key), "expected an array of strings");
    for (std::size_t i = 0; i < v->size(); ++i) {
      if (!(*v)[i].is_string()) {
        return fail(absl::StrCat(join(path, key), "[", i, "]"), "expected a string");
      }
      out->push_back((*v)[i].get<std::string>());
    }
  }
  const json* array(const json& obj, const std::string& path, const char* key) {
    const json* v = field(obj, path, key, false);
    if (v != nullptr && !v->is_array()) {
      fail(join(path, key), "expected an array");
      return nullptr;
    }
    return v;
  }

  void fail(const std::string& where, const std::string& what) {
    if (error_.empty()) error_ = absl::StrCat(source_, ": ", where, ": ", what);
  }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  static std::string join(const std::string& path, const char* key) {
    return path.empty() ? key : absl::StrCat(path, ".", key);
  }

 private:
  std::string source_;
  std::string error_;
};

}  // namespace

namespace {
absl::StatusOr<NodeTopology> parseJsonImpl(absl::string_view text, const std::string& source);
}  // namespace

absl::StatusOr<NodeTopology> parseJson(absl::string_view text, const std::string& source) {
  auto t = parseJsonImpl(text, source);
  if (!t.ok()) return oneLineError(t.status());
  return t;
}

namespace {
absl::StatusOr<NodeTopology> parseJsonImpl(absl::string_view text, const std::string& source) {
  json j;
  try {
    j = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    // Byte offset -> line and column.
    const std::size_t at = std::min<std::size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
    int line = 1;
    std::size_t line_start = 0;
    for (std::size_t i = 0; i < at; ++i) {
      if (text[i] == '\n') {
        ++line;
        line_start = i + 1;
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(source, ":", line, ":", at - line_start + 1,
                                                   ": not valid JSON (expected a gangway topology "
                                                   "snapshot)"));
  }
  Reader r(source);
  NodeTopology t;
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": expected a JSON object (a gangway topology snapshot)"));
  }
  r.num(j, "", "version", &t.version, true);
  if (r.ok() && (t.version < 1 || t.version > kSnapshotVersion)) {
    r.fail("version", absl::StrCat(t.version, " is not a snapshot version this gangway reads (1..",
                                   kSnapshotVersion, ")"));
  }
  r.str(j, "", "hostname", &t.hostname);
  r.str(j, "", "source", &t.source);
  r.str(j, "", "gpu_source", &t.gpu_source);
  r.cpus(j, "", "cpus", &t.cpus);
  r.str(j, "", "network_path", &t.network_path);
  r.str(j, "", "nvlink_domain", &t.nvlink_domain);
  r.strings(j, "", "notes", &t.notes);
  if (const json* nodes = r.array(j, "", "numa_nodes")) {
    for (std::size_t i = 0; i < nodes->size() && r.ok(); ++i) {
      const std::string p = absl::StrCat("numa_nodes[", i, "]");
      NumaNode n;
      r.num((*nodes)[i], p, "id", &n.id, true);
      r.cpus((*nodes)[i], p, "cpus", &n.cpus);
      r.num((*nodes)[i], p, "memory_bytes", &n.memory_bytes);
      t.numa_nodes.push_back(std::move(n));
    }
  }
  if (const json* gpus = r.array(j, "", "gpus")) {
    for (std::size_t i = 0; i < gpus->size() && r.ok(); ++i) {
      const json& e = (*gpus)[i];
      const std::string p = absl::StrCat("gpus[", i, "]");
      Gpu g;
      g.index = static_cast<int>(i);
      r.num(e, p, "index", &g.index);
      r.busId(e, p, "bus_id", &g.bus_id, true);
      r.str(e, p, "uuid", &g.uuid);
      r.str(e, p, "name", &g.name);
      r.str(e, p, "compute_capability", &g.compute_capability);
      r.num(e, p, "memory_bytes", &g.memory_bytes);
      r.num(e, p, "numa_node", &g.numa_node);
      r.cpus(e, p, "cpus", &g.cpus);
      r.strings(e, p, "pci_path", &g.pci_path);
      r.str(e, p, "fabric_clique", &g.fabric_clique);
      if (const json* links = r.array(e, p, "nvlinks")) {
        for (std::size_t k = 0; k < links->size() && r.ok(); ++k) {
          const std::string lp = absl::StrCat(p, ".nvlinks[", k, "]");
          NvLink l;
          l.link = static_cast<int>(k);
          r.num((*links)[k], lp, "link", &l.link);
          r.busId((*links)[k], lp, "remote_bus_id", &l.remote_bus_id, true);
          r.str((*links)[k], lp, "remote_type", &l.remote_type, true);
          if (r.ok() && l.remote_type != "gpu" && l.remote_type != "nvswitch" &&
              l.remote_type != "cpu" && l.remote_type != "unknown") {
            r.fail(lp + ".remote_type",
                   absl::StrCat("'", l.remote_type, "' is not gpu, nvswitch, cpu or unknown"));
          }
          g.nvlinks.push_back(std::move(l));
        }
      }
      t.gpus.push_back(std::move(g));
    }
  }
  if (const json* nics = r.array(j, "", "nics")) {
    for (std::size_t i = 0; i < nics->size() && r.ok(); ++i) {
      const json& e = (*nics)[i];
      const std::string p = absl::StrCat("nics[", i, "]");
      Nic n;
      r.str(e, p, "name", &n.name, true);
      r.boolean(e, p, "rdma", &n.rdma);
      r.strings(e, p, "netdevs", &n.netdevs);
      r.busId(e, p, "bus_id", &n.bus_id, false);
      r.num(e, p, "numa_node", &n.numa_node);
      r.strings(e, p, "pci_path", &n.pci_path);
      r.num(e, p, "speed_gbps", &n.speed_gbps);
      r.str(e, p, "guid", &n.guid);
      if (const json* ports = r.array(e, p, "ports")) {
        for (std::size_t k = 0; k < ports->size() && r.ok(); ++k) {
          const std::string pp = absl::StrCat(p, ".ports[", k, "]");
          NicPort port;
          r.num((*ports)[k], pp, "port", &port.port, true);
          r.str((*ports)[k], pp, "state", &port.state);
          r.str((*ports)[k], pp, "link_layer", &port.link_layer);
          r.num((*ports)[k], pp, "rate_gbps", &port.rate_gbps);
          n.ports.push_back(std::move(port));
        }
      }
      t.nics.push_back(std::move(n));
    }
  }
  if (const json* devices = r.array(j, "", "pci_devices")) {
    for (std::size_t i = 0; i < devices->size() && r.ok(); ++i) {
      const json& e = (*devices)[i];
      const std::string p = absl::StrCat("pci_devices[", i, "]");
      PciDevice d;
      r.busId(e, p, "bus_id", &d.bus_id, true);
      r.str(e, p, "class", &d.pci_class);
      r.str(e, p, "vendor", &d.vendor);
      r.str(e, p, "device", &d.device);
      r.str(e, p, "subsystem_vendor", &d.subsystem_vendor);
      r.str(e, p, "subsystem_device", &d.subsystem_device);
      r.str(e, p, "link_speed", &d.link_speed);
      r.num(e, p, "link_width", &d.link_width);
      t.pci_devices.push_back(std::move(d));
    }
  }
  if (const json* cpu = r.field(j, "", "cpu", false)) {
    r.str(*cpu, "cpu", "arch", &t.cpu_arch);
    r.str(*cpu, "cpu", "vendor", &t.cpu_vendor);
    r.num(*cpu, "cpu", "family", &t.cpu_family);
    r.num(*cpu, "cpu", "model", &t.cpu_model);
  }
  if (!r.ok()) return absl::InvalidArgumentError(r.error());
  // GPU indexes must be unique: the mapping names GPUs by them.
  std::map<int, std::size_t> seen;
  for (std::size_t i = 0; i < t.gpus.size(); ++i) {
    if (!seen.emplace(t.gpus[i].index, i).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": gpus[", i, "].index: ", t.gpus[i].index, " is used twice"));
    }
  }
  std::sort(t.gpus.begin(), t.gpus.end(),
            [](const Gpu& a, const Gpu& b) { return a.index < b.index; });
  return t;
}
}  // namespace

}  // namespace gangway::topology
