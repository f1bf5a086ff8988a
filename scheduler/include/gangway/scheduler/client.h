// Clients of the control plane: a channel to it, and the job's Store over gRPC.
#pragma once

#include <memory>
#include <string>

#include <absl/status/statusor.h>

#include "gangway/scheduler/kv_store.h"

#include <grpcpp/channel.h>

namespace gangway::scheduler {

struct ChannelOptions {
  std::string address;      // HOST:PORT
  std::string tls_ca_file;  // PEM roots: TLS when set, plaintext otherwise
};

// InvalidArgument when the CA file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> makeChannel(const ChannelOptions& options);

// The job's store through the control plane. `token` is the job's secret (may be empty).
std::unique_ptr<Store> makeGrpcStore(std::shared_ptr<grpc::Channel> channel, std::string job_id,
                                     std::string token);

// Converts between gRPC and Abseil status codes (the numeric values are the same canonical codes).
absl::Status fromGrpc(const grpc::Status& s);
grpc::Status toGrpc(const absl::Status& s);

}  // namespace gangway::scheduler
