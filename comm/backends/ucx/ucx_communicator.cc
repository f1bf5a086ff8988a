// The ucx backend: gangway's own collective algorithms over UCX tagged messages (host memory).
//
// All-reduce has three algorithms (chosen by size, see pickAllReduce and ucx/README.md):
//   recursive doubling  log2(n) exchanges of the whole vector: fewest messages, for small sizes;
//   Rabenseifner        recursive-halving reduce-scatter + recursive-doubling all-gather;
//   ring                reduce-scatter then all-gather around the ring, each block cut into
//                       segments that are forwarded as soon as they are reduced (pipelined), so
//                       transfers and reductions overlap: bandwidth-optimal for large sizes.
// Worlds that are not a power of two fold the extra ranks into their neighbours first (recursive
// algorithms only). Every rank ends with bit-identical results: each block is reduced in one
// place, and where two ranks reduce the same pair the lower rank's data is the left operand.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include <sys/types.h>

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>

#include "gangway/common/status.h"

#include "backend.h"
#include "ucx/ring.h"
#include "ucx/ucx_world.h"

namespace gangway::comm {

namespace {

using ucx::Blocks;
using ucx::mod;
using ucx::OpSet;
using ucx::RingSchedule;
using ucx::scratch;
using ucx::UcxWorld;

std::size_t envBytes(const char* name, std::size_t fallback) {
  const char* v = std::getenv(name);
  std::size_t out = 0;
  if (v == nullptr || !absl::SimpleAtoi(v, &out) || out == 0) return fallback;
  return out;
}

class UcxCommunicator final : public BackendCommunicator {
 public:
  UcxCommunicator(std::unique_ptr<UcxWorld> world, const Options& options)
      : BackendCommunicator(world->rank(), world->size(), ucxCapabilities()),
        world_(std::move(world)),
        algorithm_(options.algorithm),
        p2p_send_seq_(world_->size(), 0),
        p2p_recv_seq_(world_->size(), 0) {
    // Switch points and segment size: measured with benches/comm on shared memory at 2 ranks
    // (backends/ucx/README.md). Recursive doubling moves log2(n) whole vectors, so it stops
    // earlier in larger worlds. The variables exist for tuning on other machines and fabrics.
    rd_max_bytes_ = envBytes("GANGWAY_UCX_RD_MAX_BYTES", size() <= 2 ? 128 << 10 : 32 << 10);
    rabenseifner_max_bytes_ = envBytes("GANGWAY_UCX_RABENSEIFNER_MAX_BYTES", 512 << 10);
    segment_bytes_ = envBytes("GANGWAY_UCX_SEGMENT_BYTES", 256 << 10);
  }

  const char* backend() const override { return "ucx"; }

 protected:
  absl::Status doAllReduce(const void* send, void* recv, std::size_t count, DataType type,
                           ReduceOp op) override {
    switch (pickAllReduce(count * kernels::dataTypeSize(type))) {
      case Algorithm::kRecursiveDoubling:
        return recursiveDoubling(send, recv, count, type, op);
      case Algorithm::kRabenseifner:
        return rabenseifner(send, recv, count, type, op);
      default:
        return ringAllReduce(send, recv, count, type, op);
    }
  }

  absl::Status doReduceScatter(const void* send, void* recv, std::size_t count, DataType type,
                               ReduceOp op) override {
    RingSchedule r = ringOf(type, op);
    for (int i = 0; i < size(); ++i) r.block_offset[i] = std::size_t(i) * count;
    std::fill(r.block_count.begin(), r.block_count.end(), count);
    r.shift = 1;
    r.reduce_steps = size() - 1;
    r.gather_steps = 0;
    r.input = static_cast<const std::byte*>(send);
    r.output = static_cast<std::byte*>(recv);
    r.final_block_to_output = true;
    return runRing(r, "reduceScatter");
  }

