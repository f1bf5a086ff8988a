#include "gangway/topology/nccl_xml.h"

#include <gtest/gtest.h>

#include "gangway/topology/discover.h"

#include "fixture.h"

namespace gangway::topology {
namespace {

// Every GPU-GPU and GPU-NIC relation, as `gangway topo` would print it.
std::vector<std::string> matrix(const NodeTopology& t) {
  std::vector<std::string> out;
  for (const auto& a : t.gpus) {
    for (const auto& b : t.gpus) {
      int nv = 0;
      const Link l = gpuLink(a, b, &nv);
      out.push_back(linkLabel(l, nv));
    }
    for (const auto& n : t.nics) {
      if (n.rdma)
        out.push_back(linkLabel(pciLink(a.pci_path, a.numa_node, n.pci_path, n.numa_node), 0));
    }
  }
  return out;
}

TEST(NcclXml, RoundTripKeepsEveryRelation) {
  for (const char* name : {"hgx-h100", "pcie-8gpu", "nvl72-node", "ci-2gpu"}) {
    const NodeTopology t = testing::discoverFixture(name);
    const std::string xml = toNcclXml(t);
    auto back = parseNcclXml(xml, "dump.xml");
    ASSERT_TRUE(back.ok()) << back.status() << "\n" << xml;
    ASSERT_EQ(back->gpus.size(), t.gpus.size()) << name;
    EXPECT_EQ(matrix(*back), matrix(t)) << name << "\n" << xml;
    for (std::size_t i = 0; i < t.gpus.size(); ++i) {
      EXPECT_EQ(back->gpus[i].bus_id, t.gpus[i].bus_id);
      EXPECT_EQ(back->gpus[i].nvlinks.size(), t.gpus[i].nvlinks.size());
      EXPECT_EQ(back->gpus[i].numa_node, t.gpus[i].numa_node);
      EXPECT_EQ(back->gpus[i].compute_capability, t.gpus[i].compute_capability);
      EXPECT_EQ(back->gpus[i].cpus, t.gpus[i].cpus) << name << " GPU" << i;
    }
    // And the XML of the re-import is the same text: export is a fixed point.
    EXPECT_EQ(toNcclXml(*back), xml) << name;
  }
}

TEST(NcclXml, ExportUsesNcclsNvSwitchClassAndExactBusIds) {
  const std::string xml = toNcclXml(testing::discoverFixture("hgx-h100"));
  EXPECT_NE(xml.find("<system version=\"1\">"), std::string::npos);
  EXPECT_NE(xml.find("<cpu numaid=\"1\" affinity=\"ffffffff,ffffff00,00000000,0000ffff,ffffffff,"
                     "ff000000,00000000\""),
            std::string::npos)
      << xml;
  EXPECT_NE(xml.find("<nvlink target=\"0000:05:00.0\" count=\"5\" tclass=\"0x068000\"/>"),
            std::string::npos);
  EXPECT_NE(xml.find("<net name=\"mlx5_0\" dev=\"1\" speed=\"400000\" port=\"1\" latency=\"0\" "
                     "guid=\"0xb83fd20300190001\" maxconn=\"131072\" gdr=\"1\"/>"),
            std::string::npos)
      << xml;
  EXPECT_NE(xml.find("<pci busid=\"0000:18:00.0\" class=\"0x030200\" vendor=\"0x10de\" "
                     "device=\"0x2330\" link_speed=\"32.0 GT/s PCIe\" link_width=\"16\">"),
            std::string::npos);
  EXPECT_NE(xml.find("<cpu numaid=\"0\" affinity=\"000000ff,ffffffff,ffff0000,00000000,00ffffff,"
                     "ffffffff\" arch=\"x86_64\" vendor=\"GenuineIntel\" familyid=\"6\" "
                     "modelid=\"143\">"),
            std::string::npos);
}

// The shape of NCCL's own dump (NCCL_TOPO_DUMP_FILE), with attributes and elements gangway does
// not model.
constexpr const char* kNcclDump = R"(<system version="1">
  <cpu host_hash="0x8f3a" numaid="0" affinity="00000000,0000ffff" arch="x86_64" vendor="GenuineIntel" familyid="6" modelid="143">
    <pci busid="0000:16:00.0" class="0x060400" vendor="0x1000" device="0xc030" subsystem_vendor="0x1000" subsystem_device="0x100b" link_speed="32.0 GT/s PCIe" link_width="16">
      <pci busid="0000:18:00.0" class="0x030200" vendor="0x10de" device="0x2330" link_speed="32.0 GT/s PCIe" link_width="16">
        <gpu dev="0" sm="90" rank="0" gdr="1">
          <nvlink target="0000:05:00.0" count="18" tclass="0x068000"/>
        </gpu>
      </pci>
      <pci busid="0000:19:00.0" class="0x020700" vendor="0x15b3" device="0x1021" link_speed="32.0 GT/s PCIe" link_width="16">
        <nic>
          <net name="mlx5_0" dev="0" speed="400000" port="1" latency="0.000000" guid="0xb83fd20300aa0001" maxconn="131072" gdr="1"/>
        </nic>
      </pci>
    </pci>
    <pci busid="0000:2a:00.0" class="0x030200" vendor="0x10de" device="0x2330">
      <gpu dev="1" sm="90" rank="1" gdr="1">
        <nvlink target="0000:05:00.0" count="18" tclass="0x068000"/>
        <c2c bw="0" count="0"/>
      </gpu>
    </pci>
    <nic>
      <net name="eth0" dev="1" speed="25000" port="0" latency="0.000000" maxconn="65536"/>
    </nic>
  </cpu>
</system>
)";

TEST(NcclXml, ImportsNcclsDump) {
  auto t = parseNcclXml(kNcclDump, "nccl.xml");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->gpus.size(), 2U);
  EXPECT_EQ(t->gpus[0].bus_id, "0000:18:00.0");
  EXPECT_EQ(t->gpus[0].compute_capability, "9.0");
  EXPECT_EQ(formatCpuList(t->gpus[0].cpus), "0-15");
  int nv = 0;
  EXPECT_EQ(gpuLink(t->gpus[0], t->gpus[1], &nv), Link::kNvLink);
  EXPECT_EQ(nv, 18);
  ASSERT_EQ(t->nics.size(), 2U);
  EXPECT_TRUE(t->nics[0].rdma);
  EXPECT_EQ(t->nics[0].ports.at(0).rate_gbps, 400);
  const Gpu& g = t->gpus[0];
  EXPECT_EQ(linkLabel(pciLink(g.pci_path, 0, t->nics[0].pci_path, 0), 0), "PIX");
  EXPECT_FALSE(t->nics[1].rdma);
  EXPECT_EQ(t->nics[1].name, "eth0");
  EXPECT_EQ(t->nics[1].speed_gbps, 25);
}

