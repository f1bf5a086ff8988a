// The agent's side of the rendezvous: joins the job (retrying with backoff until join_timeout),
// watches its assignments on a background thread, heartbeats on another, and hands every event
// to the supervisor's event loop through an eventfd.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <absl/base/thread_annotations.h>
#include <absl/status/statusor.h>
#include <absl/synchronization/mutex.h>
#include <absl/time/time.h>

#include "gangway/v1/rendezvous.grpc.pb.h"

#include "process.h"
#include <grpcpp/grpcpp.h>

namespace gangway::launcher {

struct RendezvousClientOptions {
  std::string endpoint;  // HOST:PORT of the control plane
  std::string job_id;
  std::string agent_id;
  std::string address;  // this node's address, as the other nodes reach it
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
  std::string token;
  std::string tls_ca_file;
  absl::Duration join_timeout = absl::Seconds(600);
  // A job of the cluster scheduler (JoinRequest.scheduled): when the control plane goes away
  // (it restarts), join it again for up to reconnect_timeout, telling it the round the workers
  // run, instead of giving up at once.
  bool scheduled = false;
  absl::Duration reconnect_timeout = absl::Seconds(60);
};

// What the event loop receives: a rendezvous event, or the loss of the rendezvous.
struct ClientEvent {
  std::optional<v1::RoundEvent> event;
  std::string lost;  // set when the stream or the heartbeats failed for good
};

class RendezvousClient {
 public:
  // Joins and starts watching. Unavailable (with the endpoint named) when the control plane
  // cannot be reached within join_timeout; the service's own error otherwise.
  static absl::StatusOr<std::unique_ptr<RendezvousClient>> connect(
      const RendezvousClientOptions& options);
  ~RendezvousClient();

  int eventFd() const { return event_fd_.get(); }
  // The next event, if any (drains the eventfd when the queue empties).
  std::optional<ClientEvent> next();

  absl::Status publishMasterPort(int64_t round, int port);
  absl::Status report(int64_t round, bool succeeded, const std::string& failure);
  absl::Status leave(const std::string& reason);
  // The round the workers run now and this node's rank in it (for a join again after a restart
  // of the control plane).
  void setCurrentRound(int64_t round, int node_rank);

 private:
  explicit RendezvousClient(RendezvousClientOptions options) : options_(std::move(options)) {}
  absl::Status join(absl::Time deadline);
  // After the Watch stream broke: joins again until reconnect_timeout (scheduled jobs only).
  bool rejoin(const std::string& why);
  void watchLoop();
  void heartbeatLoop();
  void push(ClientEvent e);
  std::unique_ptr<grpc::ClientContext> context(absl::Duration timeout) const;

  RendezvousClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Rendezvous::Stub> stub_;
  absl::Duration heartbeat_interval_ = absl::Seconds(1);
  Fd event_fd_;

  absl::Mutex mu_;
  std::deque<ClientEvent> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<grpc::ClientContext> watch_ctx_ ABSL_GUARDED_BY(mu_);
  int64_t current_round_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t watch_generation_ ABSL_GUARDED_BY(mu_) = 0;  // counts Watch streams
  int current_node_rank_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread watch_thread_;
  std::thread heartbeat_thread_;
};

// The address of this machine that routes to `endpoint` (HOST:PORT), for other nodes to reach
// this one; "127.0.0.1" style loopback when the endpoint is local.
absl::StatusOr<std::string> routeAddressTo(const std::string& endpoint);

// Splits "HOST:PORT" or "[V6]:PORT"; a missing port gives `default_port`.
absl::StatusOr<std::pair<std::string, int>> splitHostPort(const std::string& endpoint,
                                                          int default_port);

}  // namespace gangway::launcher
