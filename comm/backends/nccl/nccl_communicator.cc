// (in progress)
#include "backend.h"
namespace gangway::comm {
Capabilities ncclCapabilities() { return {}; }
absl::StatusOr<std::unique_ptr<Communicator>> createNccl(const Options&, Bootstrap&) {
  return absl::UnimplementedError("nccl backend: in progress");
}
}  // namespace gangway::comm
