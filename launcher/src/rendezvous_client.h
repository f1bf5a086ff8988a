// The agent's side of the rendezvous: joins the job (retrying until join_timeout), then watches
// its assignments and heartbeats on the session's threads (gangway/scheduler/client/
// agent_session.h), and hands every event to the supervisor's event loop through an eventfd, as
// plain data: the supervisor sees rounds, stops and the job's end, never the wire format.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <absl/status/statusor.h>
#include <absl/time/time.h>

namespace gangway::launcher {

struct RendezvousClientOptions {
  std::string endpoint;  // HOST:PORT of the control plane
  std::string job_id;
  std::string agent_id;
  std::string address;  // this node's address, as the other nodes reach it
  std::string hostname;
  int local_world_size = 1;
  int min_nodes = 1;
  int max_nodes = 1;
  int max_restarts = 0;
  std::optional<int> node_rank;  // static rendezvous
  std::optional<int> rank_hint;  // where to rank this node among newcomers (JOB_COMPLETION_INDEX)
  int gpu_count = 0;
  std::string network_path;  // "spine2/leaf7"
  std::string nvlink_domain;
  std::string parallelism;  // "tp=8,pp=4"
  std::string token;        // the job's secret
  std::string join_token;   // the cluster's join token, to create the job at a scheduler
  std::string tls_ca_file;
  absl::Duration join_timeout = absl::Seconds(600);
  // A job of the cluster scheduler (JoinRequest.scheduled): when the control plane goes away
  // (it restarts), join it again for up to reconnect_timeout, telling it the round the workers
  // run, instead of giving up at once.
  bool scheduled = false;
  absl::Duration reconnect_timeout = absl::Seconds(60);
};

// This node's part in one round.
struct RoundAssignment {
  int64_t round = 0;
  int restart_count = 0;  // worker-failure restarts so far
  int node_rank = 0;
  int num_nodes = 1;
  int world_size = 0;   // workers in the round
  int rank_offset = 0;  // global rank of this node's local rank 0
  std::string master_addr;
  int master_port = 0;
  // This node is rank 0 and picks MASTER_PORT (then publishes it).
  bool choose_master_port = false;
};

// What the event loop receives.
struct RdzvEvent {
  enum class Kind {
    kRound,  // a round to run (`round`)
    kStop,   // stop the workers and wait for the next round (`reason`)
    kEnd,    // the job ended (`succeeded`, `reason`)
    kLost,   // the rendezvous is gone for good (`reason`)
  };
  Kind kind = Kind::kLost;
  RoundAssignment round;
  bool succeeded = false;
  std::string reason;
};

class RendezvousClient {
 public:
  // Joins and starts watching. Unavailable (with the endpoint named) when the control plane
  // cannot be reached within join_timeout; the service's own error otherwise.
  static absl::StatusOr<std::unique_ptr<RendezvousClient>> connect(
      const RendezvousClientOptions& options);
  virtual ~RendezvousClient() = default;

  // Readable when events are queued.
  virtual int eventFd() const = 0;
  // The next event, if any (drains the eventfd when the queue empties).
  virtual std::optional<RdzvEvent> next() = 0;

  virtual absl::Status publishMasterPort(int64_t round, int port) = 0;
  virtual absl::Status report(int64_t round, bool succeeded, const std::string& failure) = 0;
  // Leaves the job: no more heartbeats or joining again; events of the round still arrive.
  virtual absl::Status leave(const std::string& reason) = 0;
  // The round the workers run now and this node's rank in it (for a join again after a restart
  // of the control plane).
  virtual void setCurrentRound(int64_t round, int node_rank) = 0;
};

}  // namespace gangway::launcher
