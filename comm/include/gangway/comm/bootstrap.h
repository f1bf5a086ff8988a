// How the ranks of a new communicator find each other: a world (rank, size) and an all-gather of
// small strings (UCX worker addresses, NCCL unique ids) before any fast transport exists.
//
// From the environment, first match wins:
//   1. GANGWAY_STORE (set by `gangway run` for jobs with a control plane: --standalone or
//      --rdzv-endpoint): the job's store over gRPC, with RANK, WORLD_SIZE, LOCAL_RANK,
//      GANGWAY_JOB_ID, GANGWAY_ROUND, and GANGWAY_STORE_TOKEN / GANGWAY_STORE_TLS_CA when the job
//      has a secret or TLS. Keys live under comm/<round>/<n>/, so a communicator built in a new
//      rendezvous round never reads an address from an old one.
//   2. OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE (mpirun): MPI itself, initialised on first use
//      and finalised at exit.
//   3. No world at all (neither of the above, and WORLD_SIZE unset or 1): a world of one rank.
// Anything else (WORLD_SIZE > 1 without a store) is an error that says what to set.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <absl/time/time.h>

namespace gangway::scheduler {
class Store;
}

namespace gangway::comm {

class Bootstrap {
 public:
  virtual ~Bootstrap() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The rank among those on this machine (for picking a GPU); 0 when unknown.
  virtual int localRank() const = 0;
  // "store", "mpi" or "single".
  virtual const char* kind() const = 0;
  // Every rank's `mine`, in rank order. Collective; each call is a fresh exchange.
  // DeadlineExceeded names the ranks that did not arrive within `timeout`.
  virtual absl::StatusOr<std::vector<std::string>> allGather(const std::string& mine,
                                                             absl::Duration timeout) = 0;
};

// The job's store: ranks publish under `scope` (which must be the same on every rank and fresh for
// each world, e.g. "comm/<round>").
std::unique_ptr<Bootstrap> makeStoreBootstrap(std::unique_ptr<scheduler::Store> store, int rank,
                                              int size, int local_rank, std::string scope);
// A world of one rank.
std::unique_ptr<Bootstrap> makeSingleBootstrap();
// MPI's world (MPI_Init_thread on first use); FailedPrecondition where MPI is not compiled in.
absl::StatusOr<std::unique_ptr<Bootstrap>> makeMpiBootstrap();

// See the file comment. InvalidArgument names the variable that is missing or malformed.
absl::StatusOr<std::unique_ptr<Bootstrap>> bootstrapFromEnvironment();

}  // namespace gangway::comm