  absl::Status doAllGather(const void* send, void* recv, std::size_t count,
                           DataType type) override {
    const std::size_t es = kernels::dataTypeSize(type);
    auto* out = static_cast<std::byte*>(recv);
    std::byte* mine = out + std::size_t(rank()) * count * es;
    if (mine != send) std::memcpy(mine, send, count * es);
    RingSchedule r = ringOf(type, ReduceOp::kSum);
    for (int i = 0; i < size(); ++i) r.block_offset[i] = std::size_t(i) * count;
    std::fill(r.block_count.begin(), r.block_count.end(), count);
    r.reduce_steps = 0;
    r.gather_steps = size() - 1;
    r.input = out;
    r.output = out;
    return runRing(r, "allGather");
  }

  absl::Status doBroadcast(const void* send, void* recv, std::size_t count, DataType type,
                           int root) override {
    const std::size_t bytes = count * kernels::dataTypeSize(type);
    if (rank() == root && send != recv) std::memcpy(recv, send, bytes);
    const uint32_t seq = seq_++;
    const int n = size();
    const int vr = mod(rank() - root, n);
    OpSet set;
    if (bytes <= rd_max_bytes_) {  // binomial tree: log2(n) rounds
      int mask = 1;
      while (mask < n) {
        if ((vr & mask) != 0) {
          const int parent = mod(vr - mask + root, n);
          GW_RETURN_IF_ERROR(world_->postRecv(set, parent, UcxWorld::collectiveTag(seq, parent, 0),
                                              recv, bytes, 0));
          GW_RETURN_IF_ERROR(world_->waitAll(set, "broadcast"));
          break;
        }
        mask <<= 1;
      }
      for (mask >>= 1; mask > 0; mask >>= 1) {
        if (vr + mask < n) {
          GW_RETURN_IF_ERROR(world_->postSend(
              set, mod(vr + mask + root, n), UcxWorld::collectiveTag(seq, rank(), 0), recv, bytes));
        }
      }
      return world_->waitAll(set, "broadcast");
    }
    // Pipelined chain root -> root+1 -> ...: every segment is forwarded as soon as it lands.
    auto* buf = static_cast<std::byte*>(recv);
    const std::size_t seg = segment_bytes_;
    const std::size_t nseg = (bytes + seg - 1) / seg;
    const int prev = mod(vr - 1 + root, n);
    const int next = mod(vr + 1 + root, n);
    const bool has_next = vr + 1 < n;
    auto seg_len = [&](std::size_t k) { return std::min(seg, bytes - k * seg); };
    if (vr == 0) {
      for (std::size_t k = 0; k < nseg; ++k) {
        GW_RETURN_IF_ERROR(world_->postSend(set, next, UcxWorld::collectiveTag(seq, rank(), k),
                                            buf + k * seg, seg_len(k)));
      }
      return world_->waitAll(set, "broadcast");
    }
    for (std::size_t k = 0; k < nseg; ++k) {
      GW_RETURN_IF_ERROR(world_->postRecv(set, prev, UcxWorld::collectiveTag(seq, prev, k),
                                          buf + k * seg, seg_len(k), k));
    }
    std::size_t landed = 0;
    std::vector<uint64_t> done;
    while (landed < nseg) {
      done.clear();
      GW_RETURN_IF_ERROR(world_->waitSome(set, done, "broadcast"));
      for (uint64_t k : done) {
        ++landed;
        if (!has_next) continue;
        GW_RETURN_IF_ERROR(world_->postSend(set, next, UcxWorld::collectiveTag(seq, rank(), k),
                                            buf + k * seg, seg_len(k)));
      }
    }
    return world_->waitAll(set, "broadcast");
  }

