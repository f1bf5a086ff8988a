// all_gather_perf: nccl-tests' all_gather_perf over a gangway communicator (see README.md).
#include "perf_common.h"

int main(int argc, char** argv) {
  return gangway::bench::perfMain(gangway::bench::Collective::kAllGather, argc, argv);
}
