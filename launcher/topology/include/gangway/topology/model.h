// The snapshot of one node's topology: GPUs, NICs, CPUs and NUMA nodes, and the PCI paths that
// connect them. Discovery (discover.h) fills it from a machine, the JSON form and NCCL's topology
// XML (nccl_xml.h) save and replay it, and the mapping (mapping.h) reads it. A snapshot carries
// no pointers: devices are named by PCI bus id ("0000:18:00.0", lower case, 4-digit domain).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/strings/string_view.h>
#include <nlohmann/json_fwd.hpp>

namespace gangway::topology {

// The version of the JSON snapshot this build writes. It reads versions 1..kSnapshotVersion.
inline constexpr int kSnapshotVersion = 1;

struct NvLink {
  int link = 0;               // the link's index on its GPU
  std::string remote_bus_id;  // the device at the other end
  std::string remote_type;    // "gpu", "nvswitch", "cpu" or "unknown"
};

struct Gpu {
  int index = 0;  // NVML's index (PCI bus order, what CUDA_DEVICE_ORDER=PCI_BUS_ID numbers)
  std::string bus_id;
  std::string uuid;  // "GPU-..."
  std::string name;
  std::string compute_capability;  // "9.0"
  int64_t memory_bytes = 0;
  int numa_node = -1;
  std::vector<int> cpus;  // the device's local CPUs (sysfs local_cpulist)
  // The PCI path from the host bridge down: "pci0000:17", then each bridge's bus id, then the
  // device's own bus id last. Empty when sysfs does not show it.
  std::vector<std::string> pci_path;
  std::vector<NvLink> nvlinks;  // active links only
  // "<cluster uuid>/<clique id>" when the GPU has joined a multi-node NVLink fabric.
  std::string fabric_clique;
};

struct NicPort {
  int port = 1;
  std::string state;       // "ACTIVE", "DOWN", ...
  std::string link_layer;  // "InfiniBand" or "Ethernet"
  double rate_gbps = 0;
};

struct Nic {
  std::string name;  // "mlx5_0" for an RDMA device, "eth0" for a network interface
  bool rdma = false;
  std::vector<std::string> netdevs;  // network interfaces of an RDMA device
  std::string bus_id;
  int numa_node = -1;
  std::vector<std::string> pci_path;
  std::vector<NicPort> ports;  // RDMA ports
  double speed_gbps = 0;       // the link speed (RDMA: the fastest port)
  std::string guid;
};

// A PCI device or bridge on the path of a GPU or NIC, with what NCCL's XML records of it.
struct PciDevice {
  std::string bus_id;
  std::string pci_class;  // "0x060400"
  std::string vendor;     // "0x10de"
  std::string device;
  std::string subsystem_vendor;
  std::string subsystem_device;
  std::string link_speed;  // "32.0 GT/s PCIe"; empty: unknown
  int link_width = 0;      // lanes; 0: unknown
};

struct NumaNode {
  int id = 0;
  std::vector<int> cpus;
  int64_t memory_bytes = 0;
};

struct NodeTopology {
  int version = kSnapshotVersion;
  std::string hostname;
  std::string source;      // where it came from: "sysfs /", "file PATH", "nccl-xml PATH"
  std::string gpu_source;  // "nvml <driver version>", "file", or why there are none
  std::vector<int> cpus;   // online CPUs
  std::vector<NumaNode> numa_nodes;
  std::vector<Gpu> gpus;               // by index
  std::vector<Nic> nics;               // RDMA devices first, then network interfaces
  std::vector<PciDevice> pci_devices;  // every device and bridge on those devices' PCI paths
  std::string cpu_arch;                // "x86_64"
  std::string cpu_vendor;              // "GenuineIntel", "AuthenticAMD"
  int cpu_family = -1;
  int cpu_model = -1;
  std::string network_path;   // the node's switch path, top first: "spine2/leaf7"
  std::string nvlink_domain;  // the fabric clique every GPU of the node shares, if any
  // What discovery could not see, and what it did instead: shown by `gangway topo`.
  std::vector<std::string> notes;
};

// How two devices are connected, in nvidia-smi's terms, best first.
enum class Link {
  kSelf,    // X
  kNvLink,  // NV#: NVLink, directly or through NVSwitches
  kPix,     // at most one PCIe switch between them
  kPxb,     // several PCIe switches, no host bridge
  kPhb,     // through a PCIe host bridge (the CPU)
  kNode,    // across host bridges within one NUMA node
  kSys,     // across NUMA nodes (the SMP interconnect)
};

// "X", "NV18", "PIX", "PXB", "PHB", "NODE" or "SYS".
std::string linkLabel(Link link, int nvlinks);

// The PCI relation between two devices from their paths and NUMA nodes. Unknown paths give NODE
// on one NUMA node and SYS otherwise.
Link pciLink(const std::vector<std::string>& a, int numa_a, const std::vector<std::string>& b,
             int numa_b);
// The NVLinks between two GPUs: direct links plus, when both reach NVSwitches, the smaller of
// their NVSwitch link counts.
int nvlinkCount(const Gpu& a, const Gpu& b);
// GPU to GPU: NV# when they share NVLinks, else the PCI relation.
Link gpuLink(const Gpu& a, const Gpu& b, int* nvlinks);

// Lower-cases a PCI bus id and shortens NVML's 8-digit domain: "00000000:18:00.0" becomes
// "0000:18:00.0". InvalidArgument unless it has the form [domain:]bus:device.function.
absl::StatusOr<std::string> normalizeBusId(absl::string_view id);

// CPU numbers this code accepts (Linux's own limit, CONFIG_NR_CPUS, is at most 8192).
inline constexpr int kMaxCpus = 65536;

// "0-3,8,10-11" <-> {0,1,2,3,8,10,11}.
absl::StatusOr<std::vector<int>> parseCpuList(absl::string_view text);
std::string formatCpuList(const std::vector<int>& cpus);
// Linux's cpumap form ("00000000,0000ffff": 32-bit hex words, most significant first), which
// NCCL's XML uses for a CPU's affinity.
absl::StatusOr<std::vector<int>> parseCpuMask(absl::string_view text);
std::string formatCpuMask(const std::vector<int>& cpus);

// An error message kept to one line: control characters (from a damaged input quoted in it) are
// escaped as \n, \t, \x01.
absl::Status oneLineError(const absl::Status& status);

// The recorded attributes of a PCI device; nullptr when unknown.
const PciDevice* findPci(const NodeTopology& topo, const std::string& bus_id);

// Orders names the way people read them: mlx5_2 before mlx5_10.
bool naturalLess(const std::string& a, const std::string& b);

nlohmann::json toJson(const NodeTopology& topo);
std::string toJsonText(const NodeTopology& topo);  // indented
// Reads a snapshot. Errors name `source` and where: the line and column of a syntax error, or
// the element ("gpus[2].bus_id") and what was expected.
absl::StatusOr<NodeTopology> parseJson(absl::string_view text, const std::string& source);

}  // namespace gangway::topology
