// Who may call what: the control plane's authorization matrix (scheduler/README.md, "Security"),
// as one table, checked in one place by every service of the server.
//
// Credentials (credentials.h): the admin token, the cluster's join token, a job's token (its
// secret; for a rendezvous job created without one, the join token stands in), a worker's store
// token (derived from the job's secret), and an agent's or node's session. A credential the server
// is not configured with is held by every caller: a scheduler without an admin token (loopback
// only, or --insecure) is open to operators, one without a join token lets anyone create a job.
// Sessions are compared by the state machines (Rendezvous, ClusterManager) under the same lock as
// the change they guard, so that the check cannot go stale; the table says which calls need one.
#pragma once

#include <string>

#include <absl/status/status.h>
#include <grpcpp/server_context.h>

#include "gangway/scheduler/client/credentials.h"
#include "gangway/scheduler/cluster.h"
#include "gangway/scheduler/rendezvous.h"

namespace gangway::scheduler {

enum class Rpc {
  kJoin,
  kWatch,
  kHeartbeat,
  kLeave,
  kReportWorkers,
  kPublishMasterPort,
  kStore,
  kRegisterNode,
  kWatchNode,
  kNodeHeartbeat,
  kReportExit,
  kSubmit,
  kListJobs,
  kListNodes,
  kResize,
  kCancel,
  kDrain,
};

// The caller's credentials, from the call's metadata.
CallCredentials callerOf(const grpc::CallbackServerContext* ctx);

class Authorizer {
 public:
  // `cluster` may be null (no Cluster service). Both must outlive the authorizer.
  explicit Authorizer(const Rendezvous& rendezvous) : rdzv_(rendezvous) {}
  // The Cluster service's state, before the server starts serving.
  void setCluster(const ClusterManager* cluster) { cluster_ = cluster; }

  // OK when `caller` may make call `rpc` on `job_id` (the job named by the request; empty for
  // the calls that name none). PermissionDenied names the credential the call needs; NotFound
  // for an unknown job where the call needs the job's token. A Join that would create its job is
  // checked as creation (the join token).
  absl::Status check(Rpc rpc, const CallCredentials& caller, const std::string& job_id = {}) const;

  // Whether `caller` holds the admin token (or the scheduler has none).
  bool admin(const CallCredentials& caller) const;

 private:
  bool joinToken(const CallCredentials& caller) const;

  const Rendezvous& rdzv_;
  const ClusterManager* cluster_ = nullptr;
};

// Sessions are kMinSessionBytes to kMaxSessionBytes printable bytes: InvalidArgument otherwise.
absl::Status checkSession(const std::string& session, const char* call);

}  // namespace gangway::scheduler
