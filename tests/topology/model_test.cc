#include "gangway/topology/model.h"

#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gangway/topology/nccl_xml.h"

#include "fixture.h"

namespace gangway::topology {
namespace {

TEST(Model, BusIds) {
  EXPECT_EQ(*normalizeBusId("00000000:1A:00.0"), "0000:1a:00.0");
  EXPECT_EQ(*normalizeBusId("18:00.0"), "0000:18:00.0");
  EXPECT_EQ(*normalizeBusId("0001:c0:1f.7"), "0001:c0:1f.7");
  for (const char* bad : {"", "18:00", "zz:00.0", "0000:18:00.8", "0000:18:20.0", "0:0:0:0.0"}) {
    EXPECT_FALSE(normalizeBusId(bad).ok()) << bad;
  }
}

TEST(Model, CpuListsAndMasks) {
  EXPECT_EQ(*parseCpuList("0-3,8,10-11\n"), (std::vector<int>{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(formatCpuList({11, 0, 1, 2, 3, 8, 10}), "0-3,8,10-11");
  EXPECT_TRUE(parseCpuList("")->empty());
  EXPECT_FALSE(parseCpuList("3-1").ok());
  EXPECT_FALSE(parseCpuList("a").ok());
  EXPECT_EQ(formatCpuMask({0, 1, 2, 3, 32, 63}), "80000001,0000000f");
  EXPECT_EQ(*parseCpuMask("80000001,0000000f"), (std::vector<int>{0, 1, 2, 3, 32, 63}));
  EXPECT_EQ(*parseCpuMask("0x000000ff"), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_FALSE(parseCpuMask("00000000,zz").ok());
  EXPECT_FALSE(parseCpuList("2147483000-2147483647").ok());  // would make a 256 MiB mask
  EXPECT_FALSE(parseCpuMask(std::string(2049 * 9, ',')).ok());
}

TEST(Model, PciRelations) {
  const std::vector<std::string> gpu{"pci0000:15", "0000:15:01.0", "0000:16:00.0", "0000:17:00.0",
                                     "0000:18:00.0"};
  const std::vector<std::string> nic{"pci0000:15", "0000:15:01.0", "0000:16:00.0", "0000:17:01.0",
                                     "0000:19:00.0"};
  // Two switches deep: under 0000:16:00.0's switch, a second switch.
  const std::vector<std::string> deep{"pci0000:15",   "0000:15:01.0", "0000:16:00.0",
                                      "0000:17:02.0", "0000:1a:00.0", "0000:1b:00.0",
                                      "0000:1c:00.0"};
  const std::vector<std::string> other_port{"pci0000:15", "0000:15:02.0", "0000:30:00.0"};
  const std::vector<std::string> other_bridge{"pci0000:40", "0000:40:01.0", "0000:41:00.0"};
  EXPECT_EQ(pciLink(gpu, 0, gpu, 0), Link::kSelf);
  EXPECT_EQ(pciLink(gpu, 0, nic, 0), Link::kPix);
  EXPECT_EQ(pciLink(gpu, 0, deep, 0), Link::kPxb);
  EXPECT_EQ(pciLink(gpu, 0, other_port, 0), Link::kPhb);
  EXPECT_EQ(pciLink(gpu, 0, other_bridge, 0), Link::kNode);
  EXPECT_EQ(pciLink(gpu, 0, other_bridge, 1), Link::kSys);
  EXPECT_EQ(pciLink({}, 0, other_bridge, 0), Link::kNode);  // unknown path: by NUMA only
  EXPECT_EQ(pciLink({}, 0, other_bridge, 1), Link::kSys);
}

TEST(Model, JsonRoundTrip) {
  for (const char* name : {"hgx-h100", "pcie-8gpu", "nvl72-node", "ci-2gpu"}) {
    NodeTopology t = testing::discoverFixture(name);
    t.network_path = "spine1/leaf2";
    auto back = parseJson(toJsonText(t), "snapshot.json");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(toJson(*back), toJson(t)) << name;
  }
}

TEST(Model, JsonErrorsNameTheLineOrTheElement) {
  auto syntax = parseJson("{\n  \"version\": 1,\n  \"gpus\": [\n    {,}\n  ]\n}\n", "t.json");
  ASSERT_FALSE(syntax.ok());
  EXPECT_EQ(syntax.status().message(),
            "t.json:4:6: not valid JSON (expected a gangway topology snapshot)");
  auto type = parseJson(R"({"version": 1, "gpus": [{"bus_id": 7}]})", "t.json");
  ASSERT_FALSE(type.ok());
  EXPECT_EQ(type.status().message(), "t.json: gpus[0].bus_id: expected a string");
  auto bus = parseJson(R"({"version": 1, "gpus": [{"bus_id": "0000:18:00.0"},
    {"bus_id": "0000:19:00.0", "nvlinks": [{"remote_bus_id": "nope", "remote_type": "gpu"}]}]})",
                       "t.json");
  ASSERT_FALSE(bus.ok());
  EXPECT_NE(bus.status().message().find("t.json: gpus[1].nvlinks[0].remote_bus_id: 'nope' is "
                                        "not a PCI bus id"),
            std::string::npos)
      << bus.status();
  auto version = parseJson(R"({"version": 99})", "t.json");
  ASSERT_FALSE(version.ok());
  EXPECT_EQ(version.status().message(),
            "t.json: version: 99 is not a snapshot version this gangway reads (1..1)");
  auto missing = parseJson(R"({"gpus": []})", "t.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), "t.json: version: is missing");
  auto twice = parseJson(
      R"({"version": 1, "gpus": [{"index": 0, "bus_id": "18:00.0"}, {"index": 0, "bus_id": "19:00.0"}]})",
      "t.json");
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.status().message(), "t.json: gpus[1].index: 0 is used twice");
  EXPECT_FALSE(parseJson("[]", "t.json").ok());
}

// Damaged snapshots and NCCL files: every parse returns a value or an error, never crashes
// (deterministic mutations of the fixtures: byte flips, truncations, duplicated spans).
TEST(Model, DamagedInputNeverCrashes) {
  const NodeTopology t = testing::discoverFixture("hgx-h100");
  const std::string texts[] = {toJsonText(t), toNcclXml(t)};
  std::mt19937 rng(12345);
  int errors = 0;
  for (const std::string& base : texts) {
    for (int i = 0; i < 300; ++i) {
      std::string s = base;
      std::uniform_int_distribution<std::size_t> pos(0, s.size() - 1);
      switch (i % 3) {
        case 0:
          for (int k = 0; k < 4; ++k) s[pos(rng)] = "{}[]<>\"=,:-0x9 "[rng() % 16];
          break;
        case 1:
          s.resize(pos(rng));
          break;
        default: {
          const std::size_t a = pos(rng);
          s.insert(pos(rng), s.substr(a, 64));
        }
      }
      const bool xml = base[0] == '<';
      const auto parsed = xml ? parseNcclXml(s, "m.xml") : parseJson(s, "m.json");
      if (!parsed.ok()) {
        ++errors;
        EXPECT_EQ(std::string(parsed.status().message()).find('\n'), std::string::npos);
      }
    }
  }
  EXPECT_GT(errors, 100);  // the mutations do break most inputs
}

}  // namespace
}  // namespace gangway::topology
