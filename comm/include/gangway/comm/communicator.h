// libgangway_comm: collectives for a fixed group of ranks (a "world"), over one backend.
//
//   auto comm = gangway::comm::createFromEnvironment({.backend = "ucx"});   // under gangway run
//   if (!comm.ok()) ...;
//   absl::Status s = (*comm)->allReduce(buf, buf, n, DataType::kFloat32, ReduceOp::kSum);
//
// Every call is collective over the world unless it says otherwise (send/recv). Buffers are in
// the memory kind the communicator was created for (Options::memory) and aligned to their type.
// Out-of-place when `send != recv`, in-place when they are equal, or, as NCCL, when `send` is this
// rank's slice of `recv` (allGather: send == recv + rank * count) or `recv` is this rank's slice
// of `send` (reduceScatter: recv == send + rank * count). A count of 0 is valid and does
// nothing, on every rank (no traffic). Counts, types, operations and roots must agree across ranks.
//
// Completion: host-memory backends (ucx, mpi) return when the operation is complete. The nccl
// backend enqueues on the communicator's CUDA stream; call synchronize() before reading results.
//
// Errors are statuses, never exceptions or aborts: InvalidArgument for a bad argument (checked on
// the calling rank before any traffic), FailedPrecondition for a type, operation or memory kind the
// backend cannot do (see capabilities()), Unavailable when a peer is gone or unreachable, and
// DeadlineExceeded when a peer did not take part within Options::timeout. After an Unavailable or
// DeadlineExceeded the communicator is broken: every later call returns the same error. (The mpi
// backend cannot bound its waits: MPI calls block until the peers arrive, and mpirun usually ends
// the whole job when a rank dies.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/strings/string_view.h>
#include <absl/time/time.h>

#include "gangway/kernels/reduce.h"

namespace gangway::comm {

using kernels::DataType;
using kernels::ReduceOp;

enum class MemoryKind { kHost, kCuda };
const char* memoryKindName(MemoryKind kind);
absl::StatusOr<MemoryKind> parseMemoryKind(absl::string_view name);  // "host", "cuda"

// What a backend can do, asked before any call (never found out from a failing call).
struct Capabilities {
  std::vector<MemoryKind> memory;
  std::vector<DataType> types;
  std::vector<ReduceOp> ops;
  bool supports(MemoryKind kind) const;
  bool supports(DataType type) const;
  bool supports(ReduceOp op) const;
};

// Algorithms of the ucx backend, for all-reduce (other backends ignore this).
enum class Algorithm {
  kAuto,               // by message size and world size; see ucx/README.md for the switch points
  kRecursiveDoubling,  // latency-bound: log2(n) exchanges of the whole vector
  kRabenseifner,       // recursive-halving reduce-scatter + recursive-doubling all-gather
  kRing,               // pipelined ring: reduce-scatter then all-gather, n-1 steps each
};
const char* algorithmName(Algorithm a);
absl::StatusOr<Algorithm> parseAlgorithm(absl::string_view name);  // auto, rd, rabenseifner, ring

struct Options {
  std::string backend = "ucx";  // ucx | mpi | nccl
  MemoryKind memory = MemoryKind::kHost;
  // Longest a rank waits for a peer inside one call before the call fails with DeadlineExceeded.
  absl::Duration timeout = absl::Seconds(60);
  Algorithm algorithm = Algorithm::kAuto;
  int cuda_device = -1;  // nccl: the device to use; -1 picks LOCAL_RANK modulo the device count
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* backend() const = 0;
  virtual const Capabilities& capabilities() const = 0;

  // recv[i] = op over ranks of send[i], for i < count, on every rank.
  virtual absl::Status allReduce(const void* send, void* recv, std::size_t count, DataType type,
                                 ReduceOp op) = 0;
  // Only `root`'s recv receives the result; other ranks' recv is untouched (may be null).
  virtual absl::Status reduce(const void* send, void* recv, std::size_t count, DataType type,
                              ReduceOp op, int root) = 0;
  // recv (count * size elements) = every rank's send (count elements) in rank order.
  virtual absl::Status allGather(const void* send, void* recv, std::size_t count,
                                 DataType type) = 0;
  // send holds count * size elements; recv (count) = op over ranks of send's slice [rank].
  virtual absl::Status reduceScatter(const void* send, void* recv, std::size_t count, DataType type,
                                     ReduceOp op) = 0;
  // recv = root's send on every rank (send is read on root only).
  virtual absl::Status broadcast(const void* send, void* recv, std::size_t count, DataType type,
                                 int root) = 0;
  // send and recv hold count * size elements; slice j of send goes to rank j, where it lands in
  // slice [this rank] of recv. In-place is not supported (InvalidArgument).
  virtual absl::Status allToAll(const void* send, void* recv, std::size_t count, DataType type) = 0;
  // Point to point; a send must be matched by a recv on `peer` of the same count and type.
  virtual absl::Status send(const void* buf, std::size_t count, DataType type, int peer) = 0;
  virtual absl::Status recv(void* buf, std::size_t count, DataType type, int peer) = 0;
  virtual absl::Status barrier() = 0;
  // Waits for every operation enqueued so far (device backends); a no-op for host backends.
  virtual absl::Status synchronize() = 0;
};

class Bootstrap;

// The backends compiled into this library, in the order `gangway` prefers them.
std::vector<std::string> availableBackends();
// The capabilities of a backend without creating it (NotFound for an unknown or absent backend).
absl::StatusOr<Capabilities> backendCapabilities(absl::string_view backend);

// Creates a communicator over the world `bootstrap` describes. Collective: every rank calls it.
absl::StatusOr<std::unique_ptr<Communicator>> create(const Options& options, Bootstrap& bootstrap);
// The same, with the bootstrap read from the environment (see bootstrap.h).
absl::StatusOr<std::unique_ptr<Communicator>> createFromEnvironment(const Options& options);

}  // namespace gangway::comm
