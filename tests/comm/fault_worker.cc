// A worker for the communicator's failure tests, run under `gangway run`:
//   --die RANK        that rank leaves (exit 0, so the agent does not stop the others) just as a
//                     large all-reduce begins; every other rank must get a clear error from it
//                     within the communicator's timeout, and the same error from the next call.
//   --restart         in the job's first round, rank 1 fails after one all-reduce, so the agent
//                     starts a new round; the new communicators must not reach the old round's
//                     (dead) workers, and the all-reduce must succeed.
// Exits 0 when the behaviour is the expected one, 1 otherwise, printing one line saying why.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <unistd.h>

#include "gangway/comm/communicator.h"

namespace gc = gangway::comm;

namespace {

int envInt(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? 0 : std::atoi(v);
}

bool sumIsRight(gc::Communicator& comm, std::size_t count) {
  std::vector<float> x(count, 1.0F);
  absl::Status s =
      comm.allReduce(x.data(), x.data(), count, gc::DataType::kFloat32, gc::ReduceOp::kSum);
  if (!s.ok()) {
    std::printf("rank %d: allReduce failed: %s\n", comm.rank(), std::string(s.message()).c_str());
    return false;
  }
  for (float v : x) {
    if (v != static_cast<float>(comm.size())) return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  gc::Options options;
  options.timeout = absl::Seconds(5);
  auto comm = gc::createFromEnvironment(options);
  if (!comm.ok()) {
    std::printf("creating the communicator failed: %s\n", comm.status().ToString().c_str());
    return 1;
  }
  gc::Communicator& c = **comm;
  if (mode == "--die" && argc > 2) {
    const int victim = std::atoi(argv[2]);
    if (!sumIsRight(c, 1000)) return 1;
    if (c.rank() == victim) {
      std::fflush(stdout);
      _exit(0);
    }
    std::vector<float> big(8 << 20, 1.0F);
    absl::Status s =
        c.allReduce(big.data(), big.data(), big.size(), gc::DataType::kFloat32, gc::ReduceOp::kSum);
    if (s.ok()) {
      std::printf("rank %d: allReduce succeeded without rank %d\n", c.rank(), victim);
      return 1;
    }
    if (!absl::IsUnavailable(s) && !absl::IsDeadlineExceeded(s)) {
      std::printf("rank %d: unexpected error kind: %s\n", c.rank(), s.ToString().c_str());
      return 1;
    }
    absl::Status again = c.barrier();
    if (again != s) {
      std::printf("rank %d: the next call did not repeat the failure: %s\n", c.rank(),
                  again.ToString().c_str());
      return 1;
    }
    std::printf("rank %d: failed as expected: %s\n", c.rank(), std::string(s.message()).c_str());
    return 0;
  }
  if (mode == "--restart") {
    const int restart = envInt("TORCHELASTIC_RESTART_COUNT");
    if (!sumIsRight(c, 1 << 16)) return 1;
    if (restart == 0 && c.rank() == 1) {
      std::printf("rank 1: failing round 1 on purpose\n");
      return 3;
    }
    if (restart == 0) {
      // The agent stops this round; wait for it without a timer (it sends SIGTERM).
      pause();
      return 1;
    }
    std::printf("rank %d: all-reduce in restart %d is right\n", c.rank(), restart);
    return 0;
  }
  std::printf("usage: comm_fault_worker --die RANK | --restart\n");
  return 2;
}