  absl::Status doReduce(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                        int root) override {
    const std::size_t es = kernels::dataTypeSize(type);
    const std::size_t bytes = count * es;
    const uint32_t seq = seq_++;
    const int n = size();
    const int vr = mod(rank() - root, n);
    const ReduceOp kop = op == ReduceOp::kAvg ? ReduceOp::kSum : op;
    // The running result: the root's recv, a scratch buffer elsewhere.
    auto* acc = rank() == root ? static_cast<std::byte*>(recv) : scratch(acc_, bytes);
    auto* tmp = scratch(tmp_, bytes);
    OpSet set;
    if (bytes <= rd_max_bytes_) {  // binomial tree towards the root
      if (acc != send) std::memcpy(acc, send, bytes);
      for (int mask = 1; mask < n; mask <<= 1) {
        if ((vr & mask) != 0) {
          const int parent = mod(vr - mask + root, n);
          GW_RETURN_IF_ERROR(
              world_->postSend(set, parent, UcxWorld::collectiveTag(seq, rank(), 0), acc, bytes));
          return world_->waitAll(set, "reduce");
        }
        if (vr + mask < n) {
          const int child = mod(vr + mask + root, n);
          GW_RETURN_IF_ERROR(
              world_->postRecv(set, child, UcxWorld::collectiveTag(seq, child, 0), tmp, bytes, 0));
          GW_RETURN_IF_ERROR(world_->waitAll(set, "reduce"));
          kernels::reduceHost(acc, acc, tmp, count, type, kop);
        }
      }
    } else {
      // Pipelined chain from the far end towards the root: each rank adds its part to every
      // segment and passes it on.
      const std::size_t seg_elems = std::max<std::size_t>(1, segment_bytes_ / es);
      const std::size_t nseg = (count + seg_elems - 1) / seg_elems;
      const int from = mod(vr + 1 + root, n);
      const int to = mod(vr - 1 + root, n);
      const bool last = vr == n - 1;
      auto seg_count = [&](std::size_t k) { return std::min(seg_elems, count - k * seg_elems); };
      const auto* in = static_cast<const std::byte*>(send);
      if (last) {
        for (std::size_t k = 0; k < nseg; ++k) {
          GW_RETURN_IF_ERROR(world_->postSend(set, to, UcxWorld::collectiveTag(seq, rank(), k),
                                              in + k * seg_elems * es, seg_count(k) * es));
        }
        return world_->waitAll(set, "reduce");
      }
      for (std::size_t k = 0; k < nseg; ++k) {
        GW_RETURN_IF_ERROR(world_->postRecv(set, from, UcxWorld::collectiveTag(seq, from, k),
                                            tmp + k * seg_elems * es, seg_count(k) * es, k));
      }
      std::size_t landed = 0;
      std::vector<uint64_t> done;
      while (landed < nseg) {
        done.clear();
        GW_RETURN_IF_ERROR(world_->waitSome(set, done, "reduce"));
        for (uint64_t k : done) {
          ++landed;
          const std::size_t off = k * seg_elems * es;
          kernels::reduceHost(acc + off, in + off, tmp + off, seg_count(k), type, kop);
          if (vr == 0) continue;
          GW_RETURN_IF_ERROR(world_->postSend(set, to, UcxWorld::collectiveTag(seq, rank(), k),
                                              acc + off, seg_count(k) * es));
        }
      }
      GW_RETURN_IF_ERROR(world_->waitAll(set, "reduce"));
    }
    if (rank() == root && op == ReduceOp::kAvg) kernels::divideByHost(recv, count, type, n);
    return absl::OkStatus();
  }

  absl::Status doAllToAll(const void* send, void* recv, std::size_t count, DataType type) override {
    const std::size_t bytes = count * kernels::dataTypeSize(type);
    const uint32_t seq = seq_++;
    const int n = size();
    const auto* in = static_cast<const std::byte*>(send);
    auto* out = static_cast<std::byte*>(recv);
    std::memcpy(out + std::size_t(rank()) * bytes, in + std::size_t(rank()) * bytes, bytes);
    OpSet set;
    for (int i = 1; i < n; ++i) {
      const int peer = mod(rank() - i, n);
      GW_RETURN_IF_ERROR(world_->postRecv(set, peer, UcxWorld::collectiveTag(seq, peer, 0),
                                          out + std::size_t(peer) * bytes, bytes, 0));
    }
    for (int i = 1; i < n; ++i) {  // staggered so that no rank is everyone's first target
      const int peer = mod(rank() + i, n);
      GW_RETURN_IF_ERROR(world_->postSend(set, peer, UcxWorld::collectiveTag(seq, rank(), 0),
                                          in + std::size_t(peer) * bytes, bytes));
    }
    return world_->waitAll(set, "allToAll");
  }

  absl::Status doSend(const void* buf, std::size_t count, DataType type, int peer) override {
    OpSet set;
    GW_RETURN_IF_ERROR(world_->postSend(set, peer, UcxWorld::p2pTag(rank(), p2p_send_seq_[peer]++),
                                        buf, count * kernels::dataTypeSize(type)));
    return world_->waitAll(set, "send");
  }