// NCCL 2.28's own dump on a one-GPU H100 virtual machine: no NUMA node (numaid -1, no
// affinity) and a socket interface that NCCL writes with guid="0x0".
TEST(NcclXml, ImportsARealDumpFromAnH100Machine) {
  auto t = loadTopologyFile(std::string(GANGWAY_TOPO_FIXTURES) + "/h100-vm.nccl.xml");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->gpus.size(), 1U);
  EXPECT_EQ(t->gpus[0].bus_id, "0000:00:06.0");
  EXPECT_EQ(t->gpus[0].compute_capability, "9.0");
  EXPECT_EQ(t->cpu_vendor, "GenuineIntel");
  EXPECT_EQ(t->cpu_model, 207);
  ASSERT_EQ(t->nics.size(), 1U);
  EXPECT_FALSE(t->nics[0].rdma);
  EXPECT_EQ(t->nics[0].speed_gbps, 10);
  ASSERT_EQ(t->notes.size(), 1U);
  EXPECT_NE(t->notes[0].find("gives no CPU affinity"), std::string::npos);
  const PciDevice* gpu = findPci(*t, "0000:00:06.0");
  ASSERT_NE(gpu, nullptr);
  EXPECT_EQ(gpu->link_speed, "32.0 GT/s PCIe");
}

TEST(NcclXml, ErrorsNameTheLineAndTheElement) {
  auto broken = parseNcclXml("<system version=\"1\">\n  <cpu numaid=\"0\">\n</system>\n", "t.xml");
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(
      broken.status().message().find("t.xml:2: not well-formed XML (XML_ERROR_MISMATCHED_ELEMENT)"),
      std::string::npos)
      << broken.status();
  auto root = parseNcclXml("<topology/>", "t.xml");
  ASSERT_FALSE(root.ok());
  EXPECT_EQ(root.status().message(),
            "t.xml:1: expected <system> as the root element of an NCCL topology file, found "
            "<topology>");
  auto dev = parseNcclXml(
      "<system version=\"1\">\n<cpu numaid=\"0\">\n<pci busid=\"0000:18:00.0\">\n<gpu sm=\"90\"/>\n"
      "</pci></cpu></system>",
      "t.xml");
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.status().message(), "t.xml:4: <gpu>: needs attribute 'dev'");
  auto bus = parseNcclXml(
      "<system version=\"1\">\n<cpu numaid=\"0\">\n<pci busid=\"0000:zz:00.0\"/>\n</cpu></system>",
      "t.xml");
  ASSERT_FALSE(bus.ok());
  EXPECT_NE(bus.status().message().find("t.xml:3: <pci>: busid='0000:zz:00.0' is not a PCI bus "
                                        "id"),
            std::string::npos)
      << bus.status();
  auto numa = parseNcclXml("<system version=\"1\">\n<cpu numaid=\"x\"/>\n</system>", "t.xml");
  ASSERT_FALSE(numa.ok());
  EXPECT_EQ(numa.status().message(), "t.xml:2: <cpu>: numaid=\"x\" is not an integer");
  auto count = parseNcclXml(
      "<system version=\"1\"><cpu numaid=\"0\"><pci busid=\"0000:18:00.0\"><gpu dev=\"0\">\n"
      "<nvlink target=\"0000:05:00.0\" count=\"0\"/></gpu></pci></cpu></system>",
      "t.xml");
  ASSERT_FALSE(count.ok());
  EXPECT_EQ(count.status().message(), "t.xml:2: <nvlink>: count=\"0\" is not between 1 and 64");
}

}  // namespace
}  // namespace gangway::topology
