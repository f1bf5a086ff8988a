// RDMA devices as libibverbs sees them, merged into a snapshot discovered from the live "/".
#pragma once

#include "gangway/topology/model.h"

namespace gangway::topology {

// Adds devices that libibverbs lists but sysfs did not show, and fills port state, link layer
// and rate where sysfs left them empty. A machine without RDMA devices (or without the verbs
// library at build time) is left unchanged.
void mergeVerbs(NodeTopology* topo);

}  // namespace gangway::topology
