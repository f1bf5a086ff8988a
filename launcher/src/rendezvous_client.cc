#include "rendezvous_client.h"

#include <deque>

#include <sys/eventfd.h>
#include <unistd.h>

#include <absl/base/thread_annotations.h>
#include <absl/strings/str_cat.h>
#include <absl/synchronization/mutex.h>

#include "gangway/common/fd.h"
#include "gangway/common/status.h"
#include "gangway/scheduler/client/agent_session.h"
#include "gangway/scheduler/client/channel.h"
#include "gangway/v1/rendezvous.grpc.pb.h"

namespace gangway::launcher {
namespace {

constexpr absl::Duration kCallTimeout = absl::Seconds(30);
constexpr absl::Duration kLeaveTimeout = absl::Seconds(5);

RdzvEvent fromWire(const v1::RoundEvent& e) {
  RdzvEvent out;
  if (e.has_assignment()) {
    const v1::Assignment& a = e.assignment();
    out.kind = RdzvEvent::Kind::kRound;
    out.round = RoundAssignment{.round = a.round(),
                                .restart_count = a.restart_count(),
                                .node_rank = a.node_rank(),
                                .num_nodes = a.num_nodes(),
                                .world_size = a.world_size(),
                                .rank_offset = a.rank_offset(),
                                .master_addr = a.master_addr(),
                                .master_port = a.master_port(),
                                .choose_master_port = a.choose_master_port()};
  } else if (e.has_stop()) {
    out.kind = RdzvEvent::Kind::kStop;
    out.reason = e.stop().reason();
  } else {
    out.kind = RdzvEvent::Kind::kEnd;
    out.succeeded = e.job_end().succeeded();
    out.reason = e.job_end().reason();
  }
  return out;
}

class GrpcRendezvousClient final : public RendezvousClient, private scheduler::AgentSession::Calls {
 public:
  explicit GrpcRendezvousClient(RendezvousClientOptions options)
      : options_(std::move(options)),
        session_({.endpoints = {options_.endpoint},
                  .tls_ca_file = options_.tls_ca_file,
                  .token = options_.token,
                  .join_token = options_.join_token,
                  .peer = "rendezvous",
                  .joined = absl::StrCat("job ", options_.job_id),
                  .rejoin = options_.scheduled,
                  .rejoin_timeout = options_.reconnect_timeout},
                 *this) {}

  absl::Status init() {
    event_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!event_fd_.valid()) return GW_ERRNO("eventfd");
    scheduler::installGrpcLogging();
    GW_RETURN_IF_ERROR(session_.join(options_.join_timeout));
    session_.start();
    return absl::OkStatus();
  }

  int eventFd() const override { return event_fd_.get(); }

  std::optional<RdzvEvent> next() override {
    absl::MutexLock lock(&mu_);
    if (queue_.empty()) {
      uint64_t count = 0;
      (void)!::read(event_fd_.get(), &count, sizeof(count));
      if (queue_.empty()) return std::nullopt;
    }
    RdzvEvent e = std::move(queue_.front());
    queue_.pop_front();
    return e;
  }

  absl::Status publishMasterPort(int64_t round, int port) override {
    v1::MasterPortRequest req;
    req.set_job_id(options_.job_id);
    req.set_agent_id(options_.agent_id);
    req.set_round(round);
    req.set_port(port);
    v1::MasterPortResponse resp;
    auto ctx = session_.context(kCallTimeout);
    return scheduler::fromGrpc(stub()->PublishMasterPort(ctx.get(), req, &resp));
  }

  absl::Status report(int64_t round, bool succeeded, const std::string& failure) override {
    v1::WorkerReport req;
    req.set_job_id(options_.job_id);
    req.set_agent_id(options_.agent_id);
    req.set_round(round);
    req.set_succeeded(succeeded);
    req.set_failure(failure);
    v1::WorkerReportResponse resp;
    auto ctx = session_.context(kCallTimeout);
    return scheduler::fromGrpc(stub()->ReportWorkers(ctx.get(), req, &resp));
  }

  absl::Status leave(const std::string& reason) override {
    session_.finish();  // no heartbeats, and no joining again when the stream ends
    v1::LeaveRequest req;
    req.set_job_id(options_.job_id);
    req.set_agent_id(options_.agent_id);
    req.set_reason(reason);
    v1::LeaveResponse resp;
    auto ctx = session_.context(kLeaveTimeout);
    return scheduler::fromGrpc(stub()->Leave(ctx.get(), req, &resp));
  }

