#include "rendezvous_client.h"

#include <arpa/inet.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>

#include "gangway/common/log.h"
#include "gangway/scheduler/client.h"
#include "gangway/scheduler/server.h"

#include <netdb.h>
#include <unistd.h>

namespace gangway::launcher {
namespace {

Logger& log() {
  static Logger& l = logger("launcher");
  return l;
}

}  // namespace

absl::StatusOr<std::pair<std::string, int>> splitHostPort(const std::string& endpoint,
                                                          int default_port) {
  std::string host = endpoint;
  std::string port_text;
  if (!endpoint.empty() && endpoint[0] == '[') {
    const auto close = endpoint.find(']');
    if (close == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("endpoint '", endpoint, "': unclosed '['"));
    }
    host = endpoint.substr(1, close - 1);
    if (close + 1 < endpoint.size()) {
      if (endpoint[close + 1] != ':') {
        return absl::InvalidArgumentError(
            absl::StrCat("endpoint '", endpoint, "': expected [ADDRESS]:PORT"));
      }
      port_text = endpoint.substr(close + 2);
    }
  } else if (const auto colon = endpoint.rfind(':'); colon != std::string::npos) {
    if (endpoint.find(':') != colon) {
      host = endpoint;  // a bare IPv6 address
    } else {
      host = endpoint.substr(0, colon);
      port_text = endpoint.substr(colon + 1);
    }
  }
  int port = default_port;
  if (!port_text.empty() && (!absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535)) {
    return absl::InvalidArgumentError(
        absl::StrCat("endpoint '", endpoint, "': expected HOST:PORT with a port 0 to 65535"));
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("endpoint '", endpoint, "': no host"));
  }
  return std::pair{host, port};
}

absl::StatusOr<std::string> routeAddressTo(const std::string& endpoint) {
  auto hp = splitHostPort(endpoint, 29400);
  if (!hp.ok()) return hp.status();
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  const std::string port = absl::StrCat(hp->second == 0 ? 9 : hp->second);
  if (int rc = ::getaddrinfo(hp->first.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve '", hp->first, "': ", gai_strerror(rc)));
  }
  // A UDP "connect" sends nothing; it only asks the kernel which local address routes there.
  Fd sock(::socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const bool connected = sock.valid() && ::connect(sock.get(), res->ai_addr, res->ai_addrlen) == 0;
  ::freeaddrinfo(res);
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  if (!connected || ::getsockname(sock.get(), reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    return absl::UnavailableError(absl::StrCat("no route to '", hp->first, "'"));
  }
  char text[INET6_ADDRSTRLEN] = {};
  const void* addr =
      local.ss_family == AF_INET6
          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr)
          : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr);
  ::inet_ntop(local.ss_family, addr, text, sizeof(text));
  return std::string(text);
}

absl::StatusOr<std::unique_ptr<RendezvousClient>> RendezvousClient::connect(
    const RendezvousClientOptions& options) {
  auto client = std::unique_ptr<RendezvousClient>(new RendezvousClient(options));
  client->event_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!client->event_fd_.valid()) return absl::InternalError("eventfd failed");
  auto channel =
      scheduler::makeChannel({.address = options.endpoint, .tls_ca_file = options.tls_ca_file});
  if (!channel.ok()) return channel.status();
  client->channel_ = *channel;
  client->stub_ = v1::Rendezvous::NewStub(client->channel_);
  if (absl::Status s = client->join(absl::Now() + options.join_timeout); !s.ok()) return s;
  client->watch_thread_ = std::thread([c = client.get()] { c->watchLoop(); });
  client->heartbeat_thread_ = std::thread([c = client.get()] { c->heartbeatLoop(); });
  return client;
}

RendezvousClient::~RendezvousClient() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (watch_ctx_ != nullptr) watch_ctx_->TryCancel();
  }
  if (watch_thread_.joinable()) watch_thread_.join();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
}

std::unique_ptr<grpc::ClientContext> RendezvousClient::context(absl::Duration timeout) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!options_.token.empty()) ctx->AddMetadata(scheduler::kTokenMetadata, options_.token);
  if (timeout != absl::InfiniteDuration()) {
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
  return ctx;
}

void RendezvousClient::setCurrentRound(int64_t round, int node_rank) {
  absl::MutexLock lock(&mu_);
  current_round_ = round;
  current_node_rank_ = node_rank;
}

absl::Status RendezvousClient::join(absl::Time deadline) {
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
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  req.mutable_topology()->set_hostname(host);
  req.mutable_topology()->set_gpu_count(options_.gpu_count);
  req.mutable_topology()->set_network_path(options_.network_path);
  req.mutable_topology()->set_nvlink_domain(options_.nvlink_domain);
  req.set_parallelism(options_.parallelism);
  absl::Duration backoff = absl::Milliseconds(50);
  for (int attempt = 1;; ++attempt) {
    v1::JoinResponse resp;
    auto ctx = context(absl::Seconds(10));
    const grpc::Status s = stub_->Join(ctx.get(), req, &resp);
    if (s.ok()) {
      heartbeat_interval_ = absl::Milliseconds(std::max<int64_t>(50, resp.heartbeat_interval_ms()));
      return absl::OkStatus();
    }
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
        s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
      return scheduler::fromGrpc(s);  // the service said no: retrying will not help
    }
    if (absl::Now() + backoff > deadline) {
      return absl::UnavailableError(absl::StrCat("cannot reach the rendezvous at ",
                                                 options_.endpoint, " within ",
                                                 absl::FormatDuration(deadline - absl::Now()), " (",
                                                 attempt, " attempts): ", s.error_message()));
    }
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return absl::CancelledError("the agent is stopping");
    }
    if (attempt == 1 || attempt % 10 == 0) {
      log().info("rendezvous at {} not reachable yet ({}); retrying", options_.endpoint,
                 s.error_message());
    }
    absl::SleepFor(backoff);  // backoff between connection attempts, not synchronisation
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

