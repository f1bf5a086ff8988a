#include "gangway/topology/discover.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "gangway/topology/network_path.h"

#include "fixture.h"

namespace gangway::topology {
namespace {

using testing::discoverFixture;
using testing::fixtureRoot;

std::string link(const NodeTopology& t, int a, int b) {
  int nv = 0;
  const Link l = gpuLink(t.gpus[a], t.gpus[b], &nv);
  return linkLabel(l, nv);
}
std::string nicLink(const NodeTopology& t, int gpu, const std::string& nic) {
  for (const auto& n : t.nics) {
    if (n.name == nic) {
      const Gpu& g = t.gpus[gpu];
      return linkLabel(pciLink(g.pci_path, g.numa_node, n.pci_path, n.numa_node), 0);
    }
  }
  return "no such NIC";
}

TEST(Discover, HgxH100) {
  const NodeTopology t = discoverFixture("hgx-h100");
  EXPECT_EQ(t.gpu_source, "nvml driver 580.00");
  ASSERT_EQ(t.gpus.size(), 8U);
  ASSERT_EQ(t.numa_nodes.size(), 2U);
  EXPECT_EQ(t.cpus.size(), 224U);
  EXPECT_EQ(formatCpuList(t.numa_nodes[1].cpus), "56-111,168-223");
  for (int i = 0; i < 8; ++i) {
    const Gpu& g = t.gpus[i];
    EXPECT_EQ(g.index, i);
    EXPECT_EQ(g.numa_node, i < 4 ? 0 : 1) << i;
    EXPECT_EQ(g.nvlinks.size(), 18U);
    EXPECT_EQ(g.pci_path.size(), 5U);
    EXPECT_EQ(g.compute_capability, "9.0");
    EXPECT_EQ(nicLink(t, i, "mlx5_" + std::to_string(i)), "PIX") << i;
  }
  EXPECT_EQ(t.gpus[0].bus_id, "0000:18:00.0");  // NVML's 8-digit domain, shortened
  EXPECT_EQ(formatCpuList(t.gpus[5].cpus), "56-111,168-223");
  EXPECT_EQ(link(t, 0, 7), "NV18");  // through the NVSwitches
  EXPECT_EQ(link(t, 3, 3), "X");
  EXPECT_EQ(nicLink(t, 0, "mlx5_1"), "NODE");
  EXPECT_EQ(nicLink(t, 0, "mlx5_4"), "SYS");
  // 9 RDMA devices (RDMA first), then the management port; lo is virtual and left out.
  ASSERT_EQ(t.nics.size(), 10U);
  EXPECT_EQ(t.nics[8].name, "mlx5_10");  // natural order: after mlx5_7
  EXPECT_EQ(t.nics[8].ports.at(0).link_layer, "Ethernet");
  EXPECT_EQ(t.nics[0].ports.at(0).state, "ACTIVE");
  EXPECT_EQ(t.nics[0].ports.at(0).rate_gbps, 400);
  EXPECT_EQ(t.nics[0].netdevs, std::vector<std::string>{"ibp25s0"});
  EXPECT_EQ(t.nics[9].name, "eno1");
  EXPECT_FALSE(t.nics[9].rdma);
  EXPECT_EQ(t.nics[9].speed_gbps, 1);
  EXPECT_TRUE(t.nvlink_domain.empty());
  EXPECT_TRUE(t.notes.empty()) << t.notes.front();
}

TEST(Discover, PcieServerWithoutPciBusClass) {
  const NodeTopology t = discoverFixture("pcie-8gpu");
  ASSERT_EQ(t.gpus.size(), 8U);
  for (const auto& g : t.gpus) EXPECT_TRUE(g.nvlinks.empty());
  EXPECT_EQ(link(t, 0, 1), "PIX");  // one PCIe switch
  EXPECT_EQ(link(t, 0, 2), "NODE");
  EXPECT_EQ(link(t, 0, 4), "SYS");
  EXPECT_EQ(nicLink(t, 0, "mlx5_0"), "PHB");
  EXPECT_EQ(nicLink(t, 2, "mlx5_0"), "NODE");
  EXPECT_EQ(nicLink(t, 6, "mlx5_1"), "NODE");
  ASSERT_EQ(t.notes.size(), 1U);
  EXPECT_NE(t.notes[0].find("no /sys/class/pci_bus"), std::string::npos);
}

TEST(Discover, MultiNodeNvlinkRackNode) {
  const NodeTopology t = discoverFixture("nvl72-node");
  ASSERT_EQ(t.gpus.size(), 4U);
  EXPECT_EQ(t.nvlink_domain, "5e1f0c2a-9b7d-4e3f-8a6b-1c2d3e4f5a6b/7");
  EXPECT_EQ(t.gpus[0].fabric_clique, t.nvlink_domain);
  EXPECT_EQ(t.gpus[2].compute_capability, "10.0");
  EXPECT_EQ(link(t, 0, 3), "NV18");
  EXPECT_EQ(t.gpus[0].numa_node, 0);
  EXPECT_EQ(t.gpus[3].numa_node, 1);
}

TEST(Discover, WithoutNvmlThereAreNoGpus) {
  DiscoverOptions o;
  o.root = fixtureRoot("hgx-h100");
  o.nvml_library = "/nonexistent/libnvidia-ml.so.1";
  const NodeTopology t = discover(o);
  EXPECT_TRUE(t.gpus.empty());
  EXPECT_EQ(t.gpu_source.rfind("none: NVML library /nonexistent/libnvidia-ml.so.1 not loadable", 0),
            0U)
      << t.gpu_source;
  ASSERT_FALSE(t.notes.empty());
  EXPECT_NE(t.notes.back().find("8 NVIDIA PCI device(s) seen"), std::string::npos);
  EXPECT_EQ(t.nics.size(), 10U);  // the rest is still discovered
}

TEST(Discover, FixtureRootWithoutNamedNvmlDoesNotUseTheMachines) {
  ::unsetenv("GANGWAY_NVML_LIBRARY");
  DiscoverOptions o;
  o.root = fixtureRoot("pcie-8gpu");
  const NodeTopology t = discover(o);
  EXPECT_TRUE(t.gpus.empty());
  EXPECT_NE(t.gpu_source.find("not used under a fixture root"), std::string::npos);
}

TEST(Discover, MissingFilesDegradeToLessInformation) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("gangway-topo-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::copy(fixtureRoot("hgx-h100"), dir,
           fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  fs::remove_all(dir / "sys/devices/system/node");
  fs::remove(dir / "sys/devices/system/cpu/online");
  fs::remove(dir / "sys/bus/pci/devices/0000:2a:00.0");  // GPU1's link
  fs::remove(dir / "sys/class/infiniband/mlx5_3/ports/1/rate");
  fs::remove_all(dir / "sys/class/net");
  ::setenv("GANGWAY_FAKE_NVML", (fixtureRoot("hgx-h100") + "/nvml.json").c_str(), 1);
  DiscoverOptions o;
  o.root = dir.string();
  o.nvml_library = GANGWAY_FAKE_NVML_LIB;
  const NodeTopology t = discover(o);
  fs::remove_all(dir);
  ASSERT_EQ(t.gpus.size(), 8U);
  EXPECT_TRUE(t.gpus[1].pci_path.empty());
  ASSERT_EQ(t.numa_nodes.size(), 1U);  // assumed
  int nv = 0;
  EXPECT_EQ(gpuLink(t.gpus[1], t.gpus[0], &nv), Link::kNvLink);  // NVML still knows the links
  bool noted_gpu = false;
  bool noted_numa = false;
  for (const auto& n : t.notes) {
    noted_gpu = noted_gpu || n.find("0000:2a:00.0 for GPU1") != std::string::npos;
    noted_numa = noted_numa || n.find("one NUMA node assumed") != std::string::npos;
  }
  EXPECT_TRUE(noted_gpu);
  EXPECT_TRUE(noted_numa);
  EXPECT_EQ(t.nics.size(), 9U);  // no /sys/class/net: the RDMA devices remain
}

TEST(Discover, NetworkPathFromOptionOrEnvironment) {
  DiscoverOptions o;
  o.root = fixtureRoot("ci-2gpu");
  o.network_path = "spine2/leaf7";
  EXPECT_EQ(discover(o).network_path, "spine2/leaf7");
  o.network_path.clear();
  ::setenv("GANGWAY_NETWORK_PATH", "spine1/leaf3", 1);
  EXPECT_EQ(discover(o).network_path, "spine1/leaf3");
  ::setenv("GANGWAY_NETWORK_PATH", "spine1//leaf3", 1);
  const NodeTopology bad = discover(o);
  ::unsetenv("GANGWAY_NETWORK_PATH");
  EXPECT_TRUE(bad.network_path.empty());
  ASSERT_FALSE(bad.notes.empty());
  EXPECT_NE(bad.notes.back().find("network path ignored"), std::string::npos);
}

TEST(Discover, ParseNetworkPath) {
  EXPECT_EQ(*parseNetworkPath("core1/spine2/leaf-7"),
            (std::vector<std::string>{"core1", "spine2", "leaf-7"}));
  EXPECT_FALSE(parseNetworkPath("").ok());
  EXPECT_FALSE(parseNetworkPath("a b").ok());
  EXPECT_FALSE(parseNetworkPath("/leaf").ok());
}

TEST(Discover, LoadTopologyFileReportsMissingFile) {
  auto t = loadTopologyFile("/nonexistent/topo.json");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(), "cannot read topology file /nonexistent/topo.json");
}

TEST(Discover, LookupNetworkPath) {
  const std::string file =
      std::filesystem::temp_directory_path() / ("gangway_paths_" + std::to_string(::getpid()));
  std::ofstream(file) << "# node  path\n\nnode-a\tspine0/leaf1   # rack 3\nnode-b spine1/leaf3\n";
  EXPECT_EQ(*lookupNetworkPath(file, "node-a"), "spine0/leaf1");
  EXPECT_EQ(*lookupNetworkPath(file, "node-b"), "spine1/leaf3");
  EXPECT_EQ(lookupNetworkPath(file, "node-c").status().message(),
            "network-path map " + file + " does not name node 'node-c'");
  EXPECT_TRUE(absl::IsNotFound(lookupNetworkPath(file + ".none", "node-a").status()));
  std::ofstream(file) << "node-a spine0/leaf1\nnode-b\n";
  auto bad = lookupNetworkPath(file, "node-a");
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status()));
  EXPECT_EQ(bad.status().message(),
            "network-path map " + file + ":2: expected 'NODE PATH' (e.g. gpu-node-7 spine2/leaf7)");
  std::ofstream(file) << "node-a spine0/leaf1\nnode-a spine0/leaf2\n";
  EXPECT_NE(lookupNetworkPath(file, "node-a").status().message().find("named twice"),
            std::string::npos);
  std::filesystem::remove(file);
}

}  // namespace
}  // namespace gangway::topology
