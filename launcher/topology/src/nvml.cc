#include "nvml.h"

#include <cstring>

#include <dlfcn.h>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>

namespace gangway::topology {
namespace {

// The few NVML types gangway reads, declared here so that no NVML header is needed to build.
// Layouts follow nvml.h (stable across drivers for these versioned entry points).
using NvmlReturn = int;
using NvmlDevice = void*;
constexpr NvmlReturn kSuccess = 0;
constexpr int kMaxLinks = 32;  // NVML_NVLINK_MAX_LINKS is 18 today; the loop skips absent links

struct PciInfo {  // nvmlPciInfo_t (v3)
  char bus_id_legacy[16];
  unsigned domain;
  unsigned bus;
  unsigned device;
  unsigned pci_device_id;
  unsigned pci_subsystem_id;
  char bus_id[32];
};
struct Memory {  // nvmlMemory_t
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
struct FabricInfo {  // nvmlGpuFabricInfo_t
  unsigned char cluster_uuid[16];
  NvmlReturn status;
  unsigned clique_id;
  unsigned state;  // nvmlGpuFabricState_t: 3 = completed (one byte; the rest stays zero)
  unsigned char spare[16];
};
constexpr unsigned kFabricCompleted = 3;
constexpr unsigned kRemoteGpu = 0;
constexpr unsigned kRemoteIbmNpu = 1;
constexpr unsigned kRemoteSwitch = 2;

struct Api {
  NvmlReturn (*init)() = nullptr;
  NvmlReturn (*shutdown)() = nullptr;
  const char* (*error_string)(NvmlReturn) = nullptr;
  NvmlReturn (*driver_version)(char*, unsigned) = nullptr;
  NvmlReturn (*count)(unsigned*) = nullptr;
  NvmlReturn (*handle)(unsigned, NvmlDevice*) = nullptr;
  NvmlReturn (*pci)(NvmlDevice, PciInfo*) = nullptr;
  NvmlReturn (*uuid)(NvmlDevice, char*, unsigned) = nullptr;
  NvmlReturn (*name)(NvmlDevice, char*, unsigned) = nullptr;
  NvmlReturn (*capability)(NvmlDevice, int*, int*) = nullptr;
  NvmlReturn (*memory)(NvmlDevice, Memory*) = nullptr;
  NvmlReturn (*link_state)(NvmlDevice, unsigned, unsigned*) = nullptr;
  NvmlReturn (*link_remote_pci)(NvmlDevice, unsigned, PciInfo*) = nullptr;
  NvmlReturn (*link_remote_type)(NvmlDevice, unsigned, unsigned*) = nullptr;
  NvmlReturn (*fabric)(NvmlDevice, FabricInfo*) = nullptr;
};

template <typename F>
void bind(void* lib, const char* symbol, F* out) {
  *out = reinterpret_cast<F>(::dlsym(lib, symbol));
}

std::string busIdOf(const PciInfo& p) {
  auto id = normalizeBusId(p.bus_id);
  if (id.ok()) return *id;
  return absl::StrFormat("%04x:%02x:%02x.0", p.domain, p.bus, p.device);
}

}  // namespace

NvmlResult queryNvml(const std::string& library) {
  NvmlResult result;
  void* lib = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* err = ::dlerror();
    result.error = absl::StrCat("NVML library ", library, " not loadable",
                                err != nullptr ? absl::StrCat(" (", err, ")") : "");
    return result;
  }
  Api api;
  bind(lib, "nvmlInit_v2", &api.init);
  bind(lib, "nvmlShutdown", &api.shutdown);
  bind(lib, "nvmlErrorString", &api.error_string);
  bind(lib, "nvmlSystemGetDriverVersion", &api.driver_version);
  bind(lib, "nvmlDeviceGetCount_v2", &api.count);
  bind(lib, "nvmlDeviceGetHandleByIndex_v2", &api.handle);
  bind(lib, "nvmlDeviceGetPciInfo_v3", &api.pci);
  bind(lib, "nvmlDeviceGetUUID", &api.uuid);
  bind(lib, "nvmlDeviceGetName", &api.name);
  bind(lib, "nvmlDeviceGetCudaComputeCapability", &api.capability);
  bind(lib, "nvmlDeviceGetMemoryInfo", &api.memory);
  bind(lib, "nvmlDeviceGetNvLinkState", &api.link_state);
  bind(lib, "nvmlDeviceGetNvLinkRemotePciInfo_v2", &api.link_remote_pci);
  bind(lib, "nvmlDeviceGetNvLinkRemoteDeviceType", &api.link_remote_type);
  bind(lib, "nvmlDeviceGetGpuFabricInfo", &api.fabric);
  auto text = [&api](NvmlReturn r) {
    return api.error_string != nullptr ? std::string(api.error_string(r))
                                       : absl::StrCat("error ", r);
  };
  if (api.init == nullptr || api.shutdown == nullptr || api.count == nullptr ||
      api.handle == nullptr || api.pci == nullptr) {
    result.error = absl::StrCat(library, " lacks NVML's entry points (nvmlInit_v2, ...)");
    ::dlclose(lib);
    return result;
  }
  if (NvmlReturn r = api.init(); r != kSuccess) {
    result.error = absl::StrCat("nvmlInit failed: ", text(r));
    ::dlclose(lib);
    return result;
  }
  result.loaded = true;
  if (api.driver_version != nullptr) {
    char version[96] = {};
    if (api.driver_version(version, sizeof(version)) == kSuccess) result.driver_version = version;
  }
  unsigned count = 0;
  if (NvmlReturn r = api.count(&count); r != kSuccess) {
    result.error = absl::StrCat("nvmlDeviceGetCount failed: ", text(r));
    count = 0;
  }
  for (unsigned i = 0; i < count; ++i) {
    NvmlDevice dev = nullptr;
    PciInfo pci{};
    if (NvmlReturn r = api.handle(i, &dev); r != kSuccess) {
      result.error = absl::StrCat("GPU ", i, ": nvmlDeviceGetHandleByIndex failed: ", text(r));
      continue;
    }
    if (NvmlReturn r = api.pci(dev, &pci); r != kSuccess) {
      result.error = absl::StrCat("GPU ", i, ": nvmlDeviceGetPciInfo failed: ", text(r));
      continue;
    }
    Gpu g;
    g.index = static_cast<int>(i);
    g.bus_id = busIdOf(pci);
    char buf[128] = {};
    if (api.uuid != nullptr && api.uuid(dev, buf, sizeof(buf)) == kSuccess) g.uuid = buf;
    std::memset(buf, 0, sizeof(buf));
    if (api.name != nullptr && api.name(dev, buf, sizeof(buf)) == kSuccess) g.name = buf;
    int major = 0;
    int minor = 0;
    if (api.capability != nullptr && api.capability(dev, &major, &minor) == kSuccess) {
      g.compute_capability = absl::StrCat(major, ".", minor);
    }
    Memory mem{};
    if (api.memory != nullptr && api.memory(dev, &mem) == kSuccess) {
      g.memory_bytes = static_cast<int64_t>(mem.total);
    }
    if (api.link_state != nullptr && api.link_remote_pci != nullptr) {
      for (unsigned link = 0; link < kMaxLinks; ++link) {
        unsigned active = 0;
        if (api.link_state(dev, link, &active) != kSuccess || active == 0) continue;
        PciInfo remote{};
        if (api.link_remote_pci(dev, link, &remote) != kSuccess) continue;
        NvLink l;
        l.link = static_cast<int>(link);
        l.remote_bus_id = busIdOf(remote);
        unsigned type = 0xff;
        if (api.link_remote_type == nullptr || api.link_remote_type(dev, link, &type) != kSuccess) {
          type = 0xff;
        }
        l.remote_type = type == kRemoteGpu      ? "gpu"
                        : type == kRemoteSwitch ? "nvswitch"
                        : type == kRemoteIbmNpu ? "cpu"
                                                : "unknown";
        g.nvlinks.push_back(std::move(l));
      }
    }
    if (api.fabric != nullptr) {
      FabricInfo fabric{};
      if (api.fabric(dev, &fabric) == kSuccess && (fabric.state & 0xffU) == kFabricCompleted &&
          fabric.status == kSuccess) {
        bool any = false;
        std::string uuid;
        for (int b = 0; b < 16; ++b) {
          any = any || fabric.cluster_uuid[b] != 0;
          absl::StrAppend(&uuid, absl::StrFormat("%02x", fabric.cluster_uuid[b]));
          if (b == 3 || b == 5 || b == 7 || b == 9) uuid += "-";
        }
        if (any) g.fabric_clique = absl::StrCat(uuid, "/", fabric.clique_id);
      }
    }
    result.gpus.push_back(std::move(g));
  }
  api.shutdown();
  ::dlclose(lib);
  return result;
}

}  // namespace gangway::topology
