// The schedules the ucx backend's collectives share: block splits, and the pipelined ring that
// reduce-scatter, all-gather and large all-reduces run on (see ucx_communicator.cc).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <absl/status/status.h>

#include "gangway/comm/communicator.h"

#include "ucx/ucx_world.h"

namespace gangway::comm::ucx {

// Contiguous split of `count` elements into `parts` blocks, the first `count % parts` one longer.
struct Blocks {
  std::size_t count;
  int parts;
  std::size_t size(int i) const { return count / parts + (std::size_t(i) < count % parts ? 1 : 0); }
  std::size_t offset(int i) const {
    return std::size_t(i) * (count / parts) + std::min<std::size_t>(i, count % parts);
  }
};

inline int mod(int a, int n) { return ((a % n) + n) % n; }

// Grows `buf` to at least `bytes` and returns its memory.
inline std::byte* scratch(std::vector<std::byte>& buf, std::size_t bytes) {
  if (buf.size() < bytes) buf.resize(bytes);
  return buf.data();
}

// A ring schedule over `size()` blocks of one array. At step t a rank sends block
// (rank - t - shift) to its right neighbour and receives block (rank - t - 1 - shift) from its
// left one. The first `reduce_steps` steps reduce (received data lands in scratch and is
// combined with this rank's input), the next `gather_steps` steps only forward (received data
// lands in the output). Every block is cut into segments; a segment received at step t is sent
// on at step t+1 as soon as it is ready, so steps overlap.
struct RingSchedule {
  DataType type;
  ReduceOp op;
  std::vector<std::size_t> block_offset;  // in elements
  std::vector<std::size_t> block_count;
  int shift = 0;
  int reduce_steps = 0;
  int gather_steps = 0;
  const std::byte* input = nullptr;  // this rank's contribution (indexed by block offset)
  std::byte* output = nullptr;       // indexed by block offset, unless final_block_to_output
  // Reduce-scatter: the block finished at the last reduce step goes to `output` (one block
  // long); partial sums live in scratch.
  bool final_block_to_output = false;
};

// Runs `r` as collective number `seq` of `world`, in segments of about `segment_bytes`.
// `received` and `partial` are the caller's scratch buffers (data received before it is reduced,
// partial results that are not output), kept between collectives.
absl::Status runRing(UcxWorld& world, const RingSchedule& r, uint32_t seq,
                     std::size_t segment_bytes, std::vector<std::byte>& received,
                     std::vector<std::byte>& partial, const char* what);

}  // namespace gangway::comm::ucx
