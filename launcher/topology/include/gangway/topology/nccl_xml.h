// NCCL's topology XML (the NCCL_TOPO_FILE / NCCL_TOPO_DUMP_FILE format): import, so that a user
// can feed gangway NCCL's dump, and export, so that NCCL can be handed gangway's view.
//
// Shape: <system version="1"> holds one <cpu numaid=... affinity=...> per NUMA node; below it,
// nested <pci busid=... class=...> elements follow the PCI tree; a GPU's <pci> holds
// <gpu dev=... sm=...> with one <nvlink target=BUSID count=N tclass=CLASS> per peer (an NVSwitch
// is tclass 0x068000), and a NIC's <pci> holds <nic> with one <net name=... port=... speed=MBPS>
// per port. Elements gangway does not model (c2c, pcilink, ...) are skipped.
#pragma once

#include <string>

#include <absl/status/statusor.h>
#include <absl/strings/string_view.h>

#include "gangway/topology/model.h"

namespace gangway::topology {

// Errors name `source`, the line and the element: "topo.xml:12: <gpu>: needs attribute 'dev'".
absl::StatusOr<NodeTopology> parseNcclXml(absl::string_view text, const std::string& source);

std::string toNcclXml(const NodeTopology& topo);

}  // namespace gangway::topology
