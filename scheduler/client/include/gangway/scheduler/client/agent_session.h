// An agent's session with the control plane: what `gangway run`'s rendezvous client and the pool
// agent (`gangway agent`) share. It joins (or registers) with backoff until a deadline, trying the
// control plane's replicas in turn; reads the agent's watch stream on one thread and heartbeats
// on another; and when the stream breaks, or a heartbeat finds that the control plane no longer
// knows the agent, it joins again or reports the session lost. A heartbeat's NOT_FOUND ends only
// the stream it was sent under: a reply that arrives after the agent joined again leaves the new
// stream alone.
//
// The protocol itself (which RPCs, what they carry, what an event means) is the client's, given
// as AgentSession::Calls; they run on the session's threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <absl/base/thread_annotations.h>
#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/synchronization/mutex.h>
#include <absl/time/time.h>
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

namespace gangway::scheduler {

struct AgentSessionOptions {
  std::vector<std::string> endpoints;  // HOST:PORT of the control plane; replicas, tried in turn
  std::string tls_ca_file;             // PEM roots: TLS when set
  std::string token;                   // the job token, carried by every call of the session
  std::string join_token;              // the cluster credential (--join-token-file), likewise
  std::string peer = "control plane";  // what messages call it ("rendezvous", "scheduler")
  std::string joined;                  // what a join joins, for logs ("job J"); "": "the PEER"
  std::string log_component = "launcher";
  absl::Duration attempt_timeout = absl::Seconds(10);  // the deadline of one join attempt
  // When the watch stream ends by itself, or a heartbeat is answered NOT_FOUND: join again for up
  // to rejoin_timeout (the agent's work goes on meanwhile). When false, the session is lost then.
  bool rejoin = false;
  absl::Duration rejoin_timeout = absl::Seconds(60);
};

class AgentSession {
 public:
  class Calls {
   public:
    virtual ~Calls() = default;
    // One join attempt through `channel`, a channel to `endpoint`. Returns the heartbeat interval
    // the control plane asks for. UNAVAILABLE, DEADLINE_EXCEEDED and ALREADY_EXISTS (the agent id
    // still bound to a session that is going away) are retried; any other error
    // is the control plane's answer and ends join().
    virtual absl::StatusOr<absl::Duration> join(const std::string& endpoint,
                                                const std::shared_ptr<grpc::Channel>& channel,
                                                grpc::ClientContext& ctx) = 0;
    // Reads one watch stream to its end and returns the status it ended with. Sets
    // `*final_event` when its last event ends the session (a job's end): no stream follows.
    virtual absl::Status watch(const std::shared_ptr<grpc::Channel>& channel,
                               grpc::ClientContext& ctx, bool* final_event) = 0;
    virtual absl::Status heartbeat(const std::shared_ptr<grpc::Channel>& channel,
                                   grpc::ClientContext& ctx) = 0;
    // The session is lost for good: `why` says what broke; `rejoin` is the error of the join
    // that was tried again (OK when none was). Called at most once.
    virtual void lost(const std::string& why, const absl::Status& rejoin) = 0;
  };

  // `calls` must outlive the session.
  AgentSession(AgentSessionOptions options, Calls& calls);
  ~AgentSession();  // cancel(), then waits for the session's threads
  AgentSession(const AgentSession&) = delete;
  AgentSession& operator=(const AgentSession&) = delete;

  // Joins, each endpoint in turn with backoff (50 ms doubling to 2 s), for up to `timeout`.
  // Returns the control plane's own error when it refuses; Unavailable "cannot reach the PEER at
  // ENDPOINTS within TIMEOUT (N attempts): ..." when none answers in time; Cancelled after
  // finish() or cancel(); InvalidArgument when the TLS CA file cannot be read.
  absl::Status join(absl::Duration timeout);
  // After a successful join: starts watching and heartbeating.
  void start();
  // No more heartbeats and no joining again; the watch stream goes on until the control plane
  // ends it (an agent that has left still receives the end of its round).
  void finish();
  // finish(), and ends the watch stream and any join in progress now.
  void cancel();
  bool finished() const;

  // The channel and endpoint of the last successful join (or, for the endpoint, the last one
  // tried). Calls in flight keep the channel they took.
  std::shared_ptr<grpc::Channel> channel() const;
  std::string endpoint() const;
  // A context carrying the session's credentials (its tokens and its session, drawn once per
  // AgentSession and bound to the agent by its first join), with a deadline `timeout` from now.
  std::unique_ptr<grpc::ClientContext> context(absl::Duration timeout) const;
  const std::string& session() const { return session_; }

 private:
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channelTo(const std::string& endpoint);
  void watchLoop();
  void heartbeatLoop();
  void markLost(const std::string& why, const absl::Status& rejoin);
  std::string joined() const;

  const AgentSessionOptions options_;
  Calls& calls_;
  const std::string session_;

  mutable absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
  std::string endpoint_ ABSL_GUARDED_BY(mu_);
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(1);
  std::unique_ptr<grpc::ClientContext> watch_ctx_ ABSL_GUARDED_BY(mu_);
  uint64_t watch_generation_ ABSL_GUARDED_BY(mu_) = 0;  // counts watch streams
  std::thread watch_thread_;
  std::thread heartbeat_thread_;
};

}  // namespace gangway::scheduler
