#include "gangway/scheduler/server.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <limits>
#include <thread>

#include <absl/strings/str_cat.h>
#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include "gangway/common/file.h"
#include "gangway/common/host_port.h"
#include "gangway/common/log.h"
#include "gangway/common/status.h"
#include "gangway/scheduler/authz.h"
#include "gangway/scheduler/client/channel.h"
#include "gangway/v1/rendezvous.grpc.pb.h"
#include "gangway/v1/store.grpc.pb.h"

#include "cluster_service.h"
#include "event_stream.h"
#include "validate.h"

namespace gangway::scheduler {
namespace {

Logger& log() {
  static Logger& l = logger("scheduler");
  return l;
}

// Applies the rendezvous' and the stores' deadlines. Woken early by kick() when a call may have
// created an earlier deadline.
class Timer {
 public:
  explicit Timer(Rendezvous& rdzv) : rdzv_(rdzv), thread_([this] { loop(); }) {}
  ~Timer() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }
  void kick() {
    absl::MutexLock lock(&mu_);
    kicked_ = true;
  }
  // The cluster scheduler's cycles run on this thread too, after the rendezvous' deadlines.
  void setCluster(ClusterManager* cluster) {
    absl::MutexLock lock(&mu_);
    cluster_ = cluster;
    kicked_ = true;
  }

 private:
  void loop() {
    for (;;) {
      const absl::Time now = absl::Now();
      absl::Time next = rdzv_.tick(now);
      for (const auto& store : rdzv_.stores()) next = std::min(next, store->expire(now));
      ClusterManager* cluster = nullptr;
      {
        absl::MutexLock lock(&mu_);
        cluster = cluster_;
      }
      if (cluster != nullptr) next = std::min(next, cluster->tick(now));
      absl::MutexLock lock(&mu_);
      auto woken = [this] { return stop_ || kicked_; };
      mu_.AwaitWithDeadline(absl::Condition(&woken), next);
      if (stop_) return;
      kicked_ = false;
    }
  }

