#include "verbs.h"

#include <algorithm>

#include <absl/strings/str_cat.h>

#if GANGWAY_HAVE_VERBS
#include <infiniband/verbs.h>
#endif

namespace gangway::topology {

#if GANGWAY_HAVE_VERBS
namespace {

// ibv_port_attr's active_speed / active_width -> Gb/s.
double rateGbps(const ibv_port_attr& a) {
  double lane = 0;
  switch (a.active_speed) {
    case 1:
      lane = 2.5;
      break;  // SDR
    case 2:
      lane = 5;
      break;  // DDR
    case 4:
    case 8:
      lane = 10;
      break;  // QDR, FDR10
    case 16:
      lane = 14;
      break;  // FDR
    case 32:
      lane = 25;
      break;  // EDR
    case 64:
      lane = 50;
      break;  // HDR
    case 128:
      lane = 100;
      break;  // NDR
    default:
      lane = 0;
  }
  int width = 0;
  switch (a.active_width) {
    case 1:
      width = 1;
      break;
    case 2:
      width = 4;
      break;
    case 4:
      width = 8;
      break;
    case 8:
      width = 12;
      break;
    case 16:
      width = 2;
      break;
    default:
      width = 0;
  }
  return lane * width;
}

const char* stateName(ibv_port_state s) {
  switch (s) {
    case IBV_PORT_DOWN:
      return "DOWN";
    case IBV_PORT_INIT:
      return "INIT";
    case IBV_PORT_ARMED:
      return "ARMED";
    case IBV_PORT_ACTIVE:
      return "ACTIVE";
    case IBV_PORT_ACTIVE_DEFER:
      return "ACTIVE_DEFER";
    default:
      return "NOP";
  }
}

}  // namespace

void mergeVerbs(NodeTopology* topo) {
  int count = 0;
  ibv_device** list = ibv_get_device_list(&count);
  if (list == nullptr) return;
  for (int i = 0; i < count; ++i) {
    const std::string name = ibv_get_device_name(list[i]);
    auto it = std::find_if(topo->nics.begin(), topo->nics.end(),
                           [&](const Nic& n) { return n.rdma && n.name == name; });
    if (it == topo->nics.end()) {
      Nic n;
      n.name = name;
      n.rdma = true;
      topo->notes.push_back(absl::StrCat(
          "RDMA device ", name, " seen by libibverbs only (not in /sys/class/infiniband)"));
      topo->nics.push_back(std::move(n));
      it = topo->nics.end() - 1;
    }
    ibv_context* ctx = ibv_open_device(list[i]);
    if (ctx == nullptr) continue;
    ibv_device_attr attr{};
    if (ibv_query_device(ctx, &attr) == 0) {
      for (int p = 1; p <= attr.phys_port_cnt; ++p) {
        ibv_port_attr pa{};
        if (ibv_query_port(ctx, static_cast<uint8_t>(p), &pa) != 0) continue;
        auto port = std::find_if(it->ports.begin(), it->ports.end(),
                                 [p](const NicPort& x) { return x.port == p; });
        if (port == it->ports.end()) {
          it->ports.push_back(NicPort{p, "", "", 0});
          port = it->ports.end() - 1;
        }
        if (port->state.empty()) port->state = stateName(pa.state);
        if (port->link_layer.empty()) {
          port->link_layer = pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet" : "InfiniBand";
        }
        if (port->rate_gbps == 0) port->rate_gbps = rateGbps(pa);
        it->speed_gbps = std::max(it->speed_gbps, port->rate_gbps);
      }
    }
    ibv_close_device(ctx);
  }
  ibv_free_device_list(list);
}

#else

void mergeVerbs(NodeTopology* /*topo*/) {}

#endif

}  // namespace gangway::topology
