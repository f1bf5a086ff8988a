// What every backend shares: argument checks done once, before any traffic, and the "broken"
// state (after a peer failure every call returns the first failure). Backends derive from
// BackendCommunicator and implement the do*() calls, which see only valid arguments, count > 0
// (except barrier), and a world of more than one rank where the operation needs peers.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "gangway/comm/bootstrap.h"
#include "gangway/comm/communicator.h"

namespace gangway::comm {

class BackendCommunicator : public Communicator {
 public:
  BackendCommunicator(int rank, int size, Capabilities caps)
      : rank_(rank), size_(size), caps_(std::move(caps)) {}

  int rank() const final { return rank_; }
  int size() const final { return size_; }
  const Capabilities& capabilities() const final { return caps_; }

  absl::Status allReduce(const void* send, void* recv, std::size_t count, DataType type,
                         ReduceOp op) final;
  absl::Status reduce(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                      int root) final;
  absl::Status allGather(const void* send, void* recv, std::size_t count, DataType type) final;
  absl::Status reduceScatter(const void* send, void* recv, std::size_t count, DataType type,
                             ReduceOp op) final;
  absl::Status broadcast(const void* send, void* recv, std::size_t count, DataType type,
                         int root) final;
  absl::Status allToAll(const void* send, void* recv, std::size_t count, DataType type) final;
  absl::Status send(const void* buf, std::size_t count, DataType type, int peer) final;
  absl::Status recv(void* buf, std::size_t count, DataType type, int peer) final;
  absl::Status barrier() final;
  absl::Status synchronize() final;

 protected:
  // Byte counts are count * dataTypeSize(type). For a world of one rank the base does the copy
  // itself and never calls these (except doBarrier/doSynchronize).
  virtual absl::Status doAllReduce(const void* send, void* recv, std::size_t count, DataType type,
                                   ReduceOp op) = 0;
  virtual absl::Status doReduce(const void* send, void* recv, std::size_t count, DataType type,
                                ReduceOp op, int root) = 0;
  virtual absl::Status doAllGather(const void* send, void* recv, std::size_t count,
                                   DataType type) = 0;
  virtual absl::Status doReduceScatter(const void* send, void* recv, std::size_t count,
                                       DataType type, ReduceOp op) = 0;
  virtual absl::Status doBroadcast(const void* send, void* recv, std::size_t count, DataType type,
                                   int root) = 0;
  virtual absl::Status doAllToAll(const void* send, void* recv, std::size_t count,
                                  DataType type) = 0;
  virtual absl::Status doSend(const void* buf, std::size_t count, DataType type, int peer) = 0;
  virtual absl::Status doRecv(void* buf, std::size_t count, DataType type, int peer) = 0;
  virtual absl::Status doBarrier() = 0;
  virtual absl::Status doSynchronize() { return absl::OkStatus(); }
  // Copies `bytes` between buffers of the communicator's memory kind (world of one, in-place
  // bookkeeping). Host memcpy by default; the nccl backend overrides it.
  virtual absl::Status copy(void* dst, const void* src, std::size_t bytes);

 private:
  absl::Status check(const char* what, DataType type, const ReduceOp* op) const;
  absl::Status checkRoot(const char* what, int root) const;
  absl::Status checkBuffer(const char* what, const char* name, const void* p, std::size_t count,
                           DataType type) const;
  // Records the first Unavailable / DeadlineExceeded; returns `s`.
  absl::Status remember(absl::Status s);

  const int rank_;
  const int size_;
  const Capabilities caps_;
  absl::Status broken_;  // the first peer failure; OK while healthy
};

// Backend entry points (factory.cc picks one by name).
Capabilities ucxCapabilities();
absl::StatusOr<std::unique_ptr<Communicator>> createUcx(const Options& options,
                                                        Bootstrap& bootstrap);
#ifdef GANGWAY_HAVE_MPI
Capabilities mpiCapabilities();
absl::StatusOr<std::unique_ptr<Communicator>> createMpi(const Options& options,
                                                        Bootstrap& bootstrap);
#endif
#ifdef GANGWAY_HAVE_NCCL
Capabilities ncclCapabilities();
absl::StatusOr<std::unique_ptr<Communicator>> createNccl(const Options& options,
                                                         Bootstrap& bootstrap);
#endif

}  // namespace gangway::comm
