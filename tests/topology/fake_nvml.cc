// A stand-in for libnvidia-ml.so for machines without a GPU: the NVML entry points gangway's
// discovery calls, answering from the JSON file named by $GANGWAY_FAKE_NVML (a fixture's
// nvml.json). Loaded with dlopen exactly like the real library, so the loader path is exercised.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

struct Link {
  std::string remote;
  unsigned type = 0;
};
struct Gpu {
  std::string bus_id;
  std::string uuid;
  std::string name;
  int major = 0;
  int minor = 0;
  unsigned long long memory = 0;
  std::vector<Link> links;
  bool clique = false;
  unsigned char cluster[16] = {};
  unsigned clique_id = 0;
};

struct State {
  bool loaded = false;
  bool fail_init = false;
  std::string driver;
  std::vector<Gpu> gpus;
};

State& state() {
  static State s;
  return s;
}

int load() {
  State& s = state();
  s = State{};
  const char* path = std::getenv("GANGWAY_FAKE_NVML");
  if (path == nullptr) return 9;  // NVML_ERROR_DRIVER_NOT_LOADED
  std::ifstream in(path);
  if (!in) return 9;
  std::stringstream ss;
  ss << in.rdbuf();
  const auto j = nlohmann::json::parse(ss.str());
  s.driver = j.value("driver", "0");
  for (const auto& g : j.at("gpus")) {
    Gpu gpu;
    gpu.bus_id = g.at("bus_id");
    gpu.uuid = g.value("uuid", "");
    gpu.name = g.value("name", "");
    std::sscanf(g.value("cc", "0.0").c_str(), "%d.%d", &gpu.major, &gpu.minor);
    gpu.memory = g.value("memory", 0ULL);
    for (const auto& l : g.at("nvlinks")) {
      const std::string type = l.at("type");
      gpu.links.push_back(Link{l.at("remote"), type == "gpu"        ? 0U
                                               : type == "nvswitch" ? 2U
                                                                    : 255U});
    }
    if (g.contains("clique") && !g["clique"].is_null()) {
      gpu.clique = true;
      const std::string hex = g["clique"].at("cluster");
      for (int b = 0; b < 16; ++b) {
        gpu.cluster[b] = static_cast<unsigned char>(std::stoul(hex.substr(b * 2, 2), nullptr, 16));
      }
      gpu.clique_id = g["clique"].at("id");
    }
    s.gpus.push_back(std::move(gpu));
  }
  s.loaded = true;
  return 0;
}

Gpu* device(void* handle) {
  const auto i = reinterpret_cast<std::size_t>(handle);
  if (i == 0 || i > state().gpus.size()) return nullptr;
  return &state().gpus[i - 1];
}

struct PciInfo {
  char bus_id_legacy[16];
  unsigned domain;
  unsigned bus;
  unsigned device;
  unsigned pci_device_id;
  unsigned pci_subsystem_id;
  char bus_id[32];
};

void fillPci(const std::string& id, PciInfo* p) {
  std::memset(p, 0, sizeof(*p));
  // NVML writes an 8-digit domain; gangway shortens it.
  const std::string full = "0000" + id;
  std::snprintf(p->bus_id, sizeof(p->bus_id), "%s", full.c_str());
  std::snprintf(p->bus_id_legacy, sizeof(p->bus_id_legacy), "%s", id.c_str());
  unsigned dev = 0;
  unsigned fn = 0;
  std::sscanf(id.c_str(), "%x:%x:%x.%x", &p->domain, &p->bus, &dev, &fn);
  p->device = dev;
}

}  // namespace

extern "C" {

int nvmlInit_v2() { return load(); }
int nvmlShutdown() { return 0; }
const char* nvmlErrorString(int r) { return r == 0 ? "Success" : "Fake NVML error"; }
int nvmlSystemGetDriverVersion(char* out, unsigned len) {
  std::snprintf(out, len, "%s", state().driver.c_str());
  return 0;
}
int nvmlDeviceGetCount_v2(unsigned* count) {
  *count = static_cast<unsigned>(state().gpus.size());
  return 0;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void** handle) {
  if (i >= state().gpus.size()) return 2;
  *handle = reinterpret_cast<void*>(static_cast<std::size_t>(i) + 1);
  return 0;
}
int nvmlDeviceGetPciInfo_v3(void* h, PciInfo* p) {
  Gpu* g = device(h);
  if (g == nullptr) return 2;
  fillPci(g->bus_id, p);
  return 0;
}
int nvmlDeviceGetUUID(void* h, char* out, unsigned len) {
  Gpu* g = device(h);
  if (g == nullptr) return 2;
  std::snprintf(out, len, "%s", g->uuid.c_str());
  return 0;
}
int nvmlDeviceGetName(void* h, char* out, unsigned len) {
  Gpu* g = device(h);
  if (g == nullptr) return 2;
  std::snprintf(out, len, "%s", g->name.c_str());
  return 0;
}
int nvmlDeviceGetCudaComputeCapability(void* h, int* major, int* minor) {
  Gpu* g = device(h);
  if (g == nullptr) return 2;
  *major = g->major;
  *minor = g->minor;
  return 0;
}
int nvmlDeviceGetMemoryInfo(void* h, unsigned long long* mem) {
  Gpu* g = device(h);
  if (g == nullptr) return 2;
  mem[0] = g->memory;
  mem[1] = g->memory;
  mem[2] = 0;
  return 0;
}
int nvmlDeviceGetNvLinkState(void* h, unsigned link, unsigned* active) {
  Gpu* g = device(h);
  if (g == nullptr || link >= 18) return 2;  // NVML_ERROR_INVALID_ARGUMENT past the last link
  *active = link < g->links.size() ? 1 : 0;
  return 0;
}
int nvmlDeviceGetNvLinkRemotePciInfo_v2(void* h, unsigned link, PciInfo* p) {
  Gpu* g = device(h);
  if (g == nullptr || link >= g->links.size()) return 2;
  fillPci(g->links[link].remote, p);
  return 0;
}
int nvmlDeviceGetNvLinkRemoteDeviceType(void* h, unsigned link, unsigned* type) {
  Gpu* g = device(h);
  if (g == nullptr || link >= g->links.size()) return 2;
  *type = g->links[link].type;
  return 0;
}
struct FabricInfo {
  unsigned char cluster_uuid[16];
  int status;
  unsigned clique_id;
  unsigned char state;
};
int nvmlDeviceGetGpuFabricInfo(void* h, FabricInfo* f) {
  Gpu* g = device(h);
  if (g == nullptr) return 2;
  std::memset(f, 0, sizeof(*f));
  if (!g->clique) return 3;  // NVML_ERROR_NOT_SUPPORTED
  std::memcpy(f->cluster_uuid, g->cluster, 16);
  f->clique_id = g->clique_id;
  f->state = 3;  // completed
  return 0;
}

}  // extern "C"
