// The agent applies the local mapping: each worker's environment, CPU affinity and memory policy,
// from a fixture node (fake sysfs and the fake NVML library) or a saved snapshot; and
// `gangway topo` on the fixtures.
#include <fstream>
#include <map>

#include <sched.h>

#include <gtest/gtest.h>

#include "agent_harness.h"

namespace gangway::testing {
namespace {

const std::string kFixtures = GANGWAY_TOPO_FIXTURES;

std::map<std::string, std::string> fixtureEnv(const std::string& name) {
  return {{"GANGWAY_NVML_LIBRARY", GANGWAY_FAKE_NVML_LIB},
          {"GANGWAY_FAKE_NVML", kFixtures + "/" + name + "/nvml.json"}};
}

AgentResult run(const std::vector<std::string>& args,
                const std::map<std::string, std::string>& env = {}) {
  auto agent = AgentProcess::start(args, env);
  return agent->wait();
}

// Each worker prints what it was given: environment, CPU affinity and memory policy.
const char* kReport =
    "echo \"R=$LOCAL_RANK CVD=${CUDA_VISIBLE_DEVICES-unset} ORDER=${CUDA_DEVICE_ORDER-unset} "
    "HCA=${NCCL_IB_HCA-unset} GPU=${GANGWAY_GPU-unset} CPUS=$(grep Cpus_allowed_list "
    "/proc/self/status | cut -f2) BIND=$(grep -c ' bind:0' /proc/self/numa_maps) "
    "PREFER=$(grep -c ' prefer:0' /proc/self/numa_maps)\"";

std::string line(const AgentResult& r, int rank) {
  const auto lines = rankLines(r.out, rank);
  return lines.empty() ? "" : lines.front();
}

bool haveCpus01() {
  cpu_set_t set;
  CPU_ZERO(&set);
  return ::sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_ISSET(0, &set) && CPU_ISSET(1, &set);
}

TEST(TopologyAgent, ExclusiveBindingGivesEachWorkerItsGpuNicAndCpu) {
  if (!haveCpus01()) GTEST_SKIP() << "needs CPUs 0 and 1";
  const auto r =
      run({"run", "--standalone", "--nproc-per-node", "2", "--sysfs-root", kFixtures + "/ci-2gpu",
           "--numa-binding", "exclusive", "--no-python", "/bin/sh", "-c", kReport},
          fixtureEnv("ci-2gpu"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string r0 = line(r, 0);
  const std::string r1 = line(r, 1);
  EXPECT_NE(r0.find("R=0 CVD=0,1 ORDER=PCI_BUS_ID HCA==mlx5_0:1 GPU=0 CPUS=0 "), std::string::npos)
      << r0;
  EXPECT_NE(r1.find("R=1 CVD=0,1 ORDER=PCI_BUS_ID HCA==mlx5_1:1 GPU=1 CPUS=1 "), std::string::npos)
      << r1;
  EXPECT_EQ(r0.find("BIND=0 "), std::string::npos) << r0;  // bound mappings exist
  EXPECT_NE(r.err.find("binding (--numa-binding exclusive) 0:GPU0/mlx5_0/CPUs 0 "
                       "1:GPU1/mlx5_1/CPUs 1"),
            std::string::npos)
      << r.err;
}

TEST(TopologyAgent, NodeBindingPrefersTheNodeAndKeepsTheUsersHca) {
  if (!haveCpus01()) GTEST_SKIP() << "needs CPUs 0 and 1";
  auto env = fixtureEnv("ci-2gpu");
  env["NCCL_IB_HCA"] = "=mlx5_7";
  const auto r = run({"run", "--standalone", "--nproc-per-node", "2", "--sysfs-root",
                      kFixtures + "/ci-2gpu", "--no-python", "/bin/sh", "-c", kReport},
                     env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string r1 = line(r, 1);
  EXPECT_NE(r1.find("HCA==mlx5_7 GPU=1 CPUS=0-1 BIND=0 "), std::string::npos) << r1;
  EXPECT_EQ(r1.find("PREFER=0\""), std::string::npos) << r1;
}

TEST(TopologyAgent, UsersCudaVisibleDevicesLimitsTheGpus) {
  auto env = fixtureEnv("ci-2gpu");
  env["CUDA_VISIBLE_DEVICES"] = "1";
  const auto r =
      run({"run", "--standalone", "--nproc-per-node", "1", "--sysfs-root", kFixtures + "/ci-2gpu",
           "--numa-binding", "none", "--no-python", "/bin/sh", "-c", kReport},
          env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(line(r, 0).find("CVD=1 ORDER=PCI_BUS_ID HCA==mlx5_1:1 GPU=1 "), std::string::npos)
      << line(r, 0);
}

TEST(TopologyAgent, SavedSnapshotReplacesDiscoveryAndOffChangesNothing) {
  TempDir dir;
  const auto topo =
      run({"topo", "--json", "--sysfs-root", kFixtures + "/ci-2gpu"}, fixtureEnv("ci-2gpu"));
  ASSERT_EQ(topo.exit_code, 0) << topo.err;
  writeFile(dir.file("node.json"), topo.out);
  // No fake NVML this time: the snapshot alone says what the node has.
  const auto r =
      run({"run", "--standalone", "--nproc-per-node", "2", "--topology", dir.file("node.json"),
           "--numa-binding", "none", "--no-python", "/bin/sh", "-c", kReport});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(line(r, 1).find("CVD=0,1 ORDER=PCI_BUS_ID HCA==mlx5_1:1 GPU=1 "), std::string::npos)
      << line(r, 1);
  const auto off =
      run({"run", "--standalone", "--nproc-per-node", "1", "--topology", "off", "--sysfs-root",
           kFixtures + "/ci-2gpu", "--no-python", "/bin/sh", "-c", kReport},
          fixtureEnv("ci-2gpu"));
  ASSERT_EQ(off.exit_code, 0) << off.err;
  EXPECT_NE(line(off, 0).find("CVD=unset ORDER=unset HCA=unset GPU=unset"), std::string::npos)
      << line(off, 0);
}

TEST(TopologyAgent, BadTopologyInputIsRefusedBeforeAnythingStarts) {
  TempDir dir;
  writeFile(dir.file("bad.json"), "{\"version\": 1, \"gpus\": [{\"bus_id\": 3}]}");
  struct Case {
    std::vector<std::string> flags;
    std::string error;
  };
  const std::vector<Case> cases{
      {{"--topology", dir.file("missing.json")},
       "gangway run: error: --topology: cannot read topology file " + dir.file("missing.json")},
      {{"--topology", dir.file("bad.json")},
       "gangway run: error: --topology: " + dir.file("bad.json") +
           ": gpus[0].bus_id: expected a string"},
      {{"--numa-binding", "socket"},
       "gangway run: error: invalid --numa-binding 'socket': expected none, node or exclusive"},
      {{"--parallelism", "tp=x"},
       "gangway run: error: --parallelism: 'tp=x' is not NAME=N with NAME one of tp, cp, ep, dp, "
       "pp (each once) and N a positive integer"},
      {{"--network-path", "spine1//leaf2"},
       "gangway run: error: --network-path: 'spine1//leaf2' is not a network path (expected "
       "switch names from the top down, e.g. spine2/leaf7)"},
      {{"--sysfs-root", dir.file("nope")},
       "gangway run: error: invalid --sysfs-root '" + dir.file("nope") + "': expected a directory"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args{"run", "--standalone"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    args.insert(args.end(), {"--no-python", "/bin/echo", "started"});
    const auto r = run(args);
    EXPECT_EQ(r.exit_code, 2) << c.flags[0];
    EXPECT_EQ(r.err, c.error + "\n");
    EXPECT_EQ(r.out.find("started"), std::string::npos);
  }
}

TEST(TopoCommand, ReportsTheHgxFixture) {
  const auto r = run({"topo", "--sysfs-root", kFixtures + "/hgx-h100"}, fixtureEnv("hgx-h100"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("GPUs: 8  (nvml driver 580.00)"), std::string::npos) << r.out;
  // nvidia-smi topo -m's matrix: GPU0's row.
  EXPECT_NE(r.out.find("GPU0    X     NV18  NV18  NV18  NV18  NV18  NV18  NV18  PIX   NODE  NODE  "
                       "NODE  SYS   SYS   SYS   SYS   SYS   NODE  0-55,112-167        0\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("  1     1     mlx5_1:1 PIX   0-55,112-167         prefer NUMA 0"),
            std::string::npos)
      << r.out;
}

TEST(TopoCommand, NcclXmlOutAndBackGivesTheSameReport) {
  TempDir dir;
  const auto a =
      run({"topo", "--sysfs-root", kFixtures + "/pcie-8gpu", "--nccl-xml", dir.file("topo.xml")},
          fixtureEnv("pcie-8gpu"));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const auto b = run({"topo", "--from", dir.file("topo.xml")});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  auto matrix = [](const std::string& report) {
    const auto start = report.find("\n        GPU0");
    return report.substr(start, report.find("Legend") - start);
  };
  EXPECT_EQ(matrix(b.out), matrix(a.out));
  EXPECT_NE(a.out.find("no /sys/class/pci_bus"), std::string::npos);  // said, not guessed
}

TEST(TopoCommand, ThisMachine) {
  const auto r = run({"topo"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("CPUs: "), std::string::npos);
  EXPECT_NE(r.out.find("NUMA nodes: "), std::string::npos);
}

TEST(TopoCommand, BadInputGetsOneLine) {
  TempDir dir;
  writeFile(dir.file("bad.xml"), "<system version=\"1\">\n<cpu numaid=\"zero\"/>\n</system>\n");
  const auto xml = run({"topo", "--from", dir.file("bad.xml")});
  EXPECT_EQ(xml.exit_code, 2);
  EXPECT_EQ(xml.err, "gangway topo: error: " + dir.file("bad.xml") +
                         ":2: <cpu>: numaid=\"zero\" is not an integer\n");
  const auto plan = run({"topo", "--plan", dir.file("bad.xml")});
  EXPECT_EQ(plan.exit_code, 2);
  EXPECT_NE(plan.err.find("not valid JSON"), std::string::npos);
  const auto root = run({"topo", "--sysfs-root", dir.file("none")});
  EXPECT_EQ(root.exit_code, 2);
}

TEST(TopoCommand, PlanComparesOrders) {
  TempDir dir;
  std::string nodes;
  // 8 nodes on 2 leaves, arriving interleaved.
  for (int i = 0; i < 8; ++i) {
    nodes += std::string(i == 0 ? "" : ",") + "{\"name\": \"n" + std::to_string(i) +
             "\", \"network_path\": \"spine1/leaf" + std::to_string(i % 2) + "\"}";
  }
  writeFile(dir.file("cluster.json"), "{\"nproc_per_node\": 8, \"nodes\": [" + nodes + "]}");
  const auto r = run({"topo", "--plan", dir.file("cluster.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("  arrival order            8           0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  gangway                  2           0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  lower bound              2           0"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace gangway::testing
