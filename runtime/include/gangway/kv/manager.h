// KvCacheManager: the paged KV cache's block manager, as an inference server's scheduler uses it.
//
//   allocate(seq, prompt)   reserve blocks for a prompt, sharing the longest cached prefix
//   append(seq, tokens)     add decoded (or chunked-prefill) tokens; a block is taken when the last
//                           one fills, and a partial block shared after fork() is copied first
//   fork(parent, child)     share every block (beam search, parallel sampling)
//   free(seq)               drop the sequence; its full computed blocks stay cached until evicted
//   swapOut / swapIn        preempt a sequence to the host tier and bring it back
//   canAdmit / canAppend / canSwapIn   dry runs for the scheduler: nothing changes
//   blockTable / slotMapping           what the kernels consume
//   takeCopies()            the block copies the server executes, in order, before the next
//                           forward pass (swap, offload, copy-on-write)
//
// A block enters the prefix cache only once its tokens are computed: allocate() and append() add
// tokens that the next forward pass computes; append() marks everything before its tokens as
// computed, and setComputed() says so explicitly (chunked prefill, or before free() after the
// sequence's last step). So a lookup never shares a block whose keys and values are not written.
//
// Every call either succeeds or returns an error and changes nothing: out of blocks is
// ResourceExhausted (wait or preempt), a request that can never fit is InvalidArgument, an unknown
// or freed sequence is NotFound, a swapped-out sequence used as running is FailedPrecondition.
// Not thread-safe: one scheduler thread owns a manager.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "gangway/kv/block_pool.h"
#include "gangway/kv/prefix_index.h"
#include "gangway/kv/types.h"

namespace gangway::kv {

class KvCacheManager {
 public:
  // InvalidArgument (naming the field) for num_blocks <= 0, a block size that is not a power of two
  // from 1 to 512, num_host_blocks < 0, a watermark outside [0, 1], hash_bits outside 1..64.
  static absl::StatusOr<std::unique_ptr<KvCacheManager>> create(const Options& options);

  const Options& options() const { return options_; }

  absl::StatusOr<AllocateResult> allocate(SeqId seq, std::span<const int32_t> prompt,
                                          std::span<const ExtraKey> extra_keys = {});
  absl::Status append(SeqId seq, std::span<const int32_t> tokens);
  absl::Status appendToken(SeqId seq, int32_t token) { return append(seq, {&token, 1}); }
  absl::Status setComputed(SeqId seq, int32_t num_computed_tokens);
  absl::Status fork(SeqId parent, SeqId child);
  absl::Status free(SeqId seq);
  absl::Status swapOut(SeqId seq);
  absl::Status swapIn(SeqId seq);

  AdmitCheck canAdmit(std::span<const int32_t> prompt,
                      std::span<const ExtraKey> extra_keys = {}) const;
  // False for an unknown or swapped-out sequence.
  bool canAppend(SeqId seq, int32_t num_tokens) const;
  bool canSwapIn(SeqId seq) const;
  // Turns up to max_blocks cached device blocks (least recently used first) into empty ones,
  // offloading them to the host tier where configured. Returns how many.
  int32_t evictCached(int32_t max_blocks);

  bool contains(SeqId seq) const { return seqs_.contains(seq); }
  absl::StatusOr<int32_t> numTokens(SeqId seq) const;
  absl::StatusOr<int32_t> numComputed(SeqId seq) const;
  absl::StatusOr<bool> isSwapped(SeqId seq) const;
  // The sequence's block ids in order: device blocks while running, host blocks while swapped.
  // Valid until the next call that changes this sequence.
  absl::StatusOr<std::span<const BlockId>> blockTable(SeqId seq) const;
  // out[i] = the device slot of token first + i (block_table[p / block_size] * block_size +
  // p % block_size). OutOfRange past the sequence's tokens, InvalidArgument if out is too small.
  absl::Status slotMapping(SeqId seq, int32_t first, int32_t count, std::span<int64_t> out) const;

  // The copies issued since the last call, in the order they must run. Clears the list.
  std::vector<BlockCopy> takeCopies();
  size_t pendingCopies() const { return copies_.size(); }

  Stats stats() const;
  // References on a device block (tests, debugging).
  int32_t deviceRefCount(BlockId b) const { return device_.refCount(b); }
  int32_t hostRefCount(BlockId b) const { return host_.refCount(b); }

 private:
  struct Sequence {
    std::vector<BlockId> blocks;
    int32_t num_tokens = 0;
    int32_t num_computed = 0;
    // Prefix-cache chain: the leading full blocks already keyed, and the last one's hash/content.
    int32_t keyed_blocks = 0;
    uint64_t parent_hash = kRootHash;
    uint64_t parent_content = kRootContent;
    bool chain_broken = false;     // a hash collision: later blocks of this sequence are not cached
    std::vector<int32_t> pending;  // tokens from keyed_blocks * block_size on
    std::vector<ExtraKey> extras;  // absolute positions, sorted, only those not yet keyed
    bool swapped = false;
    // fork() shared the last block; only then can an append need a copy-on-write check.
    bool tail_shared = false;
  };
  struct Hit {
    NodeId node;
    BlockId device;  // kNoBlock for a host-tier hit
  };

  explicit KvCacheManager(const Options& options);
  absl::StatusOr<Sequence*> running(SeqId seq, const char* what);
  absl::StatusOr<const Sequence*> find(SeqId seq) const;
  // The longest cached prefix of `prompt` (never its last token), walked through the index.
  std::vector<Hit> lookup(std::span<const int32_t> prompt, std::span<const ExtraKey> extras) const;
  std::span<const ExtraKey> extrasIn(std::span<const ExtraKey> sorted, int32_t block,
                                     std::vector<ExtraKey>* scratch) const;
  int32_t blocksFor(int64_t tokens) const {
    return static_cast<int32_t>((tokens + options_.block_size - 1) / options_.block_size);
  }
  BlockId allocateDevice();
  BlockId allocateHost();
  void dropDeviceCopy(NodeId n, BlockId b);
  void keyComputedBlocks(Sequence& s);

  Options options_;
  int32_t shift_;
  int32_t watermark_blocks_;
  BlockPool device_;
  BlockPool host_;
  PrefixIndex index_;
  absl::flat_hash_map<SeqId, Sequence> seqs_;
  std::vector<BlockCopy> copies_;
  Stats stats_;
};

}  // namespace gangway::kv
