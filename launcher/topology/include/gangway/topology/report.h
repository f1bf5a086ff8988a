// Human-readable views of a snapshot and a mapping, as `gangway topo` prints them.
#pragma once

#include <string>

#include "gangway/topology/mapping.h"
#include "gangway/topology/model.h"

namespace gangway::topology {

// The node summary, the GPU/NIC link matrix (like `nvidia-smi topo -m`) with each GPU's CPU and
// NUMA affinity, the NICs, and the notes on what discovery could not see.
std::string formatReport(const NodeTopology& topo);

// One line per local rank: GPU, NIC, CPUs, memory policy, and the environment each worker gets.
std::string formatMapping(const LocalMapping& mapping, NumaBinding binding);

}  // namespace gangway::topology
