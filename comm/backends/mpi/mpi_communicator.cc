// (in progress)
#include "backend.h"
namespace gangway::comm {
Capabilities mpiCapabilities() { return {}; }
absl::StatusOr<std::unique_ptr<Communicator>> createMpi(const Options&, Bootstrap&) {
  return absl::UnimplementedError("mpi backend: in progress");
}
absl::StatusOr<std::unique_ptr<Bootstrap>> makeMpiBootstrap() {
  return absl::UnimplementedError("mpi bootstrap: in progress");
}
}  // namespace gangway::comm
