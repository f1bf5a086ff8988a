#include "ucx/ring.h"

#include <absl/strings/str_cat.h>

#include "gangway/common/status.h"
#include "gangway/kernels/reduce.h"

namespace gangway::comm::ucx {
namespace {

// Receive slots of the ring's reduce steps (see runRing).
constexpr std::size_t kRingSlots = 8;

}  // namespace

absl::Status runRing(UcxWorld& world, const RingSchedule& r, uint32_t seq,
                     std::size_t segment_bytes, std::vector<std::byte>& received,
                     std::vector<std::byte>& partial, const char* what) {
  const int n = world.size();
  const int me = world.rank();
  const int left = mod(me - 1, n);
  const int right = mod(me + 1, n);
  const std::size_t es = kernels::dataTypeSize(r.type);
  const int steps = r.reduce_steps + r.gather_steps;
  const ReduceOp kop = r.op == ReduceOp::kAvg ? ReduceOp::kSum : r.op;
  std::size_t total = 0;
  std::size_t largest = 0;
  for (int b = 0; b < n; ++b) {
    total = std::max(total, r.block_offset[b] + r.block_count[b]);
    largest = std::max(largest, r.block_count[b]);
  }
  const std::size_t seg_elems = std::max<std::size_t>(1, segment_bytes / es);
  const std::size_t max_seg = std::max<std::size_t>(1, (largest + seg_elems - 1) / seg_elems);
  std::byte* acc = r.final_block_to_output ? scratch(partial, total * es) : r.output;

  auto send_block = [&](int t) { return mod(me - t - r.shift, n); };
  auto recv_block = [&](int t) { return mod(me - t - 1 - r.shift, n); };
  auto seg_count = [&](int b, std::size_t k) {
    return std::min(seg_elems, r.block_count[b] - k * seg_elems);
  };
  auto segs = [&](int b) { return (r.block_count[b] + seg_elems - 1) / seg_elems; };
  // Where the result of step t's segment k lives (what step t+1 sends).
  auto result_at = [&](int t, int b, std::size_t k) -> std::byte* {
    const std::size_t off = (r.block_offset[b] + k * seg_elems) * es;
    if (t < r.reduce_steps) {
      if (r.final_block_to_output && t == r.reduce_steps - 1) {
        return r.output + k * seg_elems * es;
      }
      return acc + off;
    }
    return r.output + off;
  };
  if (uint64_t(steps) * max_seg >= (uint64_t{1} << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", total,
                     " elements make too many segments for the ring (raise "
                     "GANGWAY_UCX_SEGMENT_BYTES)"));
  }

  // Data to be reduced lands in a few segment-sized slots that are reused as soon as their
  // segment is reduced, so it is still in cache when the reduction reads it. Receives for the
  // reduce steps are posted in step order as slots free up (the earliest unfinished segment of
  // the whole ring always has a posted receive, so this cannot deadlock); receives for the
  // gather steps land in the output directly and are all posted at once.
  const std::size_t slots = r.reduce_steps > 0 ? kRingSlots : 0;
  std::byte* slot_mem = slots > 0 ? scratch(received, slots * seg_elems * es) : nullptr;
  std::vector<std::size_t> free_slots;
  for (std::size_t i = slots; i > 0; --i) free_slots.push_back(i - 1);
  std::vector<uint64_t> reduce_recvs;  // ids (t * max_seg + k) in step order, not yet posted
  OpSet set;
  std::size_t expected = 0;
  for (int t = 0; t < steps; ++t) {
    const int b = recv_block(t);
    for (std::size_t k = 0; k < segs(b); ++k) {
      const uint64_t id = uint64_t(t) * max_seg + k;
      ++expected;
      if (t < r.reduce_steps) {
        reduce_recvs.push_back(id);
        continue;
      }
      const std::size_t off = (r.block_offset[b] + k * seg_elems) * es;
      GW_RETURN_IF_ERROR(world.postRecv(set, left, UcxWorld::collectiveTag(seq, left, uint32_t(id)),
                                        r.output + off, seg_count(b, k) * es, id << 8));
    }
  }
  std::size_t next_reduce_recv = 0;
  auto post_reduce_recvs = [&]() -> absl::Status {
    while (next_reduce_recv < reduce_recvs.size() && !free_slots.empty()) {
      const uint64_t id = reduce_recvs[next_reduce_recv++];
      const std::size_t slot = free_slots.back();
      free_slots.pop_back();
      const int b = recv_block(int(id / max_seg));
      GW_RETURN_IF_ERROR(world.postRecv(set, left, UcxWorld::collectiveTag(seq, left, uint32_t(id)),
                                        slot_mem + slot * seg_elems * es,
                                        seg_count(b, id % max_seg) * es, (id << 8) | slot));
    }
    return absl::OkStatus();
  };
  GW_RETURN_IF_ERROR(post_reduce_recvs());
  {
    const int b = send_block(0);
    for (std::size_t k = 0; k < segs(b); ++k) {
      const std::size_t off = (r.block_offset[b] + k * seg_elems) * es;
      GW_RETURN_IF_ERROR(world.postSend(set, right, UcxWorld::collectiveTag(seq, me, uint32_t(k)),
                                        r.input + off, seg_count(b, k) * es));
    }
  }
  std::vector<uint64_t> done;
  while (expected > 0) {
    done.clear();
    GW_RETURN_IF_ERROR(world.waitSome(set, done, what));
    for (uint64_t cookie : done) {
      --expected;
      const uint64_t id = cookie >> 8;
      const int t = int(id / max_seg);
      const std::size_t k = id % max_seg;
      const int b = recv_block(t);
      const std::size_t cnt = seg_count(b, k);
      std::byte* result = result_at(t, b, k);
      if (t < r.reduce_steps) {
        const std::size_t off = (r.block_offset[b] + k * seg_elems) * es;
        const std::size_t slot = cookie & 0xFF;
        // The left neighbour's partial result is the left operand, this rank's data the right:
        // each block is reduced along one chain, so every rank ends with the same bits.
        kernels::reduceHost(result, slot_mem + slot * seg_elems * es, r.input + off, cnt, r.type,
                            kop);
        if (t == r.reduce_steps - 1 && r.op == ReduceOp::kAvg) {
          kernels::divideByHost(result, cnt, r.type, n);
        }
        free_slots.push_back(slot);
        GW_RETURN_IF_ERROR(post_reduce_recvs());
      }
      if (t + 1 < steps) {
        const uint64_t next = uint64_t(t + 1) * max_seg + k;
        GW_RETURN_IF_ERROR(world.postSend(
            set, right, UcxWorld::collectiveTag(seq, me, uint32_t(next)), result, cnt * es));
      }
    }
  }
  return world.waitAll(set, what);
}

}  // namespace gangway::comm::ucx
