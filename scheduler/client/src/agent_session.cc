#include "gangway/scheduler/client/agent_session.h"

#include <algorithm>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include "gangway/common/log.h"
#include "gangway/scheduler/client/channel.h"

namespace gangway::scheduler {
namespace {

constexpr absl::Duration kFirstBackoff = absl::Milliseconds(50);
constexpr absl::Duration kMaxBackoff = absl::Seconds(2);
constexpr absl::Duration kMinHeartbeatInterval = absl::Milliseconds(50);

// ALREADY_EXISTS: the agent's id is still bound to the session of a process that is gone (its
// stream not yet seen closed, or its heartbeats not yet missed); the control plane drops it soon.
bool retryable(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsAlreadyExists(s);
}

}  // namespace

AgentSession::AgentSession(AgentSessionOptions options, Calls& calls)
    : options_(std::move(options)), calls_(calls), session_(randomSecret()) {}

AgentSession::~AgentSession() {
  cancel();
  if (watch_thread_.joinable()) watch_thread_.join();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
}

void AgentSession::finish() {
  absl::MutexLock lock(&mu_);
  finished_ = true;
}

void AgentSession::cancel() {
  absl::MutexLock lock(&mu_);
  finished_ = true;
  if (watch_ctx_ != nullptr) watch_ctx_->TryCancel();
}

bool AgentSession::finished() const {
  absl::MutexLock lock(&mu_);
  return finished_;
}

std::shared_ptr<grpc::Channel> AgentSession::channel() const {
  absl::MutexLock lock(&mu_);
  return channel_;
}

std::string AgentSession::endpoint() const {
  absl::MutexLock lock(&mu_);
  return endpoint_;
}

std::unique_ptr<grpc::ClientContext> AgentSession::context(absl::Duration timeout) const {
  return callContext(
      CallCredentials{
          .token = options_.token, .join_token = options_.join_token, .session = session_},
      timeout);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> AgentSession::channelTo(
    const std::string& endpoint) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<grpc::Channel>& channel = channels_[endpoint];
  if (channel == nullptr) {
    auto made = makeChannel({.address = endpoint, .tls_ca_file = options_.tls_ca_file});
    if (!made.ok()) return made.status();
    channel = *std::move(made);
  }
  return channel;
}

absl::Status AgentSession::join(absl::Duration timeout) {
  if (options_.endpoints.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no address for the ", options_.peer));
  }
  Logger& log = logger(options_.log_component);
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration backoff = kFirstBackoff;
  for (size_t attempt = 1;; ++attempt) {
    const std::string& endpoint = options_.endpoints[(attempt - 1) % options_.endpoints.size()];
    auto channel = channelTo(endpoint);
    if (!channel.ok()) return channel.status();
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return absl::CancelledError("the agent is stopping");
      endpoint_ = endpoint;
    }
    auto ctx = context(options_.attempt_timeout);
    const absl::StatusOr<absl::Duration> interval = calls_.join(endpoint, *channel, *ctx);
    if (interval.ok()) {
      absl::MutexLock lock(&mu_);
      channel_ = *channel;
      heartbeat_interval_ = std::max(kMinHeartbeatInterval, *interval);
      return absl::OkStatus();
    }
    if (!retryable(interval.status())) return interval.status();
    const std::string why(interval.status().message());
    if (absl::Now() + backoff > deadline) {
      return absl::UnavailableError(absl::StrCat(
          "cannot reach the ", options_.peer, " at ", absl::StrJoin(options_.endpoints, ","),
          " within ", absl::FormatDuration(timeout), " (", attempt,
          attempt == 1 ? " attempt" : " attempts", "): ", why));
    }
    if (attempt == 1 || attempt % 10 == 0) {
      log.info("{} at {} not reachable yet ({}); retrying", options_.peer, endpoint, why);
    }
    absl::MutexLock lock(&mu_);
    // Backoff between connection attempts, cut short by cancel(); not synchronisation.
    mu_.AwaitWithTimeout(absl::Condition(&finished_), backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

void AgentSession::start() {
  watch_thread_ = std::thread([this] { watchLoop(); });
  heartbeat_thread_ = std::thread([this] { heartbeatLoop(); });
}

void AgentSession::markLost(const std::string& why, const absl::Status& rejoin) {
  {
    absl::MutexLock lock(&mu_);
    if (lost_ || finished_) return;
    lost_ = true;
  }
  calls_.lost(why, rejoin);
}

std::string AgentSession::joined() const {
  return options_.joined.empty() ? absl::StrCat("the ", options_.peer) : options_.joined;
}

void AgentSession::watchLoop() {
  Logger& log = logger(options_.log_component);
  for (;;) {
    grpc::ClientContext* ctx = nullptr;
    std::shared_ptr<grpc::Channel> channel;
    std::string endpoint;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      watch_ctx_ = context(absl::InfiniteDuration());
      ctx = watch_ctx_.get();
      channel = channel_;
      endpoint = endpoint_;
      ++watch_generation_;
    }
    bool final_event = false;
    const absl::Status s = calls_.watch(channel, *ctx, &final_event);
    if (final_event || finished()) return;
    const std::string why = absl::StrCat("the ", options_.peer, " stream from ", endpoint,
                                         " ended: ", s.ok() ? "closed by the server" : s.message());
    if (!options_.rejoin) {
      markLost(why, absl::OkStatus());
      return;
    }
    log.warn("{}; joining again for up to {}", why, absl::FormatDuration(options_.rejoin_timeout));
    if (const absl::Status again = join(options_.rejoin_timeout); !again.ok()) {
      if (finished()) return;
      log.error("cannot join {} again: {}", joined(), std::string(again.message()));
      markLost(why, again);
      return;
    }
    log.info("joined {} again", joined());
  }
}

void AgentSession::heartbeatLoop() {
  for (;;) {
    absl::Duration interval;
    uint64_t generation = 0;
    std::shared_ptr<grpc::Channel> channel;
    {
      absl::MutexLock lock(&mu_);
      auto done = [this] { return finished_ || lost_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&done), heartbeat_interval_)) return;
      interval = heartbeat_interval_;
      generation = watch_generation_;
      channel = channel_;
    }
    auto ctx = context(interval * 2);
    const absl::Status s = calls_.heartbeat(channel, *ctx);
    // Other errors (a slow network) are retried; the stream tells when the service is gone.
    if (!absl::IsNotFound(s)) continue;
    if (!options_.rejoin) {
      markLost(absl::StrCat("the ", options_.peer, " dropped this agent: ", s.message()),
               absl::OkStatus());
      return;
    }
    // The control plane restarted and has not seen this agent yet, or dropped it: the watch loop
    // joins again once its stream is gone. Only the stream this heartbeat was sent under.
    absl::MutexLock lock(&mu_);
    if (watch_ctx_ != nullptr && watch_generation_ == generation) watch_ctx_->TryCancel();
  }
}

}  // namespace gangway::scheduler