  Rendezvous& rdzv_;
  absl::Mutex mu_;
  ClusterManager* cluster_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool kicked_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class RendezvousService final : public v1::Rendezvous::CallbackService {
 public:
  RendezvousService(Rendezvous& rdzv, const Authorizer& authz, Timer& timer)
      : rdzv_(rdzv), authz_(authz), timer_(timer) {}

  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* ctx, const v1::JoinRequest* req,
                                 v1::JoinResponse* resp) override {
    const CallCredentials caller = callerOf(ctx);
    absl::Status s = authz_.check(Rpc::kJoin, caller, req->job_id());
    if (s.ok()) s = rdzv_.join(*req, caller, absl::Now());
    if (s.ok()) {
      resp->set_heartbeat_interval_ms(
          absl::ToInt64Milliseconds(rdzv_.settings().heartbeat_interval));
      resp->set_heartbeat_timeout_ms(absl::ToInt64Milliseconds(rdzv_.settings().heartbeat_timeout));
    }
    return done(ctx, s);
  }
  grpc::ServerWriteReactor<v1::RoundEvent>* Watch(grpc::CallbackServerContext* ctx,
                                                  const v1::WatchRequest* req) override {
    const std::string& job = req->job_id();  // the lambdas below keep copies
    const std::string& agent = req->agent_id();
    const CallCredentials caller = callerOf(ctx);
    auto* reactor = new EventStreamReactor<v1::RoundEvent>(
        [this, job, agent](uint64_t handle, bool lost) {
          rdzv_.unwatch(job, agent, handle, lost, absl::Now());
          timer_.kick();
        },
        [](const v1::RoundEvent& e) { return e.has_job_end(); },
        rdzv_.settings().limits.max_stream_events, rdzv_.settings().limits.max_stream_bytes);
    reactor->start(authz_.check(Rpc::kWatch, caller, job),
                   [this, job, agent, session = caller.session](Rendezvous::Sink sink,
                                                                Rendezvous::Close close) {
                     return rdzv_.watch(job, agent, std::move(sink), absl::Now(), std::move(close),
                                        session);
                   });
    return reactor;
  }
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::HeartbeatRequest* req,
                                      v1::HeartbeatResponse* resp) override {
    const CallCredentials caller = callerOf(ctx);
    absl::Status s = authz_.check(Rpc::kHeartbeat, caller, req->job_id());
    if (s.ok()) {
      auto round = rdzv_.heartbeat(req->job_id(), req->agent_id(), absl::Now(), caller.session);
      if (round.ok()) resp->set_round(*round);
      s = round.status();
    }
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* ctx, const v1::LeaveRequest* req,
                                  v1::LeaveResponse* /*resp*/) override {
    const CallCredentials caller = callerOf(ctx);
    absl::Status s = checkSize(*req, rdzv_.settings().limits.max_control_request_bytes, "leave");
    if (s.ok()) s = authz_.check(Rpc::kLeave, caller, req->job_id());
    if (s.ok()) {
      s = rdzv_.leave(req->job_id(), req->agent_id(), req->reason(), absl::Now(), caller.session);
    }
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* PublishMasterPort(grpc::CallbackServerContext* ctx,
                                              const v1::MasterPortRequest* req,
                                              v1::MasterPortResponse* /*resp*/) override {
    const CallCredentials caller = callerOf(ctx);
    absl::Status s = authz_.check(Rpc::kPublishMasterPort, caller, req->job_id());
    if (s.ok()) s = rdzv_.publishMasterPort(*req, absl::Now(), caller.session);
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* ReportWorkers(grpc::CallbackServerContext* ctx,
                                          const v1::WorkerReport* req,
                                          v1::WorkerReportResponse* /*resp*/) override {
    const CallCredentials caller = callerOf(ctx);
    absl::Status s =
        checkSize(*req, rdzv_.settings().limits.max_control_request_bytes, "worker report");
    if (s.ok()) s = authz_.check(Rpc::kReportWorkers, caller, req->job_id());
    if (s.ok()) s = rdzv_.report(*req, absl::Now(), caller.session);
    return done(ctx, s);
  }

 private:
  grpc::ServerUnaryReactor* done(grpc::CallbackServerContext* ctx, const absl::Status& s) {
    timer_.kick();  // a join, leave or report may have set an earlier deadline
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(toGrpc(s));
    return reactor;
  }

  Rendezvous& rdzv_;
  const Authorizer& authz_;
  Timer& timer_;
};

// A store call that waits for keys: completed by the KvStore (keys set, deadline) or cancelled
// by the client going away.
class StoreWaitReactor final : public grpc::ServerUnaryReactor {
 public:
  using OnReady = std::function<absl::Status()>;  // runs once the keys exist (fills the response)

  StoreWaitReactor(std::shared_ptr<KvStore> kv, OnReady on_ready)
      : kv_(std::move(kv)), on_ready_(std::move(on_ready)) {}

  // Deleted by whichever of start() and OnDone() ends last: the wait may complete (and the call
  // finish) inside waitAsync.
  void start(const std::vector<std::string>& keys, absl::Time deadline, Timer& timer) {
    auto id = kv_->waitAsync(keys, deadline, [this](absl::Status s) { complete(std::move(s)); });
    {
      absl::MutexLock lock(&mu_);
      id_ = id;
      started_ = true;
    }
    timer.kick();
    release();
  }
  void OnCancel() override {
    KvStore::WaitId id = 0;
    {
      absl::MutexLock lock(&mu_);
      if (!started_) return;
      id = id_;
    }
    kv_->cancelWait(id);  // completes with Cancelled if still pending
  }
  void OnDone() override { release(); }

 private:
  void release() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }
  void complete(absl::Status s) {
    if (s.ok()) s = on_ready_();
    Finish(toGrpc(s));
  }

  std::shared_ptr<KvStore> kv_;  // shared with the job, which may end while this call waits
  OnReady on_ready_;
  std::atomic<int> refs_{2};  // start() and OnDone()
  absl::Mutex mu_;
  KvStore::WaitId id_ ABSL_GUARDED_BY(mu_) = 0;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
};

class StoreService final : public v1::Store::CallbackService {
 public:
  StoreService(Rendezvous& rdzv, const Authorizer& authz, Timer& timer)
      : rdzv_(rdzv), authz_(authz), timer_(timer) {}