  void setCurrentRound(int64_t round, int node_rank) override {
    absl::MutexLock lock(&mu_);
    current_round_ = round;
    current_node_rank_ = node_rank;
  }

 private:
  std::unique_ptr<v1::Rendezvous::Stub> stub() const {
    return v1::Rendezvous::NewStub(session_.channel());
  }

  void push(RdzvEvent e) {
    {
      absl::MutexLock lock(&mu_);
      queue_.push_back(std::move(e));
    }
    const uint64_t one = 1;
    (void)!::write(event_fd_.get(), &one, sizeof(one));
  }

  // AgentSession::Calls.
  absl::StatusOr<absl::Duration> join(const std::string& /*endpoint*/,
                                      const std::shared_ptr<grpc::Channel>& channel,
                                      grpc::ClientContext& ctx) override {
    v1::JoinRequest req;
    req.set_scheduled(options_.scheduled);
    {
      absl::MutexLock lock(&mu_);
      req.set_current_round(current_round_);
      req.set_current_node_rank(current_node_rank_);
    }
    req.set_job_id(options_.job_id);
    req.set_agent_id(options_.agent_id);
    req.set_address(options_.address);
    req.set_local_world_size(options_.local_world_size);
    req.set_min_nodes(options_.min_nodes);
    req.set_max_nodes(options_.max_nodes);
    req.set_max_restarts(options_.max_restarts);
    if (options_.node_rank.has_value()) req.set_node_rank(*options_.node_rank);
    if (options_.rank_hint.has_value()) req.set_rank_hint(*options_.rank_hint);
    req.mutable_topology()->set_hostname(options_.hostname);
    req.mutable_topology()->set_gpu_count(options_.gpu_count);
    req.mutable_topology()->set_network_path(options_.network_path);
    req.mutable_topology()->set_nvlink_domain(options_.nvlink_domain);
    req.set_parallelism(options_.parallelism);
    v1::JoinResponse resp;
    GW_RETURN_IF_ERROR(
        scheduler::fromGrpc(v1::Rendezvous::NewStub(channel)->Join(&ctx, req, &resp)));
    return absl::Milliseconds(resp.heartbeat_interval_ms());
  }

  absl::Status watch(const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext& ctx,
                     bool* final_event) override {
    v1::WatchRequest req;
    req.set_job_id(options_.job_id);
    req.set_agent_id(options_.agent_id);
    auto stub = v1::Rendezvous::NewStub(channel);
    auto reader = stub->Watch(&ctx, req);
    v1::RoundEvent event;
    while (reader->Read(&event)) {
      *final_event = event.has_job_end();
      push(fromWire(event));
    }
    return scheduler::fromGrpc(reader->Finish());
  }

  absl::Status heartbeat(const std::shared_ptr<grpc::Channel>& channel,
                         grpc::ClientContext& ctx) override {
    v1::HeartbeatRequest req;
    req.set_job_id(options_.job_id);
    req.set_agent_id(options_.agent_id);
    v1::HeartbeatResponse resp;
    return scheduler::fromGrpc(v1::Rendezvous::NewStub(channel)->Heartbeat(&ctx, req, &resp));
  }

  void lost(const std::string& why, const absl::Status& /*rejoin*/) override {
    RdzvEvent e;
    e.kind = RdzvEvent::Kind::kLost;
    e.reason = why;
    push(std::move(e));
  }

  const RendezvousClientOptions options_;
  Fd event_fd_;
  absl::Mutex mu_;
  std::deque<RdzvEvent> queue_ ABSL_GUARDED_BY(mu_);
  int64_t current_round_ ABSL_GUARDED_BY(mu_) = 0;
  int current_node_rank_ ABSL_GUARDED_BY(mu_) = 0;
  // Last: its threads call back into the members above, and stop before they are destroyed.
  scheduler::AgentSession session_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RendezvousClient>> RendezvousClient::connect(
    const RendezvousClientOptions& options) {
  auto client = std::make_unique<GrpcRendezvousClient>(options);
  GW_RETURN_IF_ERROR(client->init());
  return client;
}

}  // namespace gangway::launcher
