#include "gangway/scheduler/client/grpc_store.h"

#include "gangway/common/status.h"
#include "gangway/scheduler/client/channel.h"
#include "gangway/v1/store.grpc.pb.h"

namespace gangway::scheduler {
namespace {

// The margin on top of an operation's own timeout for the network.
constexpr absl::Duration kNetworkMargin = absl::Seconds(30);

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
    GW_RETURN_IF_ERROR(fromGrpc(stub_->Get(ctx.get(), req, &resp)));
    return resp.value();
  }
  absl::StatusOr<int64_t> add(const std::string& key, int64_t delta) override {
    v1::AddRequest req;
    req.set_job_id(job_id_);
    req.set_key(key);
    req.set_delta(delta);
    v1::AddResponse resp;
    auto ctx = context(absl::ZeroDuration());
    GW_RETURN_IF_ERROR(fromGrpc(stub_->Add(ctx.get(), req, &resp)));
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
    GW_RETURN_IF_ERROR(fromGrpc(stub_->CompareSet(ctx.get(), req, &resp)));
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
    GW_RETURN_IF_ERROR(fromGrpc(stub_->Check(ctx.get(), req, &resp)));
    return resp.ready();
  }
  absl::StatusOr<bool> deleteKey(const std::string& key) override {
    v1::DeleteRequest req;
    req.set_job_id(job_id_);
    req.set_key(key);
    v1::DeleteResponse resp;
    auto ctx = context(absl::ZeroDuration());
    GW_RETURN_IF_ERROR(fromGrpc(stub_->Delete(ctx.get(), req, &resp)));
    return resp.deleted();
  }
  absl::StatusOr<int64_t> numKeys() override {
    v1::NumKeysRequest req;
    req.set_job_id(job_id_);
    v1::NumKeysResponse resp;
    auto ctx = context(absl::ZeroDuration());
    GW_RETURN_IF_ERROR(fromGrpc(stub_->NumKeys(ctx.get(), req, &resp)));
    return resp.num_keys();
  }

 private:
  std::unique_ptr<grpc::ClientContext> context(absl::Duration op_timeout) const {
    return callContext(token_, op_timeout + kNetworkMargin);
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