  grpc::ServerUnaryReactor* Set(grpc::CallbackServerContext* ctx, const v1::SetRequest* req,
                                v1::SetResponse* /*resp*/) override {
    auto kv = storeOf(ctx, req->job_id());
    absl::Status s = kv.status();
    if (s.ok()) s = (*kv)->set(req->key(), req->value());
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const v1::GetRequest* req,
                                v1::GetResponse* resp) override {
    auto kv = storeOf(ctx, req->job_id());
    if (!kv.ok()) return done(ctx, kv.status());
    auto* reactor = new StoreWaitReactor(*kv, [kv = *kv, key = req->key(), resp]() {
      auto v = kv->get(key);
      if (!v.has_value()) {
        return absl::NotFoundError(absl::StrCat("store key '", key, "' was deleted"));
      }
      resp->set_value(*std::move(v));
      return absl::OkStatus();
    });
    reactor->start({req->key()}, absl::Now() + absl::Milliseconds(req->timeout_ms()), timer_);
    return reactor;
  }
  grpc::ServerUnaryReactor* Add(grpc::CallbackServerContext* ctx, const v1::AddRequest* req,
                                v1::AddResponse* resp) override {
    auto kv = storeOf(ctx, req->job_id());
    absl::Status s = kv.status();
    if (s.ok()) {
      auto v = (*kv)->add(req->key(), req->delta());
      if (v.ok()) resp->set_value(*v);
      s = v.status();
    }
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* CompareSet(grpc::CallbackServerContext* ctx,
                                       const v1::CompareSetRequest* req,
                                       v1::CompareSetResponse* resp) override {
    auto kv = storeOf(ctx, req->job_id());
    absl::Status s = kv.status();
    if (s.ok()) {
      auto v = (*kv)->compareSet(req->key(), req->expected(), req->desired());
      s = v.status();
      if (v.ok()) resp->set_value(*std::move(v));
    }
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* Wait(grpc::CallbackServerContext* ctx, const v1::WaitRequest* req,
                                 v1::WaitResponse* /*resp*/) override {
    auto kv = storeOf(ctx, req->job_id());
    if (!kv.ok()) return done(ctx, kv.status());
    auto* reactor = new StoreWaitReactor(*kv, [] { return absl::OkStatus(); });
    reactor->start({req->keys().begin(), req->keys().end()},
                   absl::Now() + absl::Milliseconds(req->timeout_ms()), timer_);
    return reactor;
  }
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx, const v1::CheckRequest* req,
                                  v1::CheckResponse* resp) override {
    auto kv = storeOf(ctx, req->job_id());
    absl::Status s = kv.status();
    if (s.ok()) {
      auto ready = (*kv)->check({req->keys().begin(), req->keys().end()});
      if (ready.ok()) resp->set_ready(*ready);
      s = ready.status();
    }
    return done(ctx, s);
  }
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx, const v1::DeleteRequest* req,
                                   v1::DeleteResponse* resp) override {
    auto kv = storeOf(ctx, req->job_id());
    if (kv.ok()) resp->set_deleted((*kv)->remove(req->key()));
    return done(ctx, kv.status());
  }
  grpc::ServerUnaryReactor* NumKeys(grpc::CallbackServerContext* ctx, const v1::NumKeysRequest* req,
                                    v1::NumKeysResponse* resp) override {
    auto kv = storeOf(ctx, req->job_id());
    if (kv.ok()) resp->set_num_keys((*kv)->numKeys());
    return done(ctx, kv.status());
  }

 private:
  absl::StatusOr<std::shared_ptr<KvStore>> storeOf(grpc::CallbackServerContext* ctx,
                                                   const std::string& job_id) {
    if (absl::Status s = authz_.check(Rpc::kStore, callerOf(ctx), job_id); !s.ok()) return s;
    return rdzv_.store(job_id);
  }
  static grpc::ServerUnaryReactor* done(grpc::CallbackServerContext* ctx, const absl::Status& s) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(toGrpc(s));
    return reactor;
  }

