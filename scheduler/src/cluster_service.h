// The Cluster gRPC service (proto/gangway/v1/cluster.proto) over a ClusterManager.
#pragma once

#include <functional>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "gangway/scheduler/authz.h"
#include "gangway/scheduler/cluster.h"
#include "gangway/scheduler/limits.h"

namespace gangway::scheduler {

// `kick` wakes the server's timer, which runs the manager's next cycle at once. `limits` bound
// the node streams' queues; `authz` decides who may call what (it must outlive the service).
std::unique_ptr<grpc::Service> makeClusterService(ClusterManager& manager, const Authorizer& authz,
                                                  const Limits& limits, std::function<void()> kick);

}  // namespace gangway::scheduler
