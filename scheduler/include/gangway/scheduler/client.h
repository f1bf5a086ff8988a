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

// Routes gRPC's own log lines through gangway's logging facade (component "grpc"): its errors
// become warnings, its info and debug lines debug and trace. Idempotent.
void installGrpcLogging();

// While alive, gRPC's error lines are logged at debug level: for a call whose failure is expected
// and handled (an agent trying to host a rendezvous whose port another process took first).
class QuietGrpcErrors {
 public:
  QuietGrpcErrors();
  ~QuietGrpcErrors();
  QuietGrpcErrors(const QuietGrpcErrors&) = delete;
  QuietGrpcErrors& operator=(const QuietGrpcErrors&) = delete;
};

// Converts between gRPC and Abseil status codes (the numeric values are the same canonical codes).
absl::Status fromGrpc(const grpc::Status& s);
grpc::Status toGrpc(const absl::Status& s);

}  // namespace gangway::scheduler
