// What each benchmark measures, with nccl-tests' definitions: how a size in bytes becomes element
// counts (rounded so every rank gets an equal, 16-byte aligned share where ranks own slices), the
// bytes algbw counts, the bus-bandwidth factor, and the call itself.
#pragma once

#include <cstddef>

#include <absl/status/status.h>

#include "gangway/comm/communicator.h"

#include "perf_args.h"
#include "perf_memory.h"

namespace gangway::bench {

// Element counts of one call (nccl-tests' getCollByteCount).
struct Counts {
  std::size_t send = 0;   // elements of the send buffer
  std::size_t recv = 0;   // elements of the receive buffer (the output that is checked)
  std::size_t param = 0;  // the count passed to the call, printed in the count column
  // In place, the call reads recv + send_inplace_offset * rank and writes
  // recv + recv_inplace_offset * rank.
  std::size_t send_inplace_offset = 0;
  std::size_t recv_inplace_offset = 0;
};

const char* collectiveName(Collective c);  // all_reduce, all_gather, ...
bool collectiveHasOp(Collective c);
bool collectiveHasRoot(Collective c);

// `count` = size / element size.
Counts collectiveCounts(Collective c, std::size_t count, std::size_t element_size, int ranks);
// The size column: the larger of the send and receive buffers, in bytes.
std::size_t printedBytes(const Counts& counts, std::size_t element_size);
// algbw = algBytes / time; busbw = algbw * busFactor.
double algBytes(Collective c, const Counts& counts, std::size_t element_size, int ranks);
double busFactor(Collective c, int ranks);

struct CallArgs {
  const void* send = nullptr;
  void* recv = nullptr;
  // A buffer as large as the send buffer, free during an in-place call: all-to-all and send/recv
  // have no in-place form, so in place they copy their input there first (as MPI_IN_PLACE does).
  void* scratch = nullptr;
  Counts counts;
  comm::DataType type = comm::DataType::kFloat32;
  comm::ReduceOp op = comm::ReduceOp::kSum;
  int root = 0;
  bool in_place = false;
};

absl::Status runCollective(Collective c, comm::Communicator& comm, Memory& memory,
                           const CallArgs& args);

}  // namespace gangway::bench