void RendezvousClient::push(ClientEvent e) {
  {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(e));
  }
  const uint64_t one = 1;
  (void)!::write(event_fd_.get(), &one, sizeof(one));
}

std::optional<ClientEvent> RendezvousClient::next() {
  absl::MutexLock lock(&mu_);
  if (queue_.empty()) {
    uint64_t count = 0;
    (void)!::read(event_fd_.get(), &count, sizeof(count));
    if (queue_.empty()) return std::nullopt;
  }
  ClientEvent e = std::move(queue_.front());
  queue_.pop_front();
  return e;
}

void RendezvousClient::watchLoop() {
  v1::WatchRequest req;
  req.set_job_id(options_.job_id);
  req.set_agent_id(options_.agent_id);
  for (;;) {
    grpc::ClientContext* ctx = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      watch_ctx_ = context(absl::InfiniteDuration());
      ctx = watch_ctx_.get();
      ++watch_generation_;
    }
    auto reader = stub_->Watch(ctx, req);
    v1::RoundEvent event;
    bool ended = false;
    while (reader->Read(&event)) {
      ended = event.has_job_end();
      push({.event = event, .lost = ""});
    }
    const grpc::Status s = reader->Finish();
    bool stopping = false;
    {
      absl::MutexLock lock(&mu_);
      stopping = stopping_;
    }
    if (ended || stopping) return;
    const std::string why =
        absl::StrCat("the rendezvous stream from ", options_.endpoint,
                     " ended: ", s.ok() ? "closed by the server" : s.error_message());
    if (!options_.scheduled || !rejoin(why)) {
      push({.event = std::nullopt, .lost = why});
      return;
    }
  }
}

bool RendezvousClient::rejoin(const std::string& why) {
  log().warn("{}; joining again for up to {}", why,
             absl::FormatDuration(options_.reconnect_timeout));
  const absl::Status s = join(absl::Now() + options_.reconnect_timeout);
  if (!s.ok()) {
    log().error("cannot join the job again: {}", std::string(s.message()));
    return false;
  }
  log().info("joined job {} again", options_.job_id);
  return true;
}

void RendezvousClient::heartbeatLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto stop = [this] { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), heartbeat_interval_)) return;
    }
    v1::HeartbeatRequest req;
    req.set_job_id(options_.job_id);
    req.set_agent_id(options_.agent_id);
    v1::HeartbeatResponse resp;
    auto ctx = context(heartbeat_interval_ * 2);
    uint64_t generation = 0;
    {
      absl::MutexLock lock(&mu_);
      generation = watch_generation_;
    }
    const grpc::Status s = stub_->Heartbeat(ctx.get(), req, &resp);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND && options_.scheduled) {
      // The control plane restarted and has not seen this agent yet, or dropped it: the Watch
      // loop joins again (or gives up) once its stream is gone. Only the stream this heartbeat
      // was sent under: a newer one was opened after joining again.
      absl::MutexLock lock(&mu_);
      if (watch_ctx_ != nullptr && watch_generation_ == generation) watch_ctx_->TryCancel();
      continue;
    }
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
      push({.event = std::nullopt,
            .lost = absl::StrCat("the rendezvous dropped this agent: ", s.error_message())});
      return;
    }
    // Other errors (a slow network) are retried; the stream tells when the service is gone.
  }
}

absl::Status RendezvousClient::publishMasterPort(int64_t round, int port) {
  v1::MasterPortRequest req;
  req.set_job_id(options_.job_id);
  req.set_agent_id(options_.agent_id);
  req.set_round(round);
  req.set_port(port);
  v1::MasterPortResponse resp;
  auto ctx = context(absl::Seconds(30));
  return scheduler::fromGrpc(stub_->PublishMasterPort(ctx.get(), req, &resp));
}

absl::Status RendezvousClient::report(int64_t round, bool succeeded, const std::string& failure) {
  v1::WorkerReport req;
  req.set_job_id(options_.job_id);
  req.set_agent_id(options_.agent_id);
  req.set_round(round);
  req.set_succeeded(succeeded);
  req.set_failure(failure);
  v1::WorkerReportResponse resp;
  auto ctx = context(absl::Seconds(30));
  return scheduler::fromGrpc(stub_->ReportWorkers(ctx.get(), req, &resp));
}

absl::Status RendezvousClient::leave(const std::string& reason) {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;  // no heartbeats, and no joining again when the stream ends
  }
  v1::LeaveRequest req;
  req.set_job_id(options_.job_id);
  req.set_agent_id(options_.agent_id);
  req.set_reason(reason);
  v1::LeaveResponse resp;
  auto ctx = context(absl::Seconds(5));
  return scheduler::fromGrpc(stub_->Leave(ctx.get(), req, &resp));
}

}  // namespace gangway::launcher
