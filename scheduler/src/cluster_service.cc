#include "cluster_service.h"

#include "gangway/scheduler/client/channel.h"
#include "gangway/v1/cluster.grpc.pb.h"

#include "event_stream.h"
#include "validate.h"

namespace gangway::scheduler {
namespace {

class ClusterService final : public v1::Cluster::CallbackService {
 public:
  ClusterService(ClusterManager& manager, const Authorizer& authz, const Limits& limits,
                 std::function<void()> kick)
      : manager_(manager), authz_(authz), limits_(limits), kick_(std::move(kick)) {}

  grpc::ServerUnaryReactor* RegisterNode(grpc::CallbackServerContext* ctx,
                                         const v1::RegisterNodeRequest* req,
                                         v1::RegisterNodeResponse* resp) override {
    const CallCredentials caller = callerOf(ctx);
    absl::Status s = authz_.check(Rpc::kRegisterNode, caller);
    if (s.ok()) {
      auto r = manager_.registerNode(*req, absl::Now(), caller.session);
      if (r.ok()) *resp = *r;
      s = r.status();
    }
    return done(ctx, s);
  }
  grpc::ServerWriteReactor<v1::NodeEvent>* WatchNode(grpc::CallbackServerContext* ctx,
                                                     const v1::WatchNodeRequest* req) override {
    const std::string& node = req->node_id();  // the lambdas below keep copies
    const CallCredentials caller = callerOf(ctx);
    auto* reactor = new EventStreamReactor<v1::NodeEvent>(
        [this, node](uint64_t handle, bool lost) {
          manager_.unwatchNode(node, handle, lost, absl::Now());
          kick_();
        },
        [](const v1::NodeEvent&) { return false; }, limits_.max_stream_events,
        limits_.max_stream_bytes);
    reactor->start(authz_.check(Rpc::kWatchNode, caller), [this, node, session = caller.session](
                                                              ClusterManager::NodeSink sink,
                                                              ClusterManager::NodeClose close) {
      return manager_.watchNode(node, std::move(sink), absl::Now(), std::move(close), session);
    });
    return reactor;
  }
  grpc::ServerUnaryReactor* NodeHeartbeat(grpc::CallbackServerContext* ctx,
                                          const v1::NodeHeartbeatRequest* req,
                                          v1::NodeHeartbeatResponse* /*resp*/) override {
    const CallCredentials caller = callerOf(ctx);
    absl::Status s = authz_.check(Rpc::kNodeHeartbeat, caller);
    if (s.ok()) s = manager_.nodeHeartbeat(req->node_id(), absl::Now(), caller.session);
    return done(ctx, s, /*kick=*/false);
  }
  grpc::ServerUnaryReactor* ReportExit(grpc::CallbackServerContext* ctx,
                                       const v1::ReportExitRequest* req,
                                       v1::ReportExitResponse* /*resp*/) override {
    const CallCredentials caller = callerOf(ctx);
    absl::Status s = checkSize(*req, limits_.max_control_request_bytes, "exit report");
    if (s.ok()) s = authz_.check(Rpc::kReportExit, caller);
    if (s.ok()) s = manager_.reportExit(*req, absl::Now(), caller.session);
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* ctx, const v1::SubmitRequest* req,
                                   v1::SubmitResponse* resp) override {
    absl::Status s = authz_.check(Rpc::kSubmit, callerOf(ctx));
    if (s.ok()) {
      auto r = manager_.submit(req->spec(), absl::Now());
      if (r.ok()) *resp = *r;
      s = r.status();
    }
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* req,
                                     v1::ListJobsResponse* resp) override {
    const CallCredentials caller = callerOf(ctx);
    absl::Status s = authz_.check(Rpc::kListJobs, caller);
    if (s.ok()) {
      // An operator sees every job; a job's token shows that job alone.
      *resp = manager_.listJobs(req->all(), authz_.admin(caller) ? nullptr : &caller.token);
    }
    return done(ctx, s, false);
  }
  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* ctx,
                                      const v1::ListNodesRequest* /*req*/,
                                      v1::ListNodesResponse* resp) override {
    absl::Status s = authz_.check(Rpc::kListNodes, callerOf(ctx));
    if (s.ok()) *resp = manager_.listNodes();
    return done(ctx, s, false);
  }
  grpc::ServerUnaryReactor* Resize(grpc::CallbackServerContext* ctx, const v1::ResizeRequest* req,
                                   v1::ResizeResponse* /*resp*/) override {
    absl::Status s = authz_.check(Rpc::kResize, callerOf(ctx), req->job_id());
    if (s.ok()) s = manager_.resize(req->job_id(), req->nodes(), absl::Now());
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* ctx, const v1::CancelRequest* req,
                                   v1::CancelResponse* /*resp*/) override {
    absl::Status s = authz_.check(Rpc::kCancel, callerOf(ctx), req->job_id());
    if (s.ok()) s = manager_.cancel(req->job_id(), absl::Now());
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* ctx, const v1::DrainRequest* req,
                                  v1::DrainResponse* /*resp*/) override {
    absl::Status s = authz_.check(Rpc::kDrain, callerOf(ctx));
    if (s.ok()) s = manager_.drain(req->node_id(), req->undo(), absl::Now());
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

  ClusterManager& manager_;
  const Authorizer& authz_;
  const Limits limits_;
  std::function<void()> kick_;
};

}  // namespace

std::unique_ptr<grpc::Service> makeClusterService(ClusterManager& manager, const Authorizer& authz,
                                                  const Limits& limits,
                                                  std::function<void()> kick) {
  return std::make_unique<ClusterService>(manager, authz, limits, std::move(kick));
}

}  // namespace gangway::scheduler