  Rendezvous& rdzv_;
  const Authorizer& authz_;
  Timer& timer_;
};

class ServerImpl final : public ControlPlaneServer {
 public:
  explicit ServerImpl(const ServerOptions& options)
      : rdzv_(options.rendezvous),
        authz_(rdzv_),
        timer_(rdzv_),
        rdzv_service_(rdzv_, authz_, timer_),
        store_service_(rdzv_, authz_, timer_) {}
  ~ServerImpl() override {
    shutdown();
    if (server_ != nullptr) server_->Wait();
  }

  absl::Status init(const ServerOptions& options) {
    std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
    if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
      if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
        return absl::InvalidArgumentError("TLS needs both a certificate and a key file");
      }
      auto cert = readFile(options.tls_cert_file, "TLS certificate");
      if (!cert.ok()) return absl::InvalidArgumentError(cert.status().message());
      auto key = readFile(options.tls_key_file, "TLS key");
      if (!key.ok()) return absl::InvalidArgumentError(key.status().message());
      grpc::SslServerCredentialsOptions ssl;
      ssl.pem_key_cert_pairs.push_back({*key, *cert});
      creds = grpc::SslServerCredentials(ssl);
    }
    GW_ASSIGN_OR_RETURN(const HostPort listen, parseHostPort(options.listen, "listen address", -1));
    grpc::ServerBuilder builder;
    int bound_port = 0;
    builder.AddListeningPort(options.listen, creds, &bound_port);
    builder.RegisterService(&rdzv_service_);
    builder.RegisterService(&store_service_);
    if (options.cluster_store != nullptr) {
      auto cluster =
          ClusterManager::create(options.cluster, *options.cluster_store, rdzv_, absl::Now());
      if (!cluster.ok()) return cluster.status();
      cluster_ = *std::move(cluster);
      authz_.setCluster(cluster_.get());
      cluster_service_ =
          makeClusterService(*cluster_, authz_, rdzv_.settings().limits, [this] { timer_.kick(); });
      builder.RegisterService(cluster_service_.get());
    }
    // gRPC sets SO_REUSEPORT by default: a second server (another agent trying host mode) would
    // then share the port and split the connections. One control plane per address.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.AddChannelArgument(
        GRPC_ARG_MAX_CONCURRENT_STREAMS,
        static_cast<int>(std::min<std::size_t>(options.rendezvous.limits.max_calls_per_connection,
                                               std::numeric_limits<int>::max())));
    builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<std::size_t>(
        options.rendezvous.limits.max_request_bytes, std::numeric_limits<int>::max())));
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5'000);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || bound_port == 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on '", options.listen, "' (address in use or not local?)"));
    }
    port_ = bound_port;
    if (cluster_ != nullptr) timer_.setCluster(cluster_.get());
    address_ = formatHostPort(listen.host, bound_port);
    log().debug("control plane listening on {}{}", address_,
                options.tls_cert_file.empty() ? "" : " (TLS)");
    return absl::OkStatus();
  }

  const std::string& address() const override { return address_; }
  int port() const override { return port_; }
  Rendezvous& rendezvous() override { return rdzv_; }
  ClusterManager* cluster() override { return cluster_.get(); }
  void wait() override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&stopping_));
  }
  void shutdown() override {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    if (server_ != nullptr) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  }

 private:
  Rendezvous rdzv_;
  std::unique_ptr<ClusterManager> cluster_;  // destroyed after the timer and the server
  Authorizer authz_;
  Timer timer_;
  RendezvousService rdzv_service_;
  StoreService store_service_;
  std::unique_ptr<grpc::Service> cluster_service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  int port_ = 0;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ControlPlaneServer>> ControlPlaneServer::start(
    const ServerOptions& options) {
  installGrpcLogging();
  auto server = std::make_unique<ServerImpl>(options);
  if (absl::Status s = server->init(options); !s.ok()) return s;
  return server;
}

}  // namespace gangway::scheduler