  absl::Status doRecv(void* buf, std::size_t count, DataType type, int peer) override {
    OpSet set;
    GW_RETURN_IF_ERROR(world_->postRecv(set, peer, UcxWorld::p2pTag(peer, p2p_recv_seq_[peer]++),
                                        buf, count * kernels::dataTypeSize(type), 0));
    return world_->waitAll(set, "recv");
  }

  absl::Status doBarrier() override {  // dissemination: ceil(log2(n)) rounds
    const uint32_t seq = seq_++;
    const int n = size();
    uint32_t step = 0;
    for (int k = 1; k < n; k <<= 1, ++step) {
      OpSet set;
      char out = 0;
      char in = 0;
      const int from = mod(rank() - k, n);
      GW_RETURN_IF_ERROR(
          world_->postRecv(set, from, UcxWorld::collectiveTag(seq, from, step), &in, 1, 0));
      GW_RETURN_IF_ERROR(world_->postSend(set, mod(rank() + k, n),
                                          UcxWorld::collectiveTag(seq, rank(), step), &out, 1));
      GW_RETURN_IF_ERROR(world_->waitAll(set, "barrier"));
    }
    return absl::OkStatus();
  }

 private:
  RingSchedule ringOf(DataType type, ReduceOp op) const {
    RingSchedule r;
    r.type = type;
    r.op = op;
    r.block_offset.assign(size(), 0);
    r.block_count.assign(size(), 0);
    return r;
  }

  absl::Status runRing(const RingSchedule& r, const char* what) {
    return ucx::runRing(*world_, r, seq_++, segment_bytes_, tmp_, acc_, what);
  }

  absl::Status ringAllReduce(const void* send, void* recv, std::size_t count, DataType type,
                             ReduceOp op) {
    RingSchedule r = ringOf(type, op);
    Blocks blocks{count, size()};
    for (int i = 0; i < size(); ++i) {
      r.block_offset[i] = blocks.offset(i);
      r.block_count[i] = blocks.size(i);
    }
    r.reduce_steps = size() - 1;
    r.gather_steps = size() - 1;
    r.input = static_cast<const std::byte*>(send);
    r.output = static_cast<std::byte*>(recv);
    return runRing(r, "allReduce");
  }

  // Folding for worlds that are not a power of two: of the first 2*rem ranks, even ones hand
  // their data to the next odd one and sit out. Returns this rank's index among the p = 2^k
  // participants, or -1 for a rank that sits out.
  struct Fold {
    int p;
    int rem;
    int newrank;
    int real(int nr) const { return nr < rem ? nr * 2 + 1 : nr + rem; }
  };
  Fold foldOf() const {
    int p = 1;
    while (p * 2 <= size()) p *= 2;
    const int rem = size() - p;
    int nr = 0;
    if (rank() < 2 * rem) {
      nr = (rank() % 2 == 0) ? -1 : rank() / 2;
    } else {
      nr = rank() - rem;
    }
    return {p, rem, nr};
  }

  // Before: folded-out ranks send `send`; their partners reduce it into recv. Sets `cur` to where
  // this rank's running data is.
  absl::Status foldIn(const Fold& f, uint32_t seq, const void* send, void* recv, std::size_t count,
                      DataType type, ReduceOp kop, const std::byte*& cur) {
    const std::size_t bytes = count * kernels::dataTypeSize(type);
    cur = static_cast<const std::byte*>(send);
    if (rank() >= 2 * f.rem) return absl::OkStatus();
    OpSet set;
    if (f.newrank < 0) {
      GW_RETURN_IF_ERROR(
          world_->postSend(set, rank() + 1, UcxWorld::collectiveTag(seq, rank(), 0), send, bytes));
      return world_->waitAll(set, "allReduce");
    }
    std::byte* tmp = scratch(tmp_, bytes);
    GW_RETURN_IF_ERROR(world_->postRecv(
        set, rank() - 1, UcxWorld::collectiveTag(seq, rank() - 1, 0), tmp, bytes, 0));
    GW_RETURN_IF_ERROR(world_->waitAll(set, "allReduce"));
    kernels::reduceHost(recv, tmp, send, count, type, kop);  // lower rank's data on the left
    cur = static_cast<const std::byte*>(recv);
    return absl::OkStatus();
  }

