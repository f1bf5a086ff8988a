// NVML, loaded with dlopen: the GPUs the driver reports, with their NVLinks and fabric clique.
#pragma once

#include <string>
#include <vector>

#include "gangway/topology/model.h"

namespace gangway::topology {

struct NvmlResult {
  bool loaded = false;
  std::string driver_version;
  std::string error;      // why NVML could not be used (loaded == false), or a partial failure
  std::vector<Gpu> gpus;  // index, bus id, uuid, name, capability, memory, links, clique
};

// Loads `library` (a name for the dynamic loader or a path) and queries every GPU. Never fails:
// an absent library or driver is a result with loaded == false and the reason.
NvmlResult queryNvml(const std::string& library);

}  // namespace gangway::topology
