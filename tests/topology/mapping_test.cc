#include "gangway/topology/mapping.h"

#include <map>
#include <set>

#include <gtest/gtest.h>

#include "fixture.h"

namespace gangway::topology {
namespace {

std::map<std::string, std::string> envOf(const LocalMapping& m, int rank) {
  std::map<std::string, std::string> env;
  for (const auto& [k, v] : bindingEnv(m, rank)) env[k] = v;
  return env;
}

TEST(Mapping, HgxEachRankGetsItsGpuItsPixNicAndItsNumaNode) {
  const NodeTopology t = testing::discoverFixture("hgx-h100");
  MappingOptions o;
  o.nproc = 8;
  const LocalMapping m = mapLocalRanks(t, o);
  ASSERT_EQ(m.ranks.size(), 8U);
  EXPECT_EQ(m.visible_devices, "0,1,2,3,4,5,6,7");
  for (int r = 0; r < 8; ++r) {
    const RankBinding& b = m.ranks[r];
    EXPECT_EQ(b.gpu, r);
    EXPECT_EQ(b.nic, "mlx5_" + std::to_string(r));
    EXPECT_EQ(b.nic_link, "PIX");
    EXPECT_EQ(b.numa_node, r < 4 ? 0 : 1);
    EXPECT_EQ(formatCpuList(b.cpus), r < 4 ? "0-55,112-167" : "56-111,168-223");
    EXPECT_TRUE(b.prefer_memory);
    EXPECT_FALSE(b.bind_memory);
  }
  const auto env = envOf(m, 1);
  EXPECT_EQ(env.at("NCCL_IB_HCA"), "=mlx5_1:1");  // exact: not mlx5_10
  EXPECT_EQ(env.at("CUDA_VISIBLE_DEVICES"), "0,1,2,3,4,5,6,7");
  EXPECT_EQ(env.at("CUDA_DEVICE_ORDER"), "PCI_BUS_ID");
  EXPECT_EQ(env.at("GANGWAY_GPU"), "1");
  EXPECT_EQ(env.at("GANGWAY_GPU_UUID"), t.gpus[1].uuid);
  EXPECT_EQ(env.at("GANGWAY_NUMA_NODE"), "0");
}

TEST(Mapping, ExclusiveSplitsTheNodeEvenlyAndDisjointly) {
  const NodeTopology t = testing::discoverFixture("hgx-h100");
  MappingOptions o;
  o.nproc = 8;
  o.numa = NumaBinding::kExclusive;
  const LocalMapping m = mapLocalRanks(t, o);
  std::set<int> seen;
  for (const auto& b : m.ranks) {
    EXPECT_EQ(b.cpus.size(), 28U);  // 112 CPUs per node, 4 ranks each
    EXPECT_TRUE(b.bind_memory);
    for (int c : b.cpus) EXPECT_TRUE(seen.insert(c).second) << c;
  }
  EXPECT_EQ(formatCpuList(m.ranks[0].cpus), "0-27");
  EXPECT_EQ(formatCpuList(m.ranks[1].cpus), "28-55");
  EXPECT_EQ(formatCpuList(m.ranks[2].cpus), "112-139");
}

TEST(Mapping, AllowedCpusLimitTheBinding) {
  const NodeTopology t = testing::discoverFixture("hgx-h100");
  MappingOptions o;
  o.nproc = 8;
  o.allowed_cpus = {0, 1, 2, 3, 60, 61};  // a container's cpuset
  const LocalMapping m = mapLocalRanks(t, o);
  EXPECT_EQ(formatCpuList(m.ranks[0].cpus), "0-3");
  EXPECT_EQ(formatCpuList(m.ranks[7].cpus), "60-61");
  o.allowed_cpus = {0, 1};
  const LocalMapping none = mapLocalRanks(t, o);
  EXPECT_TRUE(none.ranks[7].cpus.empty());
  EXPECT_FALSE(none.ranks[7].prefer_memory);
  ASSERT_FALSE(none.notes.empty());
  EXPECT_NE(none.notes.back().find("NUMA node 1 has no CPU this agent may use"), std::string::npos);
}

TEST(Mapping, PcieNicsAreSharedEvenlyByNumaNode) {
  const NodeTopology t = testing::discoverFixture("pcie-8gpu");
  MappingOptions o;
  o.nproc = 8;
  const LocalMapping m = mapLocalRanks(t, o);
  for (int r = 0; r < 8; ++r) {
    EXPECT_EQ(m.ranks[r].nic, r < 4 ? "mlx5_0" : "mlx5_1") << r;
  }
  EXPECT_EQ(m.ranks[0].nic_link, "PHB");
  EXPECT_EQ(m.ranks[2].nic_link, "NODE");
}

// GPUs whose index order alternates between two PCIe switches: the chain groups each switch.
NodeTopology alternating() {
  NodeTopology t;
  t.numa_nodes.push_back(NumaNode{0, {0, 1, 2, 3}, 0});
  for (int i = 0; i < 4; ++i) {
    Gpu g;
    g.index = i;
    const std::string sw = i % 2 == 0 ? "0000:11:00.0" : "0000:21:00.0";
    const std::string rp = i % 2 == 0 ? "0000:10:01.0" : "0000:20:01.0";
    g.bus_id = "0000:3" + std::to_string(i) + ":00.0";
    g.pci_path = {"pci0000:10", rp, sw, "0000:1" + std::to_string(2 + i) + ":00.0", g.bus_id};
    g.numa_node = 0;
    t.gpus.push_back(g);
  }
  for (int k = 0; k < 2; ++k) {
    Nic n;
    n.name = "mlx5_" + std::to_string(k);
    n.rdma = true;
    n.numa_node = 0;
    t.nics.push_back(n);
  }
  return t;
}

TEST(Mapping, PcieOnlyGroupsBySwitch) {
  MappingOptions o;
  o.nproc = 4;
  const LocalMapping m = mapLocalRanks(alternating(), o);
  EXPECT_EQ(m.visible_devices, "0,2,1,3");
  // Two NICs at the same distance from every GPU: two ranks each.
  std::map<std::string, int> load;
  for (const auto& b : m.ranks) ++load[b.nic];
  EXPECT_EQ(load["mlx5_0"], 2);
  EXPECT_EQ(load["mlx5_1"], 2);
}

TEST(Mapping, MoreRanksThanGpusShareThem) {
  const NodeTopology t = testing::discoverFixture("ci-2gpu");
  MappingOptions o;
  o.nproc = 3;
  o.numa = NumaBinding::kExclusive;
  const LocalMapping m = mapLocalRanks(t, o);
  ASSERT_EQ(m.ranks.size(), 3U);
  EXPECT_EQ(m.ranks[2].gpu, 0);
  EXPECT_TRUE(m.visible_devices.empty());
  EXPECT_EQ(envOf(m, 2).at("CUDA_VISIBLE_DEVICES"), "0");  // its own GPU only
  EXPECT_EQ(m.ranks[2].cpus.size(), 1U);                   // 3 ranks on 2 CPUs
}

TEST(Mapping, CudaVisibleDevicesRestrictsTheGpus) {
  const NodeTopology t = testing::discoverFixture("hgx-h100");
  MappingOptions o;
  o.nproc = 2;
  o.visible_devices_set = true;
  o.visible_devices = "6," + t.gpus[5].uuid.substr(0, 12);  // an index and a UUID prefix
  const LocalMapping m = mapLocalRanks(t, o);
  ASSERT_EQ(m.ranks.size(), 2U);
  EXPECT_EQ(m.visible_devices, "6,5");
  EXPECT_EQ(m.ranks[0].nic, "mlx5_6");
  o.visible_devices = "MIG-abcd";
  const LocalMapping mig = mapLocalRanks(t, o);
  EXPECT_TRUE(mig.ranks.empty());
  ASSERT_FALSE(mig.notes.empty());
  EXPECT_NE(mig.notes[0].find("MIG"), std::string::npos);
}

TEST(Mapping, NoGpusNoBinding) {
  NodeTopology t;
  t.numa_nodes.push_back(NumaNode{0, {0, 1}, 0});
  MappingOptions o;
  o.nproc = 2;
  const LocalMapping m = mapLocalRanks(t, o);
  EXPECT_TRUE(m.ranks.empty());
  EXPECT_TRUE(bindingEnv(m, 0).empty());
}

TEST(Mapping, NumaBindingNames) {
  EXPECT_EQ(*parseNumaBinding("exclusive"), NumaBinding::kExclusive);
  auto bad = parseNumaBinding("socket");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "--numa-binding: 'socket' is not one of none, node, exclusive");
}

}  // namespace
}  // namespace gangway::topology
