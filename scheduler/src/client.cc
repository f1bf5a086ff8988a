#include "gangway/scheduler/client.h"

#include <atomic>
#include <cstring>
#include <fstream>
#include <sstream>

#include <absl/strings/str_cat.h>

#include "gangway/common/log.h"
#include "gangway/scheduler/server.h"
#include "gangway/v1/store.grpc.pb.h"

#include <grpc/support/log.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

namespace gangway::scheduler {

namespace {

std::atomic<int> quiet_errors{0};

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
  static const bool installed = [] {
    gpr_set_log_function(logToFacade);
    return true;
  }();
  (void)installed;
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

absl::StatusOr<std::shared_ptr<grpc::Channel>> makeChannel(const ChannelOptions& options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // A control plane that restarts is back within a second or two: reconnect within about that,
  // not after gRPC's default backoff (up to 120 s).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options.tls_ca_file.empty()) {
    std::ifstream in(options.tls_ca_file);
    if (!in) {
      return absl::InvalidArgumentError(
          absl::StrCat("TLS CA file '", options.tls_ca_file, "': cannot be read"));
    }
    std::stringstream pem;
    pem << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    creds = grpc::SslCredentials(ssl);
  }
  return grpc::CreateCustomChannel(options.address, creds, args);
}

namespace {

class GrpcStore final : public Store {
 public:
  GrpcStore(std::shared_ptr<grpc::Channel> channel, std::string job_id, std::string token)
      : stub_(v1::Store::NewStub(std::move(channel))),
        job_id_(std::move(job_id)),
        token_(std::move(token)) {}

  absl::Status set(const std::string& key, const std::string& value) override {
    v1::SetRequest req;
    req.set_job_id(job_id_);
    req.set_key(key);
    req.set_value(value);
    v1::SetResponse resp;
    auto ctx = context(absl::ZeroDuration());
    return fromGrpc(stub_->Set(ctx.get(), req, &resp));
  }
  absl::StatusOr<std::string> get(const std::string& key, absl::Duration timeout) override {
    v1::GetRequest req;
    req.set_job_id(job_id_);
    req.set_key(key);
    req.set_timeout_ms(absl::ToInt64Milliseconds(timeout));
    v1::GetResponse resp;
    auto ctx = context(timeout);
    if (auto s = fromGrpc(stub_->Get(ctx.get(), req, &resp)); !s.ok()) return s;
    return resp.value();
  }
  absl::StatusOr<int64_t> add(const std::string& key, int64_t delta) override {
    v1::AddRequest req;
    req.set_job_id(job_id_);
    req.set_key(key);
    req.set_delta(delta);
    v1::AddResponse resp;
    auto ctx = context(absl::ZeroDuration());
    if (auto s = fromGrpc(stub_->Add(ctx.get(), req, &resp)); !s.ok()) return s;
    return resp.value();
  }
  absl::StatusOr<std::string> compareSet(const std::string& key, const std::string& expected,
                                         const std::string& desired) override {
    v1::CompareSetRequest req;
    req.set_job_id(job_id_);
    req.set_key(key);
    req.set_expected(expected);
    req.set_desired(desired);
    v1::CompareSetResponse resp;
    auto ctx = context(absl::ZeroDuration());
    if (auto s = fromGrpc(stub_->CompareSet(ctx.get(), req, &resp)); !s.ok()) return s;
    return resp.value();
  }
  absl::Status wait(const std::vector<std::string>& keys, absl::Duration timeout) override {
    v1::WaitRequest req;
    req.set_job_id(job_id_);
    for (const auto& k : keys) req.add_keys(k);
    req.set_timeout_ms(absl::ToInt64Milliseconds(timeout));
    v1::WaitResponse resp;
    auto ctx = context(timeout);
    return fromGrpc(stub_->Wait(ctx.get(), req, &resp));
  }
  absl::StatusOr<bool> check(const std::vector<std::string>& keys) override {
    v1::CheckRequest req;
    req.set_job_id(job_id_);
    for (const auto& k : keys) req.add_keys(k);
    v1::CheckResponse resp;
    auto ctx = context(absl::ZeroDuration());
    if (auto s = fromGrpc(stub_->Check(ctx.get(), req, &resp)); !s.ok()) return s;
    return resp.ready();
  }
  absl::StatusOr<bool> deleteKey(const std::string& key) override {
    v1::DeleteRequest req;
    req.set_job_id(job_id_);
    req.set_key(key);
    v1::DeleteResponse resp;
    auto ctx = context(absl::ZeroDuration());
    if (auto s = fromGrpc(stub_->Delete(ctx.get(), req, &resp)); !s.ok()) return s;
    return resp.deleted();
  }
  absl::StatusOr<int64_t> numKeys() override {
    v1::NumKeysRequest req;
    req.set_job_id(job_id_);
    v1::NumKeysResponse resp;
    auto ctx = context(absl::ZeroDuration());
    if (auto s = fromGrpc(stub_->NumKeys(ctx.get(), req, &resp)); !s.ok()) return s;
    return resp.num_keys();
  }

 private:
  // Every call carries the job's secret and a deadline: the operation's own timeout plus a margin
  // for the network, so that the server answers DEADLINE_EXCEEDED first.
  std::unique_ptr<grpc::ClientContext> context(absl::Duration op_timeout) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!token_.empty()) ctx->AddMetadata(kTokenMetadata, token_);
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + op_timeout + absl::Seconds(30)));
    return ctx;
  }

  std::unique_ptr<v1::Store::Stub> stub_;
  std::string job_id_;
  std::string token_;
};

}  // namespace

std::unique_ptr<Store> makeGrpcStore(std::shared_ptr<grpc::Channel> channel, std::string job_id,
                                     std::string token) {
  return std::make_unique<GrpcStore>(std::move(channel), std::move(job_id), std::move(token));
}

}  // namespace gangway::scheduler
