// alltoall_perf: nccl-tests' alltoall_perf over a gangway communicator (see README.md).
#include "perf_common.h"

int main(int argc, char** argv) {
  return gangway::bench::perfMain(gangway::bench::Collective::kAllToAll, argc, argv);
}
