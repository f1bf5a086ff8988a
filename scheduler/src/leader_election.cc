// Leader election over an etcd lease: campaign by a create-only transaction, wait on a watch of the
// key, keep the lease alive from a thread. See leader_election.h.
#include "gangway/scheduler/leader_election.h"

#include <chrono>
#include <thread>

#include <absl/base/thread_annotations.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <absl/synchronization/mutex.h>
#include <absl/time/clock.h>
#include <grpcpp/grpcpp.h>

#include "gangway/common/status.h"

#include "etcd/etcd_kv.grpc.pb.h"
#include "etcd_channel.h"

namespace gangway::scheduler {
namespace {

std::chrono::system_clock::time_point toChrono(absl::Time t) { return absl::ToChronoTime(t); }

class EtcdLeaderElection final : public LeaderElection {
 public:
  explicit EtcdLeaderElection(LeaderElectionOptions options) : options_(std::move(options)) {}

  ~EtcdLeaderElection() override { (void)resign(); }

  absl::Status start() {
    if (options_.candidate.empty() || options_.key.empty() || options_.ttl_seconds < 1) {
      return absl::InvalidArgumentError(
          "leader election: candidate and key must be set and ttl_seconds >= 1");
    }
    GW_ASSIGN_OR_RETURN(channel_, etcdChannel(options_.endpoints, "leader election"));
    kv_ = etcdserverpb::KV::NewStub(channel_);
    watch_ = etcdserverpb::Watch::NewStub(channel_);
    lease_ = etcdserverpb::Lease::NewStub(channel_);
    etcdserverpb::LeaseGrantRequest req;
    req.set_ttl(options_.ttl_seconds);
    etcdserverpb::LeaseGrantResponse resp;
    grpc::ClientContext ctx;
    prepare(&ctx, absl::Now() + rpcTimeout());
    const grpc::Status s = lease_->LeaseGrant(&ctx, req, &resp);
    if (!s.ok()) return failed("LeaseGrant", s);
    if (!resp.error().empty()) {
      return absl::UnavailableError(absl::StrCat("leader election: LeaseGrant: ", resp.error()));
    }
    lease_id_ = resp.id();
    {
      absl::MutexLock lock(&mu_);
      renewed_ = absl::Now();
    }
    keepalive_ = std::thread([this] { keepAlive(); });
    return absl::OkStatus();
  }

  absl::Status campaign(absl::Time deadline) override {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) {
        return absl::FailedPreconditionError("leader election: resigned; create a new election");
      }
    }
    while (absl::Now() < deadline) {
      etcdserverpb::TxnRequest txn;
      etcdserverpb::Compare* c = txn.add_compare();
      c->set_key(options_.key);
      c->set_target(etcdserverpb::Compare::CREATE);
      c->set_result(etcdserverpb::Compare::EQUAL);
      c->set_create_revision(0);
      etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
      put->set_key(options_.key);
      put->set_value(options_.candidate);
      put->set_lease(lease_id_);
      txn.add_failure()->mutable_request_range()->set_key(options_.key);
      etcdserverpb::TxnResponse resp;
      grpc::ClientContext ctx;
      prepare(&ctx, std::min(deadline, absl::Now() + rpcTimeout()));
      const grpc::Status s = kv_->Txn(&ctx, txn, &resp);
      if (!s.ok()) return failed("Txn", s);
      if (resp.succeeded()) return becomeLeader();
      const auto& kvs = resp.responses(0).response_range().kvs();
      if (kvs.empty()) continue;                               // deleted in between: try again
      if (kvs[0].lease() == lease_id_) return becomeLeader();  // ours already
      GW_RETURN_IF_ERROR(waitForDelete(kvs[0].mod_revision() + 1, deadline));
    }
    GW_ASSIGN_OR_RETURN(const std::string holder, leader());
    return absl::DeadlineExceededError(
        absl::StrCat("leader election: ", options_.candidate, " did not become leader in time; ",
                     holder.empty() ? std::string("no leader") : "leader is " + holder));
  }

  const std::string& key() const override { return options_.key; }
  int64_t lease() const override { return lease_id_; }

  bool isLeader() const override {
    absl::MutexLock lock(&mu_);
    return leading_ && !stopped_ && absl::Now() < renewed_ + absl::Seconds(options_.ttl_seconds);
  }