  // After: partners send the result back to the ranks that sat out.
  absl::Status foldOut(const Fold& f, uint32_t seq, void* recv, std::size_t bytes) {
    if (rank() >= 2 * f.rem) return absl::OkStatus();
    OpSet set;
    constexpr uint32_t kStep = 0xFFFFF;  // past every step the exchanges use
    if (f.newrank < 0) {
      GW_RETURN_IF_ERROR(world_->postRecv(
          set, rank() + 1, UcxWorld::collectiveTag(seq, rank() + 1, kStep), recv, bytes, 0));
    } else {
      GW_RETURN_IF_ERROR(world_->postSend(
          set, rank() - 1, UcxWorld::collectiveTag(seq, rank(), kStep), recv, bytes));
    }
    return world_->waitAll(set, "allReduce");
  }

  // One exchange with `peer`: send [send_off, +send_bytes) of `from`, receive into tmp at
  // recv_off. Waits for both.
  absl::Status exchange(uint32_t seq, uint32_t step, int peer, const std::byte* from,
                        std::size_t send_off, std::size_t send_bytes, std::byte* into,
                        std::size_t recv_bytes) {
    OpSet set;
    if (recv_bytes > 0) {
      GW_RETURN_IF_ERROR(world_->postRecv(set, peer, UcxWorld::collectiveTag(seq, peer, step), into,
                                          recv_bytes, 0));
    }
    if (send_bytes > 0) {
      GW_RETURN_IF_ERROR(world_->postSend(set, peer, UcxWorld::collectiveTag(seq, rank(), step),
                                          from + send_off, send_bytes));
    }
    return world_->waitAll(set, "allReduce");
  }

  absl::Status recursiveDoubling(const void* send, void* recv, std::size_t count, DataType type,
                                 ReduceOp op) {
    const std::size_t es = kernels::dataTypeSize(type);
    const std::size_t bytes = count * es;
    const ReduceOp kop = op == ReduceOp::kAvg ? ReduceOp::kSum : op;
    const uint32_t seq = seq_++;
    const Fold f = foldOf();
    const std::byte* cur = nullptr;
    GW_RETURN_IF_ERROR(foldIn(f, seq, send, recv, count, type, kop, cur));
    if (f.newrank >= 0) {
      std::byte* tmp = scratch(tmp_, bytes);
      uint32_t step = 1;
      for (int mask = 1; mask < f.p; mask <<= 1, ++step) {
        const int peer = f.real(f.newrank ^ mask);
        GW_RETURN_IF_ERROR(exchange(seq, step, peer, cur, 0, bytes, tmp, bytes));
        if (rank() < peer) {
          kernels::reduceHost(recv, cur, tmp, count, type, kop);
        } else {
          kernels::reduceHost(recv, tmp, cur, count, type, kop);
        }
        cur = static_cast<const std::byte*>(recv);
      }
      if (cur != recv) std::memcpy(recv, cur, bytes);  // a world of one participant
      if (op == ReduceOp::kAvg) kernels::divideByHost(recv, count, type, size());
    }
    return foldOut(f, seq, recv, bytes);
  }

