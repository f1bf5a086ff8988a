#include "cluster_service.h"

#include <atomic>
#include <deque>

#include <absl/synchronization/mutex.h>

#include "gangway/scheduler/client.h"
#include "gangway/scheduler/server.h"
#include "gangway/v1/cluster.grpc.pb.h"

namespace gangway::scheduler {
namespace {

std::string tokenOf(const grpc::CallbackServerContext* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(kTokenMetadata);
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

// One pool agent's WatchNode stream: events are queued by the manager (under its lock) and
// written one at a time. Deleted by whichever of start() and OnDone() ends last.
class NodeWatchReactor final : public grpc::ServerWriteReactor<v1::NodeEvent> {
 public:
  NodeWatchReactor(ClusterManager& m, std::function<void()> kick, std::string node)
      : m_(m), kick_(std::move(kick)), node_(std::move(node)) {}

  void start(const absl::Status& authorized) {
    if (!authorized.ok()) {
      finish(toGrpc(authorized));
      release();
      return;
    }
    auto handle = m_.watchNode(
        node_, [this](const v1::NodeEvent& e) { enqueue(e); }, absl::Now());
    if (!handle.ok()) {
      finish(toGrpc(handle.status()));
    } else {
      absl::MutexLock lock(&mu_);
      handle_ = *handle;
    }
    release();
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      lost_ = true;
      finishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
      return;
    }
    writeNextLocked();
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    lost_ = true;
    finishLocked(grpc::Status::CANCELLED);
  }
  void OnDone() override { release(); }

 private:
  void release() {
    if (refs_.fetch_sub(1) != 1) return;
    uint64_t handle;
    bool lost;
    {
      absl::MutexLock lock(&mu_);
      handle = handle_;
      lost = lost_;
    }
    if (handle != 0) m_.unwatchNode(node_, handle, lost, absl::Now());
    kick_();
    delete this;
  }
  void enqueue(const v1::NodeEvent& e) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    queue_.push_back(e);
    if (!writing_) writeNextLocked();
  }
  void writeNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (queue_.empty() || finished_) return;
    current_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    StartWrite(&current_);
  }
  void finish(grpc::Status s) {
    absl::MutexLock lock(&mu_);
    finishLocked(std::move(s));
  }
  void finishLocked(grpc::Status s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(std::move(s));
  }

  ClusterManager& m_;
  std::function<void()> kick_;
  const std::string node_;
  std::atomic<int> refs_{2};
  absl::Mutex mu_;
  uint64_t handle_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<v1::NodeEvent> queue_ ABSL_GUARDED_BY(mu_);
  v1::NodeEvent current_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
};

class ClusterService final : public v1::Cluster::CallbackService {
 public:
  ClusterService(ClusterManager& m, std::function<void()> kick) : m_(m), kick_(std::move(kick)) {}

  grpc::ServerUnaryReactor* RegisterNode(grpc::CallbackServerContext* ctx,
                                         const v1::RegisterNodeRequest* req,
                                         v1::RegisterNodeResponse* resp) override {
    absl::Status s = m_.authorizeAdmin(tokenOf(ctx));
    if (s.ok()) {
      auto r = m_.registerNode(*req, absl::Now());
      if (r.ok()) *resp = *r;
      s = r.status();
    }
    return done(ctx, s);
  }
  grpc::ServerWriteReactor<v1::NodeEvent>* WatchNode(grpc::CallbackServerContext* ctx,
                                                     const v1::WatchNodeRequest* req) override {
    auto* reactor = new NodeWatchReactor(m_, kick_, req->node_id());
    reactor->start(m_.authorizeAdmin(tokenOf(ctx)));
    return reactor;
  }
  grpc::ServerUnaryReactor* NodeHeartbeat(grpc::CallbackServerContext* ctx,
                                          const v1::NodeHeartbeatRequest* req,
                                          v1::NodeHeartbeatResponse* /*resp*/) override {
    absl::Status s = m_.authorizeAdmin(tokenOf(ctx));
    if (s.ok()) s = m_.nodeHeartbeat(req->node_id(), absl::Now());
    return done(ctx, s, /*kick=*/false);
  }
  grpc::ServerUnaryReactor* ReportExit(grpc::CallbackServerContext* ctx,
                                       const v1::ReportExitRequest* req,
                                       v1::ReportExitResponse* /*resp*/) override {
    absl::Status s = m_.authorizeAdmin(tokenOf(ctx));
    if (s.ok()) s = m_.reportExit(*req, absl::Now());
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* ctx, const v1::SubmitRequest* req,
                                   v1::SubmitResponse* resp) override {
    absl::Status s = m_.authorizeAdmin(tokenOf(ctx));
    if (s.ok()) {
      auto r = m_.submit(req->spec(), absl::Now());
      if (r.ok()) *resp = *r;
      s = r.status();
    }
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* req,
                                     v1::ListJobsResponse* resp) override {
    *resp = m_.listJobs(req->all());
    return done(ctx, absl::OkStatus(), false);
  }
  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* ctx,
                                      const v1::ListNodesRequest* /*req*/,
                                      v1::ListNodesResponse* resp) override {
    *resp = m_.listNodes();
    return done(ctx, absl::OkStatus(), false);
  }
  grpc::ServerUnaryReactor* Resize(grpc::CallbackServerContext* ctx, const v1::ResizeRequest* req,
                                   v1::ResizeResponse* /*resp*/) override {
    absl::Status s = m_.authorizeJob(req->job_id(), tokenOf(ctx));
    if (s.ok()) s = m_.resize(req->job_id(), req->nodes(), absl::Now());
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* ctx, const v1::CancelRequest* req,
                                   v1::CancelResponse* /*resp*/) override {
    absl::Status s = m_.authorizeJob(req->job_id(), tokenOf(ctx));
    if (s.ok()) s = m_.cancel(req->job_id(), absl::Now());
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* ctx, const v1::DrainRequest* req,
                                  v1::DrainResponse* /*resp*/) override {
    absl::Status s = m_.authorizeAdmin(tokenOf(ctx));
    if (s.ok()) s = m_.drain(req->node_id(), req->undo(), absl::Now());
    return done(ctx, s);
  }

 private:
  grpc::ServerUnaryReactor* done(grpc::CallbackServerContext* ctx, const absl::Status& s,
                                 bool kick = true) {
    if (kick) kick_();  // a change: run a scheduling cycle now
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(toGrpc(s));
    return reactor;
  }

  ClusterManager& m_;
  std::function<void()> kick_;
};

}  // namespace

std::unique_ptr<grpc::Service> makeClusterService(ClusterManager& manager,
                                                  std::function<void()> kick) {
  return std::make_unique<ClusterService>(manager, std::move(kick));
}

}  // namespace gangway::scheduler
