// Local mapping: which GPU, RDMA NIC and CPUs each local rank of a node gets.
//   GPU   a chain through the GPUs where each next GPU is the best-connected to the last (most
//         NVLinks, then the closest PCI relation, then the lowest index): consecutive local ranks
//         are NVLink neighbours, and PCIe-only machines are grouped by PCIe switch, then NUMA node.
//   NIC   the RDMA NIC closest to the rank's GPU (same PCIe switch, else same NUMA node), the least
//         loaded among equally close ones, so that fewer NICs than GPUs are shared evenly.
//   CPUs  the GPU's NUMA node: all of its CPUs (--numa-binding node) or an even, disjoint share
//         among the ranks placed there (exclusive), always within the agent's own CPU set.
#pragma once

#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <absl/strings/string_view.h>

#include "gangway/topology/model.h"

namespace gangway::topology {

enum class NumaBinding {
  kNone,       // no CPU affinity, no memory policy
  kNode,       // affinity: the GPU's NUMA node; memory: preferred on that node
  kExclusive,  // affinity: the rank's share of that node's CPUs; memory: bound to the node
};
absl::StatusOr<NumaBinding> parseNumaBinding(absl::string_view text);
const char* numaBindingName(NumaBinding b);

struct MappingOptions {
  int nproc = 1;
  NumaBinding numa = NumaBinding::kNode;
  std::vector<int> allowed_cpus;  // the agent's CPU set; empty: no restriction
  // The agent's CUDA_VISIBLE_DEVICES, if set: only these GPUs (indexes or UUIDs) are mapped.
  std::string visible_devices;
  bool visible_devices_set = false;
};

struct RankBinding {
  int local_rank = 0;
  int gpu = -1;  // GPU index (NVML, PCI bus order); -1: none
  std::string gpu_uuid;
  std::string nic;  // RDMA device name; empty: none
  int nic_port = 0;
  std::string nic_link;  // the NIC's relation to the GPU ("PIX", "NODE", ...)
  int numa_node = -1;
  std::vector<int> cpus;       // CPU affinity; empty: unchanged
  bool bind_memory = false;    // MPOL_BIND to numa_node
  bool prefer_memory = false;  // MPOL_PREFERRED on numa_node
};

struct LocalMapping {
  std::vector<RankBinding> ranks;  // by local rank; empty when there is nothing to bind
  // CUDA_VISIBLE_DEVICES for every worker: the GPUs in local-rank order, so that cuda:LOCAL_RANK
  // is the rank's GPU. Empty when ranks share GPUs: then each worker sees only its own GPU.
  std::string visible_devices;
  std::vector<std::string> notes;
};

LocalMapping mapLocalRanks(const NodeTopology& topo, const MappingOptions& options);

// The environment a worker gets from its binding, on top of the contract's variables:
// CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER=PCI_BUS_ID, NCCL_IB_HCA (exact form "=mlx5_0:1"),
// GANGWAY_GPU, GANGWAY_GPU_UUID, GANGWAY_NIC, GANGWAY_CPUS, GANGWAY_NUMA_NODE. The agent keeps
// a user's own NCCL_IB_HCA.
std::vector<std::pair<std::string, std::string>> bindingEnv(const LocalMapping& mapping,
                                                            int local_rank);

}  // namespace gangway::topology
