// This node's topology, discovered (or loaded from --topology FILE) once at start, and the
// GPU, NIC and CPUs each local rank is bound to.
#pragma once

#include <string>

#include <absl/status/statusor.h>

#include "gangway/launcher/run_options.h"
#include "gangway/topology/mapping.h"
#include "gangway/topology/model.h"

namespace gangway::launcher {

struct NodeBinding {
  topology::NodeTopology topology;  // empty with --topology off
  topology::LocalMapping mapping;   // empty: no binding
};

// Logs the binding it chose. InvalidArgument names a --topology file that cannot be used.
absl::StatusOr<NodeBinding> bindNode(const RunOptions& options, const EnvMap& base_env,
                                     const std::string& hostname);

}  // namespace gangway::launcher
