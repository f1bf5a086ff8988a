// Types shared by libgangway_kv's C++ API: ids, options, the copy plan the kernels execute, and
// the statistics struct. See runtime/README.md for the model (tiers, blocks, content nodes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gangway::kv {

// A block's index into its tier's arena: device blocks are [0, num_blocks), host blocks
// [0, num_host_blocks). A block holds `block_size` token slots; slot = block * block_size + offset.
using BlockId = int32_t;
inline constexpr BlockId kNoBlock = -1;

// A sequence is named by its caller (request id, beam id): any 64-bit value.
using SeqId = uint64_t;

// A value mixed into the prefix-cache key of the block that holds token `position` (and so, through
// the parent chain, of every later block): a LoRA adapter id or cache salt at position 0, a
// multimodal item's content hash at its first placeholder token. Two prompts share a cached block
// only when their tokens and extra keys up to the end of that block are equal.
struct ExtraKey {
  int32_t position = 0;
  uint64_t value = 0;
};

struct Options {
  // Device blocks in the pool (the GPU KV cache), > 0.
  int32_t num_blocks = 0;
  // Tokens per block: a power of two from 1 to 512, so that it divides the paged-attention
  // kernel's 512-token partition and token -> block is a shift.
  int32_t block_size = 16;
  // Host (pinned memory) blocks for the offload tier; 0 turns the tier off.
  int32_t num_host_blocks = 0;
  // Share full blocks between sequences with equal prefixes.
  bool enable_prefix_caching = true;
  // Before a cached device block is dropped to make room, copy it to a free host block so a later
  // lookup can bring it back (needs num_host_blocks > 0).
  bool offload_evicted = true;
  // canAdmit() keeps this share of device blocks free for running sequences' appends, so that
  // admitting a request does not force a preemption on the next decode step. From 0 to 1.
  double watermark = 0.01;
  // Testing only: keep this many low bits of every block hash (1..64). Fewer bits force hash
  // collisions, which must never hand one sequence another's blocks.
  int32_t hash_bits = 64;
};

// Where a block copy goes. The server executes a manager's copies in the order given, before the
// forward pass that reads or writes the blocks involved; splitCopyRuns() groups them into runs
// that can each be one batched kernel launch.
enum class CopyKind : int32_t {
  kDeviceToHost = 0,    // swap out, or offload of an evicted cached block: src device, dst host
  kHostToDevice = 1,    // swap in, or a prefix hit on the host tier: src host, dst device
  kDeviceToDevice = 2,  // copy-on-write of a shared partial block after a fork
};

struct BlockCopy {
  CopyKind kind = CopyKind::kDeviceToDevice;
  BlockId src = kNoBlock;
  BlockId dst = kNoBlock;
};

// A run of copies that one batched kernel call may execute, in any order: copies[begin, end) are
// of one kind, and no block in them is written twice or both read and written. splitCopyRuns()
// cuts the list into the fewest such runs, in order (a new run starts at a change of kind or at
// the first copy that depends on an earlier one in the run). Running the runs one after another
// is the same as running the copies one by one.
struct CopyRun {
  CopyKind kind;
  size_t begin;
  size_t end;
};
std::vector<CopyRun> splitCopyRuns(const std::vector<BlockCopy>& copies);

// What allocate() found and reserved for a prompt.
struct AllocateResult {
  // Leading prompt tokens whose keys and values are already in the sequence's blocks (a multiple of
  // block_size; at most prompt length - 1, so the last prompt token is always computed and yields
  // logits). The server computes tokens [cached_tokens, prompt length).
  int32_t cached_tokens = 0;
  int32_t device_hit_blocks = 0;  // blocks shared from the device cache
  int32_t host_hit_blocks = 0;    // blocks brought back from the host tier (host-to-device copies)
  int32_t new_blocks = 0;         // blocks allocated empty
};

// What canAdmit() would need.
struct AdmitCheck {
  bool admissible = false;    // blocks_needed fit with the watermark kept free
  bool ever_fits = false;     // the prompt fits in an empty pool at all
  int32_t blocks_needed = 0;  // free blocks the prompt would take (hits on in-use blocks are free)
  int32_t cached_tokens = 0;  // what allocate() would report
};

// Counters and gauges, all cumulative since create() (gauges are current). Token and block counts.
struct Stats {
  // Device tier gauges: used + free == num_blocks; cached <= free (cached blocks are free blocks
  // that still hold a prefix and are evicted least recently used first).
  int32_t num_blocks = 0;
  int32_t used_blocks = 0;
  int32_t free_blocks = 0;
  int32_t cached_blocks = 0;
  // Host tier gauges (all 0 without one): used by swapped-out sequences, cached offloaded prefixes.
  int32_t num_host_blocks = 0;
  int32_t host_used_blocks = 0;
  int32_t host_free_blocks = 0;
  int32_t host_cached_blocks = 0;
  // Sequences.
  int32_t running_sequences = 0;
  int32_t swapped_sequences = 0;
  // Prefix cache, counted in blocks over allocate() calls: queried = hits + host_hits + misses.
  int64_t lookups = 0;
  int64_t queried_blocks = 0;
  int64_t hit_blocks = 0;
  int64_t host_hit_blocks = 0;
  int64_t miss_blocks = 0;
  // Evictions: cached device blocks reused for new content (offloaded ones included), offloads to
  // host, cached host blocks reused, and blocks that lost their last cached copy.
  int64_t evicted_blocks = 0;
  int64_t offloaded_blocks = 0;
  int64_t host_evicted_blocks = 0;
  int64_t dropped_prefixes = 0;
  // Allocation traffic and copies issued.
  int64_t allocated_blocks = 0;
  int64_t freed_blocks = 0;
  int64_t cow_copies = 0;
  int64_t swapped_out_blocks = 0;
  int64_t swapped_in_blocks = 0;
  int64_t preemptions = 0;  // swapOut() calls
};

// "used 12/100 (cached 40) host 0/0 seqs 3+0 hits 10/20 ..." for logs.
std::string formatStats(const Stats& s);

}  // namespace gangway::kv
