// A job's store through the control plane's Store service.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/channel.h>

#include "gangway/scheduler/client/store.h"

namespace gangway::scheduler {

// `token` is the job's secret (may be empty). Every call carries it and a deadline: the
// operation's own timeout plus a margin for the network, so that the server answers
// DEADLINE_EXCEEDED first.
std::unique_ptr<Store> makeGrpcStore(std::shared_ptr<grpc::Channel> channel, std::string job_id,
                                     std::string token);

}  // namespace gangway::scheduler