  absl::Status rabenseifner(const void* send, void* recv, std::size_t count, DataType type,
                            ReduceOp op) {
    const std::size_t es = kernels::dataTypeSize(type);
    const ReduceOp kop = op == ReduceOp::kAvg ? ReduceOp::kSum : op;
    const uint32_t seq = seq_++;
    const Fold f = foldOf();
    const std::byte* cur = nullptr;
    GW_RETURN_IF_ERROR(foldIn(f, seq, send, recv, count, type, kop, cur));
    if (f.newrank >= 0) {
      const Blocks blocks{count, f.p};
      auto off = [&](int b) { return blocks.offset(b) * es; };  // b may be p: the end
      auto end_of = [&](int b) { return b == f.p ? count * es : off(b); };
      std::byte* tmp = scratch(tmp_, count * es);
      auto* out = static_cast<std::byte*>(recv);
      // Reduce-scatter by recursive halving: keep the half of the range the partner does not.
      int lo = 0;
      int hi = f.p;
      uint32_t step = 1;
      for (int mask = f.p / 2; mask >= 1; mask >>= 1, ++step) {
        const int peer = f.real(f.newrank ^ mask);
        const int mid = lo + (hi - lo) / 2;
        const bool upper = (f.newrank & mask) != 0;
        const int keep_lo = upper ? mid : lo;
        const int keep_hi = upper ? hi : mid;
        const int give_lo = upper ? lo : mid;
        const int give_hi = upper ? mid : hi;
        const std::size_t keep_off = off(keep_lo);
        const std::size_t keep_bytes = end_of(keep_hi) - keep_off;
        GW_RETURN_IF_ERROR(exchange(seq, step, peer, cur, off(give_lo),
                                    end_of(give_hi) - off(give_lo), tmp + keep_off, keep_bytes));
        const std::size_t n_elems = keep_bytes / es;
        if (rank() < peer) {
          kernels::reduceHost(out + keep_off, cur + keep_off, tmp + keep_off, n_elems, type, kop);
        } else {
          kernels::reduceHost(out + keep_off, tmp + keep_off, cur + keep_off, n_elems, type, kop);
        }
        // From here on the running data is in recv (only the kept range is read again).
        cur = out;
        lo = keep_lo;
        hi = keep_hi;
      }
      if (cur != out) std::memcpy(out, cur, count * es);  // one participant: nothing exchanged
      if (op == ReduceOp::kAvg) {
        kernels::divideByHost(out + off(lo), (end_of(hi) - off(lo)) / es, type, size());
      }
      // All-gather by recursive doubling: the owned range doubles at every level.
      for (int mask = 1; mask < f.p; mask <<= 1, ++step) {
        const int peer = f.real(f.newrank ^ mask);
        const int my_lo = f.newrank & ~(mask - 1);
        const int peer_lo = (f.newrank ^ mask) & ~(mask - 1);
        GW_RETURN_IF_ERROR(exchange(seq, step, peer, out, off(my_lo),
                                    end_of(my_lo + mask) - off(my_lo), out + off(peer_lo),
                                    end_of(peer_lo + mask) - off(peer_lo)));
      }
    }
    return foldOut(f, seq, recv, count * es);
  }

  Algorithm pickAllReduce(std::size_t bytes) const {
    if (algorithm_ != Algorithm::kAuto) return algorithm_;
    if (bytes <= rd_max_bytes_) return Algorithm::kRecursiveDoubling;
    if (bytes <= rabenseifner_max_bytes_) return Algorithm::kRabenseifner;
    return Algorithm::kRing;
  }

  std::unique_ptr<UcxWorld> world_;
  const Algorithm algorithm_;
  std::size_t rd_max_bytes_;
  std::size_t rabenseifner_max_bytes_;
  std::size_t segment_bytes_;
  uint32_t seq_ = 0;
  std::vector<uint64_t> p2p_send_seq_;
  std::vector<uint64_t> p2p_recv_seq_;
  std::vector<std::byte> tmp_;  // received data before it is reduced
  std::vector<std::byte> acc_;  // partial results that are not output
};

}  // namespace

Capabilities ucxCapabilities() {
  Capabilities c;
  c.memory = {MemoryKind::kHost};
  c.types.assign(std::begin(kernels::kAllDataTypes), std::end(kernels::kAllDataTypes));
  c.ops.assign(std::begin(kernels::kAllReduceOps), std::end(kernels::kAllReduceOps));
  return c;
}

absl::StatusOr<std::unique_ptr<Communicator>> createUcx(const Options& options,
                                                        Bootstrap& bootstrap) {
  auto world = ucx::UcxWorld::create(bootstrap, options.timeout);
  if (!world.ok()) return world.status();
  auto comm = std::make_unique<UcxCommunicator>(*std::move(world), options);
  // Wires every endpoint up now, so that a rank that cannot be reached fails here, not inside the
  // first collective.
  if (comm->size() > 1) {
    if (absl::Status s = comm->barrier(); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("ucx: connecting the world: ", s.message()));
    }
  }
  return comm;
}

}  // namespace gangway::comm
