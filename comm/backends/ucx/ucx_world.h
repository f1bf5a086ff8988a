// The ucx backend's transport: one UCP context and worker per communicator, an endpoint to every
// peer (addresses exchanged through the Bootstrap), and tagged point-to-point operations tracked
// in an OpSet that is progressed with a deadline and watches for failed peers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/time/time.h>
#include <ucp/api/ucp.h>

#include "gangway/comm/bootstrap.h"

namespace gangway::comm::ucx {

// Operations in flight. Completed receives are reported by cookie (the caller's own numbering).
class OpSet {
 public:
  bool empty() const { return ops_.empty(); }
  std::size_t size() const { return ops_.size(); }

 private:
  friend class UcxWorld;
  struct Op {
    void* request;  // UCX request; null once complete
    int peer;
    bool is_recv;
    uint64_t cookie;
  };
  std::vector<Op> ops_;
  std::vector<uint64_t> done_now_;  // receives that completed at post time
};

class UcxWorld {
 public:
  // Collective over the bootstrap's world. `timeout` bounds every wait for a peer.
  static absl::StatusOr<std::unique_ptr<UcxWorld>> create(Bootstrap& bootstrap,
                                                          absl::Duration timeout);
  ~UcxWorld();
  UcxWorld(const UcxWorld&) = delete;
  UcxWorld& operator=(const UcxWorld&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }

  // Tags: collectives use (sequence, step) with the sender's rank; point to point has its own
  // space. Both sides compute the same tag.
  static uint64_t collectiveTag(uint32_t seq, int src, uint32_t step);
  static uint64_t p2pTag(int src, uint64_t seq);

  absl::Status postSend(OpSet& set, int peer, uint64_t tag, const void* buf, std::size_t bytes);
  absl::Status postRecv(OpSet& set, int peer, uint64_t tag, void* buf, std::size_t bytes,
                        uint64_t cookie);
  // Progresses until at least one operation of `set` completes; appends the cookies of completed
  // receives to `received`. Unavailable when a peer of an operation in `set` failed,
  // DeadlineExceeded after `timeout` without any completion, Aborted on a size mismatch. On error
  // every operation left in `set` is cancelled (no buffer is written afterwards).
  absl::Status waitSome(OpSet& set, std::vector<uint64_t>& received, const char* what);
  // Until `set` is empty.
  absl::Status waitAll(OpSet& set, const char* what);

 private:
  UcxWorld(int rank, int size, absl::Duration timeout)
      : rank_(rank), size_(size), timeout_(timeout) {}
  absl::Status fail(OpSet& set, absl::Status s);
  // Progresses until every request completes or `limit` passes (then releases them to UCX).
  void progressUntilDone(std::vector<void*>& requests, absl::Duration limit);
  void cancelAll(OpSet& set);
  static void onEndpointError(void* arg, ucp_ep_h ep, ucs_status_t status);
  std::string peerFailure(int peer) const;  // why `peer` is considered failed

  // One UCP context and worker. kShm: shared memory only, for peers on this machine; kNet:
  // UCX's own transport choice, for the others (and for everyone when UCX_TLS is set).
  struct Lane {
    ucp_context_h context = nullptr;
    ucp_worker_h worker = nullptr;
    std::string address;
    bool used = false;  // has endpoints (only used lanes are progressed)
  };
  static constexpr int kShm = 0;
  static constexpr int kNet = 1;
  absl::Status openLane(Lane& lane, const char* tls, bool new_protocols);
  void progress();

  const int rank_;
  const int size_;
  const absl::Duration timeout_;
  Lane lanes_[2];
  std::vector<ucp_ep_h> eps_;
  std::vector<int> peer_lane_;
  std::vector<int> failed_;     // per peer: the UCX status of its endpoint error, 0 while healthy
  std::vector<int> local_pid_;  // per peer: its pid when on this machine, 0 otherwise
  absl::Time next_liveness_check_ = absl::InfinitePast();
  bool oversubscribed_ = false;  // more ranks on this machine than CPUs this rank may use
  struct ErrorArg {
    UcxWorld* world;
    int peer;
  };
  std::vector<std::unique_ptr<ErrorArg>> error_args_;
};

}  // namespace gangway::comm::ucx
