// Names, capabilities and the backend factory.
#include <algorithm>

#include <absl/strings/ascii.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include "gangway/comm/bootstrap.h"
#include "gangway/comm/communicator.h"

#include "backend.h"

namespace gangway::comm {

const char* memoryKindName(MemoryKind kind) {
  switch (kind) {
    case MemoryKind::kHost:
      return "host";
    case MemoryKind::kCuda:
      return "cuda";
  }
  return "?";
}

absl::StatusOr<MemoryKind> parseMemoryKind(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "host" || n == "cpu") return MemoryKind::kHost;
  if (n == "cuda" || n == "gpu" || n == "device") return MemoryKind::kCuda;
  return absl::InvalidArgumentError(
      absl::StrCat("memory kind '", name, "': expected host or cuda"));
}

const char* algorithmName(Algorithm a) {
  switch (a) {
    case Algorithm::kAuto:
      return "auto";
    case Algorithm::kRecursiveDoubling:
      return "rd";
    case Algorithm::kRabenseifner:
      return "rabenseifner";
    case Algorithm::kRing:
      return "ring";
  }
  return "?";
}

absl::StatusOr<Algorithm> parseAlgorithm(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "auto") return Algorithm::kAuto;
  if (n == "rd" || n == "recursive-doubling") return Algorithm::kRecursiveDoubling;
  if (n == "rabenseifner" || n == "rsag") return Algorithm::kRabenseifner;
  if (n == "ring") return Algorithm::kRing;
  return absl::InvalidArgumentError(
      absl::StrCat("algorithm '", name, "': expected auto, rd, rabenseifner or ring"));
}

bool Capabilities::supports(MemoryKind kind) const {
  return std::find(memory.begin(), memory.end(), kind) != memory.end();
}
bool Capabilities::supports(DataType type) const {
  return std::find(types.begin(), types.end(), type) != types.end();
}
bool Capabilities::supports(ReduceOp op) const {
  return std::find(ops.begin(), ops.end(), op) != ops.end();
}

std::vector<std::string> availableBackends() {
  std::vector<std::string> out;
#ifdef GANGWAY_HAVE_NCCL
  out.emplace_back("nccl");
#endif
  out.emplace_back("ucx");
#ifdef GANGWAY_HAVE_MPI
  out.emplace_back("mpi");
#endif
  return out;
}

absl::StatusOr<Capabilities> backendCapabilities(absl::string_view backend) {
  if (backend == "ucx") return ucxCapabilities();
#ifdef GANGWAY_HAVE_MPI
  if (backend == "mpi") return mpiCapabilities();
#endif
#ifdef GANGWAY_HAVE_NCCL
  if (backend == "nccl") return ncclCapabilities();
#endif
  return absl::NotFoundError(absl::StrCat("backend '", backend, "': this build has ",
                                          absl::StrJoin(availableBackends(), ", ")));
}

absl::StatusOr<std::unique_ptr<Communicator>> create(const Options& options, Bootstrap& bootstrap) {
  auto caps = backendCapabilities(options.backend);
  if (!caps.ok()) return caps.status();
  if (!caps->supports(options.memory)) {
    return absl::FailedPreconditionError(absl::StrCat("backend '", options.backend,
                                                      "' does not support ",
                                                      memoryKindName(options.memory), " memory"));
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeout: expected a positive duration");
  }
  if (options.backend == "ucx") return createUcx(options, bootstrap);
#ifdef GANGWAY_HAVE_MPI
  if (options.backend == "mpi") return createMpi(options, bootstrap);
#endif
#ifdef GANGWAY_HAVE_NCCL
  if (options.backend == "nccl") return createNccl(options, bootstrap);
#endif
  return absl::NotFoundError(absl::StrCat("backend '", options.backend, "'"));
}

absl::StatusOr<std::unique_ptr<Communicator>> createFromEnvironment(const Options& options) {
  auto bootstrap = bootstrapFromEnvironment();
  if (!bootstrap.ok()) return bootstrap.status();
  return create(options, **bootstrap);
}

}  // namespace gangway::comm
