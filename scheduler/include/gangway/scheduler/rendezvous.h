// The rendezvous state machine: jobs, their agents, rounds and the gang barrier. Transport-free
// and driven by an injected time, so that every timing rule is testable without waiting; the
// gRPC services of the control plane's server (server.h) call it and run its timer.
//
// Rules (see scheduler/README.md):
// - A job is created by its first Join, which fixes --nnodes MIN:MAX and --max-restarts; a later
//   Join that disagrees is refused. Creating a job needs the cluster's join token (when the
//   settings have one); the Join's session is bound to its agent id, and the calls that act for
//   an agent need it. Every request is checked against RendezvousSettings.limits
//   (limits.h) before it changes anything; messages from agents are kept escaped and cut.
// - A round forms when at least MIN agents are present: at once when MAX are, else when the
//   last-call window after reaching MIN expires. Agents beyond MAX wait as standbys.
// - Node ranks are stable: members of the previous round keep their order, newcomers follow in
//   join order. Global ranks are offset by each node's own local world size. When agents report
//   their network location (switch path, NVLink domain) or the job names its parallelism, node
//   ranks follow the topology instead (launcher/topology/placement.h): every round restarts
//   every worker anyway, so a re-ordered rank costs nothing.
// - A lost agent (heartbeats missed, Watch stream closed) or a Leave stops the round's other
//   members at once and forms a new round (after the last call) if at least MIN remain; below MIN
//   the job waits, and fails at join_timeout.
// - A worker failure reported for the current round restarts every member at once (a new round
//   with restart_count + 1) until max_restarts is spent; then the job fails.
// - When every member of a round reports success, the job has succeeded.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <absl/base/thread_annotations.h>
#include <absl/container/flat_hash_map.h>
#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/synchronization/mutex.h>
#include <absl/time/time.h>

#include "gangway/scheduler/client/credentials.h"
#include "gangway/scheduler/kv_store.h"
#include "gangway/scheduler/limits.h"
#include "gangway/v1/rendezvous.pb.h"

namespace gangway::scheduler {

struct RendezvousSettings {
  absl::Duration last_call = absl::Seconds(1);
  absl::Duration join_timeout = absl::Seconds(600);
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration heartbeat_timeout = absl::Seconds(3);
  absl::Duration ended_job_retention = absl::Minutes(10);
  int max_layout_in_assignment = 64;
  Limits limits;
  // The cluster credential (`--join-token-file`): creating a job needs it, and it is the secret
  // of a job created without one of its own. Empty: anyone may create a job (loopback or
  // --insecure).
  std::string join_token;
};

class Rendezvous {
 public:
  // Receives an agent's events. Called with the rendezvous lock held, in order: it must only
  // queue the event (never block, never call back into the Rendezvous).
  using Sink = std::function<void(const v1::RoundEvent&)>;
  // Ends an agent's event stream that another Watch for the same agent replaced. Called with the
  // rendezvous lock held: it must only end the stream, never call back into the Rendezvous.
  using Close = std::function<void(const absl::Status&)>;

  explicit Rendezvous(RendezvousSettings settings) : settings_(std::move(settings)) {}

  const RendezvousSettings& settings() const { return settings_; }

  // `caller.token` is the job's secret: the Join that creates the job sets it (empty: the
  // settings' join_token is its secret, or it has none); it must carry the join token when the
  // settings have one. Later Joins must carry the job's secret. `caller.session` is bound to the
  // agent id by its first Join; a Join with another session is refused with AlreadyExists while
  // the agent's stream is open (the agent id belongs to a live process), and rebinds it otherwise.
  // The calls below that name an agent need its session (PermissionDenied otherwise).
  absl::Status join(const v1::JoinRequest& req, const CallCredentials& caller, absl::Time now);
  absl::Status join(const v1::JoinRequest& req, const std::string& token, absl::Time now) {
    return join(req, CallCredentials{.token = token, .join_token = {}, .session = {}}, now);
  }
  // What callers of a job must show (the authorization matrix, authz.h, decides with it).
  struct Secrets {
    std::string secret;       // the job's own token, or the join token; empty: an open job
    bool own_token = false;   // `secret` is the job's own token (not the join token)
    std::string store_token;  // storeTokenFor(secret, job id)
  };
  // NotFound for an unknown job.
  absl::StatusOr<Secrets> secrets(const std::string& job_id) const;
  // Attaches the agent's event stream; the agent's latest event is delivered at once. Returns a
  // handle for unwatch. An agent has one stream: a stream it had before is ended with `close`
  // (ABORTED), so that a peer that opens stream after stream holds one.
  absl::StatusOr<uint64_t> watch(const std::string& job_id, const std::string& agent_id, Sink sink,
                                 absl::Time now, Close close = nullptr,
                                 const std::string& session = {});
  // The stream `handle` ended. If it is still the agent's stream, its sink is dropped (no event
  // is delivered to it after this returns) and, when `lost`, the agent is removed.
  void unwatch(const std::string& job_id, const std::string& agent_id, uint64_t handle, bool lost,
               absl::Time now);
  // Returns the job's current round. NotFound if the agent is not (or no longer) a member.
  absl::StatusOr<int64_t> heartbeat(const std::string& job_id, const std::string& agent_id,
                                    absl::Time now, const std::string& session = {});
  absl::Status leave(const std::string& job_id, const std::string& agent_id,
                     const std::string& reason, absl::Time now, const std::string& session = {});
  absl::Status report(const v1::WorkerReport& report, absl::Time now,
                      const std::string& session = {});
  // From node rank 0's agent: the round's MASTER_PORT; completes every member's assignment.
  absl::Status publishMasterPort(const v1::MasterPortRequest& req, absl::Time now,
                                 const std::string& session = {});

