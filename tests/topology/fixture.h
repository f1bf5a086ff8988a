// Discovery of a fixture tree with the fake NVML library, for the topology tests.
#pragma once

#include <cstdlib>
#include <string>

#include "gangway/topology/discover.h"

namespace gangway::topology::testing {

inline std::string fixtureRoot(const std::string& name) {
  return std::string(GANGWAY_TOPO_FIXTURES) + "/" + name;
}

inline NodeTopology discoverFixture(const std::string& name) {
  ::setenv("GANGWAY_FAKE_NVML", (fixtureRoot(name) + "/nvml.json").c_str(), 1);
  DiscoverOptions o;
  o.root = fixtureRoot(name);
  o.nvml_library = GANGWAY_FAKE_NVML_LIB;
  o.hostname = name;
  return discover(o);
}

}  // namespace gangway::topology::testing
