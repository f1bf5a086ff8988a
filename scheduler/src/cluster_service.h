// The Cluster gRPC service (proto/gangway/v1/cluster.proto) over a ClusterManager.
#pragma once

#include <functional>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "gangway/scheduler/cluster.h"

namespace gangway::scheduler {

// `kick` wakes the server's timer, which runs the manager's next cycle at once.
std::unique_ptr<grpc::Service> makeClusterService(ClusterManager& manager,
                                                  std::function<void()> kick);

}  // namespace gangway::scheduler