  absl::StatusOr<std::string> leader() override {
    etcdserverpb::RangeRequest req;
    req.set_key(options_.key);
    etcdserverpb::RangeResponse resp;
    grpc::ClientContext ctx;
    prepare(&ctx, absl::Now() + rpcTimeout());
    const grpc::Status s = kv_->Range(&ctx, req, &resp);
    if (!s.ok()) return failed("Range", s);
    return resp.kvs().empty() ? std::string() : resp.kvs(0).value();
  }

  absl::Status resign() override {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return absl::OkStatus();
      stopped_ = true;
      leading_ = false;
    }
    if (keepalive_.joinable()) keepalive_.join();
    if (lease_id_ == 0) return absl::OkStatus();
    etcdserverpb::LeaseRevokeRequest req;
    req.set_id(lease_id_);
    etcdserverpb::LeaseRevokeResponse resp;
    grpc::ClientContext ctx;
    prepare(&ctx, absl::Now() + rpcTimeout());
    const grpc::Status s = lease_->LeaseRevoke(&ctx, req, &resp);
    if (!s.ok()) return failed("LeaseRevoke", s);
    return absl::OkStatus();
  }

 private:
  absl::Duration rpcTimeout() const { return absl::Seconds(options_.rpc_timeout_seconds); }

  static void prepare(grpc::ClientContext* ctx, absl::Time deadline) {
    ctx->set_wait_for_ready(true);
    ctx->set_deadline(toChrono(deadline));
  }

  absl::Status failed(const char* what, const grpc::Status& s) const {
    return absl::UnavailableError(absl::StrCat("leader election: etcd at ", options_.endpoints,
                                               ": ", what, " failed: ", s.error_message()));
  }

  absl::Status becomeLeader() {
    absl::MutexLock lock(&mu_);
    leading_ = true;
    return absl::OkStatus();
  }

  // Watches the key from `revision` until a delete event, the deadline, or a broken stream.
  absl::Status waitForDelete(int64_t revision, absl::Time deadline) {
    grpc::ClientContext ctx;
    ctx.set_deadline(toChrono(deadline));
    auto stream = watch_->Watch(&ctx);
    etcdserverpb::WatchRequest req;
    req.mutable_create_request()->set_key(options_.key);
    req.mutable_create_request()->set_start_revision(revision);
    if (!stream->Write(req)) return absl::OkStatus();  // the caller retries or times out
    etcdserverpb::WatchResponse resp;
    while (stream->Read(&resp)) {
      for (const etcdserverpb::Event& e : resp.events()) {
        if (e.type() == etcdserverpb::Event::DELETE) {
          ctx.TryCancel();
          (void)stream->Finish();
          return absl::OkStatus();
        }
      }
      if (resp.canceled()) break;
    }
    ctx.TryCancel();
    (void)stream->Finish();
    return absl::OkStatus();
  }

  // Renews the lease every third of its TTL; records the last renewal for isLeader().
  void keepAlive() {
    const absl::Duration period = absl::Seconds(options_.ttl_seconds) / 3;
    while (true) {
      grpc::ClientContext ctx;
      auto stream = lease_->LeaseKeepAlive(&ctx);
      etcdserverpb::LeaseKeepAliveRequest req;
      req.set_id(lease_id_);
      etcdserverpb::LeaseKeepAliveResponse resp;
      bool broken = false;
      while (!broken) {
        if (!stream->Write(req) || !stream->Read(&resp)) {
          broken = true;
          break;
        }
        absl::MutexLock lock(&mu_);
        if (resp.ttl() <= 0) {  // the lease is gone: so is leadership
          leading_ = false;
        } else {
          renewed_ = absl::Now();
        }
        if (mu_.AwaitWithTimeout(absl::Condition(&stopped_), period)) break;
      }
      ctx.TryCancel();
      (void)stream->Finish();
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      if (broken && mu_.AwaitWithTimeout(absl::Condition(&stopped_), period)) return;
    }
  }

  const LeaderElectionOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
  int64_t lease_id_ = 0;
  std::thread keepalive_;
  mutable absl::Mutex mu_;
  bool leading_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time renewed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<LeaderElection>> createLeaderElection(
    const LeaderElectionOptions& options) {
  auto e = std::make_unique<EtcdLeaderElection>(options);
  GW_RETURN_IF_ERROR(e->start());
  return std::unique_ptr<LeaderElection>(std::move(e));
}

}  // namespace gangway::scheduler
