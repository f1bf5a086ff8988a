#include "perf_collectives.h"

#include <algorithm>

namespace gangway::bench {

namespace {

// nccl-tests' share per rank: count / ranks, rounded down to a multiple of 16 bytes.
std::size_t alignedShare(std::size_t count, std::size_t element_size, int ranks) {
  const std::size_t per16 = std::max<std::size_t>(1, 16 / element_size);
  return (count / static_cast<std::size_t>(ranks)) & ~(per16 - 1);
}

}  // namespace

const char* collectiveName(Collective c) {
  switch (c) {
    case Collective::kAllReduce:
      return "all_reduce";
    case Collective::kAllGather:
      return "all_gather";
    case Collective::kReduceScatter:
      return "reduce_scatter";
    case Collective::kBroadcast:
      return "broadcast";
    case Collective::kReduce:
      return "reduce";
    case Collective::kAllToAll:
      return "alltoall";
    case Collective::kSendRecv:
      return "sendrecv";
  }
  return "?";
}

bool collectiveHasOp(Collective c) {
  // sendrecv prints the op as nccl-tests does, but reduces nothing.
  return c == Collective::kAllReduce || c == Collective::kReduceScatter || c == Collective::kReduce;
}

bool collectiveHasRoot(Collective c) {
  return c == Collective::kBroadcast || c == Collective::kReduce;
}

Counts collectiveCounts(Collective c, std::size_t count, std::size_t element_size, int ranks) {
  Counts k;
  switch (c) {
    case Collective::kAllReduce:
    case Collective::kBroadcast:
    case Collective::kReduce:
    case Collective::kSendRecv:
      k.send = k.recv = k.param = count;
      break;
    case Collective::kAllGather: {
      const std::size_t base = alignedShare(count, element_size, ranks);
      k.send = base;
      k.recv = base * static_cast<std::size_t>(ranks);
      k.param = base;
      k.send_inplace_offset = base;
      break;
    }
    case Collective::kReduceScatter: {
      const std::size_t base = alignedShare(count, element_size, ranks);
      k.send = base * static_cast<std::size_t>(ranks);
      k.recv = base;
      k.param = base;
      k.recv_inplace_offset = base;
      break;
    }
    case Collective::kAllToAll: {
      const std::size_t base = alignedShare(count, element_size, ranks);
      k.send = k.recv = base * static_cast<std::size_t>(ranks);
      k.param = base;
      break;
    }
  }
  return k;
}

std::size_t printedBytes(const Counts& counts, std::size_t element_size) {
  return std::max(counts.send, counts.recv) * element_size;
}

double algBytes(Collective c, const Counts& counts, std::size_t element_size, int ranks) {
  const double param = static_cast<double>(counts.param * element_size);
  switch (c) {
    case Collective::kAllGather:
    case Collective::kReduceScatter:
    case Collective::kAllToAll:
      return param * ranks;  // the whole array
    default:
      return param;
  }
}

double busFactor(Collective c, int ranks) {
  const double n = ranks;
  switch (c) {
    case Collective::kAllReduce:
      return 2.0 * (n - 1) / n;
    case Collective::kAllGather:
    case Collective::kReduceScatter:
    case Collective::kAllToAll:
      return (n - 1) / n;
    case Collective::kBroadcast:
    case Collective::kReduce:
    case Collective::kSendRecv:
      return 1.0;
  }
  return 1.0;
}

absl::Status runCollective(Collective c, comm::Communicator& comm, Memory& memory,
                           const CallArgs& a) {
  const std::size_t n = a.counts.param;
  switch (c) {
    case Collective::kAllReduce:
      return comm.allReduce(a.send, a.recv, n, a.type, a.op);
    case Collective::kAllGather:
      return comm.allGather(a.send, a.recv, n, a.type);
    case Collective::kReduceScatter:
      return comm.reduceScatter(a.send, a.recv, n, a.type, a.op);
    case Collective::kBroadcast:
      return comm.broadcast(a.send, a.recv, n, a.type, a.root);
    case Collective::kReduce:
      return comm.reduce(a.send, a.recv, n, a.type, a.op, a.root);
    case Collective::kAllToAll: {
      const void* send = a.send;
      if (a.in_place) {
        const std::size_t bytes = a.counts.send * kernels::dataTypeSize(a.type);
        if (absl::Status s = memory.copy(a.scratch, a.recv, bytes); !s.ok()) return s;
        send = a.scratch;
      }
      return comm.allToAll(send, a.recv, n, a.type);
    }
    case Collective::kSendRecv: {
      const void* send = a.send;
      if (a.in_place) {
        const std::size_t bytes = n * kernels::dataTypeSize(a.type);
        if (absl::Status s = memory.copy(a.scratch, a.recv, bytes); !s.ok()) return s;
        send = a.scratch;
      }
      const int size = comm.size();
      if (size == 1) return comm.broadcast(send, a.recv, n, a.type, 0);  // to itself
      const int next = (comm.rank() + 1) % size;
      const int prev = (comm.rank() + size - 1) % size;
      // Blocking point to point around a ring: even ranks send first, odd ranks receive first.
      if (comm.rank() % 2 == 0) {
        if (absl::Status s = comm.send(send, n, a.type, next); !s.ok()) return s;
        return comm.recv(a.recv, n, a.type, prev);
      }
      if (absl::Status s = comm.recv(a.recv, n, a.type, prev); !s.ok()) return s;
      return comm.send(send, n, a.type, next);
    }
  }
  return absl::InternalError("unknown collective");
}

}  // namespace gangway::bench
