// The cluster scheduler's state machine: pool nodes, submitted jobs, and the scheduling cycles
// that admit, resize and evict them (the policy of admission.h), with every acknowledged change
// persisted in a StateStore first. Transport-free and driven by an injected time, like the
// Rendezvous: the gRPC service (cluster_service.cc) calls it, and the server's timer calls tick().
//
// A job admitted on nodes is a managed rendezvous job (Rendezvous::manage) whose members are those
// nodes' ids: each node's pool agent receives a Launch, starts `gangway run` with
// --rdzv-conf agent_id=NODE, and the round forms when all of them have joined. A resize is one new
// round; an eviction or a cancel ends the rendezvous job and Releases its nodes.
//
// Persistence (keys in the StateStore):
//   jobs/<id>   a v1::JobRecord: spec, state, nodes, token, submit order, last resize
//   nodes/<id>  a v1::NodeRecord: what the pool agent registered, and whether it is drained
// A call that changes state (submit, cancel, resize, drain, a node's registration) returns only
// after its records are durable; a scheduling cycle commits all of its decisions in one
// transaction before it sends a single Launch or Release. On start, everything is loaded again;
// the nodes get heartbeat_timeout to register again before they count as lost.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <absl/base/thread_annotations.h>
#include <absl/status/statusor.h>
#include <absl/synchronization/mutex.h>
#include <absl/time/time.h>

#include "gangway/scheduler/admission.h"
#include "gangway/scheduler/rendezvous.h"
#include "gangway/scheduler/state_store.h"
#include "gangway/v1/cluster.pb.h"

namespace gangway::scheduler {

struct ClusterOptions {
  // Operator secret: when set, Submit, Drain and ListNodes need it; Resize, Cancel and ListJobs
  // need it or the job's own token; the node calls need it or the join token (the server's
  // authorization matrix, authz.h). Empty: no checks (a private test cluster on loopback).
  std::string admin_token;
  // Queues and their GPU quotas (0: unlimited). "default" always exists.
  std::map<std::string, int64_t> queues;
  PolicyOptions policy;
  absl::Duration node_heartbeat_interval = absl::Seconds(1);
  absl::Duration node_heartbeat_timeout = absl::Seconds(3);
};

class ClusterManager {
 public:
  // Receives a node's orders. Called with the manager's lock held: must only queue the event.
  using NodeSink = std::function<void(const v1::NodeEvent&)>;
  // Ends a node's order stream that another WatchNode for the node replaced (under the lock).
  using NodeClose = std::function<void(const absl::Status&)>;

  // Loads the nodes and jobs from `store` (not owned; must outlive the manager). A record that
  // cannot be parsed is a FailedPrecondition naming its key: never a silent reset.
  static absl::StatusOr<std::unique_ptr<ClusterManager>> create(ClusterOptions options,
                                                                StateStore& store,
                                                                Rendezvous& rendezvous,
                                                                absl::Time now);

  const ClusterOptions& options() const { return options_; }

  // Whether `token` is `job_id`'s own token (authz.h decides who may call what). NotFound for an
  // unknown job.
  absl::StatusOr<bool> holdsJobToken(const std::string& job_id, const std::string& token) const;

  // InvalidArgument names the bad field (min > max, --nproc-per-node 0, an unknown queue, ...);
  // AlreadyExists when a pending or running job has the name.
  absl::StatusOr<v1::SubmitResponse> submit(const v1::JobSpec& spec, absl::Time now);
  absl::Status cancel(const std::string& job_id, absl::Time now);
  // Sets the job's maximum to `nodes` (and its minimum too, if above): shrinks at once, grows as
  // capacity allows, bypassing the anti-thrash interval.
  absl::Status resize(const std::string& job_id, int nodes, absl::Time now);
  absl::Status drain(const std::string& node_id, bool undo, absl::Time now);

  // `session` (credentials.h) is bound to the node id: the node calls below need it. Registering
  // with another session is refused with AlreadyExists while the node's stream is open, and
  // rebinds the node otherwise (its agent restarted).
  absl::StatusOr<v1::RegisterNodeResponse> registerNode(const v1::RegisterNodeRequest& req,
                                                        absl::Time now,
                                                        const std::string& session = {});
  // Attaches the node's order stream: a Launch for its job (if any) and a Release for each job it
  // reported running that is not assigned to it are delivered at once. A node has one stream: the
  // one it had before is ended with `close` (ABORTED).
  absl::StatusOr<uint64_t> watchNode(const std::string& node_id, NodeSink sink, absl::Time now,
                                     NodeClose close = nullptr, const std::string& session = {});
  // The stream `handle` ended; when `lost`, the node is marked lost at once.
  void unwatchNode(const std::string& node_id, uint64_t handle, bool lost, absl::Time now);
  absl::Status nodeHeartbeat(const std::string& node_id, absl::Time now,
                             const std::string& session = {});
  absl::Status reportExit(const v1::ReportExitRequest& req, absl::Time now,
                          const std::string& session = {});

  // Every job, or (`job_token` set) only the jobs whose token it is.
  v1::ListJobsResponse listJobs(bool all, const std::string* job_token = nullptr) const;
  v1::ListNodesResponse listNodes() const;

  // Marks nodes lost after missed heartbeats, records jobs whose rendezvous ended, and runs a
  // scheduling cycle when something changed. Returns when to call again.
  absl::Time tick(absl::Time now);

  // Prometheus text exposition format (version 0.0.4).
  std::string metrics() const;

 private:
  struct Node {
    v1::NodeRecord record;
    std::string session;      // bound by its registration
    bool registered = false;  // since this process started
    bool healthy = true;
    absl::Time last_seen;
    NodeSink sink;
    NodeClose close;
    uint64_t watch_handle = 0;
    std::vector<std::string> reported_running;  // from its last registration
  };
  struct Job {
    v1::JobRecord record;
  };

  ClusterManager(ClusterOptions options, StateStore& store, Rendezvous& rendezvous)
      : options_(std::move(options)), store_(store), rdzv_(rendezvous) {}
  absl::Status load(absl::Time now);

  Job* findLocked(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status persistJobsLocked(const std::vector<const Job*>& jobs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  ClusterState clusterStateLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void cycleLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void releaseNodesLocked(const std::vector<std::string>& nodes, const std::string& job_id,
                          const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void launchLocked(const Job& job, const std::vector<std::string>& nodes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void sendLocked(Node& node, const v1::NodeEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // PermissionDenied unless `session` is the node's.
  static absl::Status checkSessionLocked(const Node& node, const std::string& node_id,
                                         const std::string& session);
  // Ending a job: the record first (returns the nodes it held), then, once it is durable, the
  // Releases and the end of its rendezvous job.
  std::vector<std::string> markEndedLocked(Job& job, v1::JobState state, const std::string& reason,
                                           absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void finishEndLocked(const Job& job, const std::vector<std::string>& nodes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ClusterOptions options_;
  StateStore& store_;
  Rendezvous& rdzv_;
  mutable absl::Mutex mu_;
  std::map<std::string, Node> nodes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Job> jobs_ ABSL_GUARDED_BY(mu_);
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;  // run a cycle at the next tick
  absl::Time last_cycle_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time started_;
  // Metrics.
  int64_t admitted_total_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t resizes_total_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t evictions_total_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t cycles_total_ ABSL_GUARDED_BY(mu_) = 0;
  double admit_wait_seconds_sum_ ABSL_GUARDED_BY(mu_) = 0;
  double cycle_seconds_sum_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int64_t> rounds_seen_ ABSL_GUARDED_BY(mu_);  // job -> last round counted
  int64_t rounds_total_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace gangway::scheduler