  // Jobs run by the cluster scheduler ("managed"): the scheduler, not the agents' --nnodes, sets
  // the membership. `members` are the agent ids (the pool agents' node ids) of the job's next
  // round; it forms as soon as all of them have joined, with no last call, and any other agent of
  // the job waits. Creates the job (with `token`) on the first call; a later call with another
  // set is a resize: one new round. Joins to a managed job are not checked against its --nnodes.
  // `restore` (the scheduler restarted; the job was running): the members' agents are expected to
  // join again, and if all of them report the same round with distinct node ranks
  // (JoinRequest.current_round), that round is adopted and their workers go on; otherwise a new
  // round forms.
  absl::Status manage(const std::string& job_id, const std::string& token,
                      const std::vector<std::string>& members, int max_restarts, absl::Time now,
                      bool restore = false);
  // Ends a managed job for the scheduler (cancelled, or evicted to be queued again): every agent
  // gets JobEnd{succeeded=false, reason} and the job is dropped, so that it can be managed afresh.
  void forget(const std::string& job_id, const std::string& reason);

  // Applies every deadline at or before `now`; returns the next deadline.
  absl::Time tick(absl::Time now);

  // The job's key-value store; NotFound before the job's first Join. Shared by the job and the
  // store calls in flight, which may outlive a job that ended and was dropped.
  absl::StatusOr<std::shared_ptr<KvStore>> store(const std::string& job_id);
  // Every job's store, for the timer that expires store waits.
  std::vector<std::shared_ptr<KvStore>> stores();

  // For tests and status pages.
  struct JobView {
    int64_t round = 0;
    int restart_count = 0;
    std::vector<std::string> members;  // by node rank
    int agents = 0;                    // members + standbys + waiting
    bool ended = false;
    bool succeeded = false;
    std::string end_reason;
    bool managed = false;  // run by the cluster scheduler (manage())
  };
  absl::StatusOr<JobView> view(const std::string& job_id) const;

 private:
  struct Agent {
    v1::JoinRequest info;
    std::string session;  // bound by its first Join
    int64_t join_seq = 0;
    absl::Time last_seen;
    Sink sink;
    Close close;
    uint64_t watch_handle = 0;
    v1::RoundEvent last_event;  // replayed when the Watch stream (re)attaches
    bool has_event = false;
  };
  struct Job {
    std::string id;
    std::string token;
    std::string store_token;  // storeTokenFor(token or the join token, id)
    int min_nodes = 1;
    int max_nodes = 1;
    int max_restarts = 0;
    std::string parallelism;           // --parallelism of the first Join
    bool managed = false;              // membership set by the cluster scheduler (manage())
    std::vector<std::string> allowed;  // managed: the next round's members
    bool restoring = false;            // managed, restored: waiting for the members to rejoin
    std::map<std::string, Agent> agents;
    int64_t join_counter = 0;
    int64_t round = 0;
    int restart_count = 0;
    std::vector<std::string> members;                 // current round, by node rank
    std::vector<v1::RoundEvent> pending_assignments;  // by node rank, until the port is known
    std::vector<std::string> succeeded;
    bool round_active = false;  // members are running (not stopped, waiting for the next round)
    bool restart_pending = false;
    absl::Time last_call_deadline = absl::InfiniteFuture();
    absl::Time join_deadline = absl::InfiniteFuture();
    bool ended = false;
    v1::JobEnd end;
    absl::Time ended_at;
    std::shared_ptr<KvStore> store;
  };

  // InvalidArgument naming the first field of `req` past the limits.
  absl::Status checkJoin(const v1::JoinRequest& req) const;
  Job* findLocked(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // NotFound naming the job or the agent; PermissionDenied when `session` is not the agent's.
  absl::StatusOr<std::pair<Job*, Agent*>> findAgentLocked(const std::string& job_id,
                                                          const std::string& agent_id,
                                                          const std::string& session)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::unique_ptr<Job> newJobLocked(const std::string& job_id, const std::string& token) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void sendLocked(Agent& agent, v1::RoundEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void removeAgentLocked(Job& job, const std::string& agent_id, const std::string& reason,
                         absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<std::string> chooseMembersLocked(const Job& job) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The chosen members in topology order, when the job has locations or a parallelism.
  std::vector<std::string> orderByTopology(const Job& job, std::vector<std::string> chosen) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void evaluateLocked(Job& job, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A restored job whose members are all back: adopts their round if they agree on it.
  bool adoptRoundLocked(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void formRoundLocked(Job& job, std::vector<std::string> members)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void endJobLocked(Job& job, bool succeeded, const std::string& reason, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RendezvousSettings settings_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
};

// Compares secrets in time independent of where they differ.
bool constantTimeEquals(const std::string& a, const std::string& b);
// Whether `presented` is the session `bound` to an agent or node (constant time).
bool sessionMatches(const std::string& bound, const std::string& presented);

// "2" or "1:4", as --nnodes is written.
std::string formatNnodes(int min, int max);

// Store keys the rendezvous and the agents agree on.
std::string masterPortKey(int64_t round);
std::string layoutKey(int64_t round);

}  // namespace gangway::scheduler
