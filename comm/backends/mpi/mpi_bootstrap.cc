// makeMpiBootstrap(): the world mpirun started, with MPI itself as the all-gather of strings.
#include <climits>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>

#include "gangway/comm/bootstrap.h"
#include "gangway/common/status.h"

#include "mpi_status.h"

namespace gangway::comm {

namespace {

// Registered with std::atexit by the call that initialised MPI (never when the program did).
void finalizeMpiAtExit() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized != 0 && !mpiFinalized()) MPI_Finalize();
}

absl::Status initMpi() {
  if (mpiFinalized()) {
    return absl::FailedPreconditionError(
        "mpi: MPI has already been finalised in this process and cannot be initialised again");
  }
  int initialized = 0;
  GW_RETURN_IF_ERROR(GW_MPI(MPI_Initialized(&initialized)));
  if (initialized != 0) return absl::OkStatus();  // the program's own MPI_Init; it finalises too
  int provided = MPI_THREAD_SINGLE;
  GW_RETURN_IF_ERROR(GW_MPI(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided)));
  std::atexit(finalizeMpiAtExit);
  if (provided < MPI_THREAD_SERIALIZED) {
    return absl::FailedPreconditionError(
        absl::StrCat("mpi: MPI_Init_thread provided thread level ", provided,
                     " but gangway needs MPI_THREAD_SERIALIZED (calls may come from any thread)"));
  }
  return absl::OkStatus();
}

// Initialises MPI once per process (thread-safe: a function-local static).
absl::Status ensureMpiInitialized() {
  static const absl::Status* const kInitialized = new absl::Status(initMpi());
  if (!kInitialized->ok()) return *kInitialized;
  if (mpiFinalized()) {
    return absl::FailedPreconditionError("mpi: MPI has already been finalised in this process");
  }
  return absl::OkStatus();
}

class MpiBootstrap final : public Bootstrap {
 public:
  MpiBootstrap(int rank, int size, int local_rank)
      : rank_(rank), size_(size), local_rank_(local_rank) {}
  ~MpiBootstrap() override {
    if (comm_ != MPI_COMM_NULL && !mpiFinalized()) MPI_Comm_free(&comm_);
  }
  MpiBootstrap(const MpiBootstrap&) = delete;
  MpiBootstrap& operator=(const MpiBootstrap&) = delete;

  // A private duplicate of MPI_COMM_WORLD, so that these exchanges never match the program's own
  // messages and errors come back as codes. Collective.
  absl::Status init() {
    GW_RETURN_IF_ERROR(GW_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &comm_)));
    return GW_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int localRank() const override { return local_rank_; }
  const char* kind() const override { return "mpi"; }

  // MPI collectives take no timeout, so `timeout` cannot be enforced here: a rank that never
  // arrives blocks the others until mpirun ends the job.
  absl::StatusOr<std::vector<std::string>> allGather(const std::string& mine,
                                                     absl::Duration /*timeout*/) override {
    if (mpiFinalized()) {
      return absl::FailedPreconditionError("mpi bootstrap: MPI has already been finalised");
    }
    if (mine.size() > static_cast<std::size_t>(INT_MAX)) {
      return absl::InvalidArgumentError(absl::StrCat("mpi bootstrap: allGather of ", mine.size(),
                                                     " bytes (at most ", INT_MAX, " per rank)"));
    }
    const int length = static_cast<int>(mine.size());
    std::vector<int> lengths(size_);
    GW_RETURN_IF_ERROR(
        GW_MPI(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm_)));
    std::vector<int> offsets(size_);
    long long total = 0;
    for (int r = 0; r < size_; ++r) {
      if (total > INT_MAX) break;
      offsets[r] = static_cast<int>(total);
      total += lengths[r];
    }
    if (total > INT_MAX) {  // every rank sees the same lengths, so every rank returns here
      return absl::InvalidArgumentError(absl::StrCat(
          "mpi bootstrap: allGather of more than ", INT_MAX, " bytes in all (MPI counts are int)"));
    }
    std::string all(static_cast<std::size_t>(total), '\0');
    GW_RETURN_IF_ERROR(GW_MPI(MPI_Allgatherv(mine.data(), length, MPI_BYTE, all.data(),
                                             lengths.data(), offsets.data(), MPI_BYTE, comm_)));
    std::vector<std::string> out;
    out.reserve(size_);
    for (int r = 0; r < size_; ++r) out.push_back(all.substr(offsets[r], lengths[r]));
    return out;
  }

 private:
  const int rank_;
  const int size_;
  const int local_rank_;
  MPI_Comm comm_ = MPI_COMM_NULL;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Bootstrap>> makeMpiBootstrap() {
  int local_rank = 0;
  if (const char* v = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK"); v != nullptr && *v != '\0') {
    if (!absl::SimpleAtoi(v, &local_rank) || local_rank < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("OMPI_COMM_WORLD_LOCAL_RANK='", v, "': expected an integer >= 0"));
    }
  }
  GW_RETURN_IF_ERROR(ensureMpiInitialized());
  int rank = 0;
  int size = 0;
  GW_RETURN_IF_ERROR(GW_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank)));
  GW_RETURN_IF_ERROR(GW_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size)));
  auto bootstrap = std::make_unique<MpiBootstrap>(rank, size, local_rank);
  GW_RETURN_IF_ERROR(bootstrap->init());
  return std::unique_ptr<Bootstrap>(std::move(bootstrap));
}

}  // namespace gangway::comm
