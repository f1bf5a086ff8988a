// Talking to the control plane: a channel to it, the context of one call (the credential and a
// deadline), status conversion, and gRPC's own log lines in gangway's logging facade.
#pragma once

#include <memory>
#include <string>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/time/time.h>
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include "gangway/scheduler/client/credentials.h"

namespace gangway::scheduler {

struct ChannelOptions {
  std::string address;      // HOST:PORT
  std::string tls_ca_file;  // PEM roots: TLS when set, plaintext otherwise
};

// A channel that reconnects within 0.1 to 1 s (a control plane that restarts is back within a
// second or two) and keeps idle connections alive. InvalidArgument when the CA file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> makeChannel(const ChannelOptions& options);

// The context of one call: `token` as kTokenMetadata unless empty, and a deadline `timeout` from
// now unless infinite.
std::unique_ptr<grpc::ClientContext> callContext(const std::string& token, absl::Duration timeout);
// The same with every credential of `creds` that is not empty (credentials.h).
std::unique_ptr<grpc::ClientContext> callContext(const CallCredentials& creds,
                                                 absl::Duration timeout);

// Converts between gRPC and Abseil status codes (the numeric values are the same canonical codes).
absl::Status fromGrpc(const grpc::Status& s);
grpc::Status toGrpc(const absl::Status& s);

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

}  // namespace gangway::scheduler
