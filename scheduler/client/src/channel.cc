#include "gangway/scheduler/client/channel.h"

#include <atomic>
#include <cstring>

#include <grpc/support/log.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "gangway/common/file.h"
#include "gangway/common/log.h"

namespace gangway::scheduler {
namespace {

std::atomic<int> quiet_errors{0};

// How long one connection attempt may take, and (in gRPC 1.51) the least time between two
// attempts: long enough for a TLS handshake on a loaded machine, short enough to find a restarted
// control plane again within a few seconds.
constexpr int kConnectAttemptMs = 2'000;

void logToFacade(gpr_log_func_args* args) {
  static Logger& log = logger("grpc");
  const char* base = std::strrchr(args->file, '/');
  const char* file = base != nullptr ? base + 1 : args->file;
  switch (args->severity) {
    case GPR_LOG_SEVERITY_ERROR:
      if (quiet_errors.load() > 0) {
        log.debug("{}:{}: {}", file, args->line, args->message);
      } else {
        log.warn("{}:{}: {}", file, args->line, args->message);
      }
      break;
    case GPR_LOG_SEVERITY_INFO:
      log.debug("{}:{}: {}", file, args->line, args->message);
      break;
    default:
      log.trace("{}:{}: {}", file, args->line, args->message);
      break;
  }
}

}  // namespace

void installGrpcLogging() {
  static const bool kInstalled = [] {
    gpr_set_log_function(logToFacade);
    return true;
  }();
  (void)kInstalled;
}

QuietGrpcErrors::QuietGrpcErrors() { ++quiet_errors; }
QuietGrpcErrors::~QuietGrpcErrors() { --quiet_errors; }

absl::Status fromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

grpc::Status toGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

std::unique_ptr<grpc::ClientContext> callContext(const std::string& token, absl::Duration timeout) {
  return callContext(CallCredentials{.token = token}, timeout);
}

std::unique_ptr<grpc::ClientContext> callContext(const CallCredentials& creds,
                                                 absl::Duration timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!creds.token.empty()) ctx->AddMetadata(kTokenMetadata, creds.token);
  if (!creds.join_token.empty()) ctx->AddMetadata(kJoinTokenMetadata, creds.join_token);
  if (!creds.session.empty()) ctx->AddMetadata(kSessionMetadata, creds.session);
  if (timeout != absl::InfiniteDuration()) {
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
  return ctx;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> makeChannel(const ChannelOptions& options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // A control plane that restarts is back within a second or two: reconnect within about that,
  // not after gRPC's default backoff (up to 120 s).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is also how long one connection attempt (TCP, TLS and
  // HTTP/2 handshakes) may take. At 100 ms a TLS handshake on a loaded machine never finished:
  // every attempt was cut short in turn and the agent never reached the control plane.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kConnectAttemptMs);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options.tls_ca_file.empty()) {
    auto pem = readFile(options.tls_ca_file, "TLS CA file");
    if (!pem.ok()) return absl::InvalidArgumentError(pem.status().message());
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *std::move(pem);
    creds = grpc::SslCredentials(ssl);
  }
  return grpc::CreateCustomChannel(options.address, creds, args);
}

}  // namespace gangway::scheduler
