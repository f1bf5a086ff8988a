// The harness shared by all_reduce_perf, all_gather_perf, reduce_scatter_perf, broadcast_perf,
// reduce_perf, alltoall_perf and sendrecv_perf: nccl-tests' command line, loop and output over a
// gangway communicator built from the environment (gangway run, mpirun, or a world of one).
//
// Exit status: 0 on success; 1 when a check found wrong values, the average bus bandwidth is below
// NCCL_TESTS_MIN_BW, or the communicator or an operation failed; 2 for bad flags.
#pragma once

#include "perf_args.h"

namespace gangway::bench {

int perfMain(Collective collective, int argc, char** argv);

}  // namespace gangway::bench
