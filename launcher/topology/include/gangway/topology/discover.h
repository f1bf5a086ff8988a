// Discovery: reads one node's topology from the machine. Every source is read under `root`, so
// tests and `gangway topo --sysfs-root` replay fixture trees:
//   GPUs            NVML, loaded with dlopen at run time (no build dependency)
//   PCI paths       <root>/sys/bus/pci/devices (and /sys/class/pci_bus where present)
//   NUMA and CPUs   <root>/sys/devices/system/{node,cpu}
//   RDMA NICs       <root>/sys/class/infiniband, and libibverbs when root is "/"
//   interfaces      <root>/sys/class/net (those backed by a device)
// Discovery never fails: what it cannot see becomes a note in the snapshot, and less information.
#pragma once

#include <string>

#include "gangway/topology/model.h"

namespace gangway::topology {

struct DiscoverOptions {
  std::string root = "/";
  // NVML's library. Empty: $GANGWAY_NVML_LIBRARY if set, else libnvidia-ml.so.1 when root is
  // "/" (a fixture root has no driver of its own: NVML is used there only when named).
  std::string nvml_library;
  // The switch path of the node ("spine2/leaf7"); empty: $GANGWAY_NETWORK_PATH.
  std::string network_path;
  std::string hostname;  // empty: gethostname()
};

NodeTopology discover(const DiscoverOptions& options);

// Reads a snapshot from a file: gangway's JSON, or NCCL's topology XML (told apart by the first
// non-blank character).
absl::StatusOr<NodeTopology> loadTopologyFile(const std::string& path);

}  // namespace gangway::topology
