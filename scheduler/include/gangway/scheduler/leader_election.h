// LeaderElection: scheduler replicas sharing one etcd elect a single leader through an etcd lease.
//
// Each replica holds a lease (granted with `ttl_seconds`, kept alive every third of it). To lead,
// a replica creates the election key bound to its lease in a transaction that succeeds only if the
// key does not exist; a follower watches the key and tries again when it is deleted: when the
// leader resigns (its lease is revoked) or dies (its lease expires after the TTL). So at most one
// replica holds the key at any time (no split brain), and a standby takes over within about one
// TTL of the leader's death. A leader that cannot renew its lease before it expires stops being
// leader (isLeader() turns false) and must stop acting as one.
#pragma once

#include <memory>
#include <string>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/time/time.h>

namespace gangway::scheduler {

struct LeaderElectionOptions {
  std::string endpoints;                // etcd client endpoints, host:port[,...]
  std::string key = "/gangway/leader";  // the election key
  std::string candidate;                // this replica's name (the key's value when leading)
  int64_t ttl_seconds = 5;              // lease TTL: how long a dead leader blocks the others
  double rpc_timeout_seconds = 5.0;     // each etcd call's deadline
};

class LeaderElection {
 public:
  virtual ~LeaderElection() = default;
  // Blocks until this replica leads (OK), or `deadline` passes (DeadlineExceeded), or etcd fails.
  virtual absl::Status campaign(absl::Time deadline) = 0;
  // True while this replica holds the key and its lease is alive.
  virtual bool isLeader() const = 0;
  // The current leader's name, or "" if there is none.
  virtual absl::StatusOr<std::string> leader() = 0;
  // Gives up leadership at once (revokes the lease, deleting the key). The destructor does too.
  virtual absl::Status resign() = 0;
  // The election key and this replica's lease, for the leader's state store to fence its writes
  // with (EtcdStateStoreOptions::fence_key, fence_lease).
  virtual const std::string& key() const = 0;
  virtual int64_t lease() const = 0;
};

// Grants the lease and starts keeping it alive. Unavailable when etcd does not answer.
absl::StatusOr<std::unique_ptr<LeaderElection>> createLeaderElection(
    const LeaderElectionOptions& options);

}  // namespace gangway::scheduler
