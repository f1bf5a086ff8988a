#include "gangway/kv/manager.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include <absl/container/flat_hash_set.h>
#include <absl/strings/str_cat.h>

#include "gangway/common/check.h"
#include "gangway/common/status.h"

namespace gangway::kv {

namespace {

constexpr int32_t kMaxBlockSize = 512;  // the paged-attention kernels' partition

}  // namespace

absl::StatusOr<std::unique_ptr<KvCacheManager>> KvCacheManager::create(const Options& options) {
  if (options.num_blocks <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv: num_blocks is ", options.num_blocks, "; expected a positive count"));
  }
  if (options.block_size <= 0 || options.block_size > kMaxBlockSize ||
      !std::has_single_bit(static_cast<uint32_t>(options.block_size))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv: block_size ", options.block_size, " does not divide ", kMaxBlockSize,
        ", the paged-attention partition; expected a power of two from 1 to ", kMaxBlockSize));
  }
  if (options.num_host_blocks < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv: num_host_blocks is ", options.num_host_blocks, "; expected 0 (no host tier) or more"));
  }
  if (!(options.watermark >= 0.0 && options.watermark <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv: watermark is ", options.watermark, "; expected a share from 0 to 1"));
  }
  if (options.hash_bits < 1 || options.hash_bits > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv: hash_bits is ", options.hash_bits, "; expected 1 to 64"));
  }
  return std::unique_ptr<KvCacheManager>(new KvCacheManager(options));
}

KvCacheManager::KvCacheManager(const Options& options)
    : options_(options),
      shift_(std::countr_zero(static_cast<uint32_t>(options.block_size))),
      watermark_blocks_(static_cast<int32_t>(std::floor(options.watermark * options.num_blocks))),
      device_(options.num_blocks),
      host_(options.num_host_blocks),
      index_(options.block_size, options.num_blocks + options.num_host_blocks, options.hash_bits) {
  stats_.num_blocks = options.num_blocks;
  stats_.num_host_blocks = options.num_host_blocks;
}

absl::StatusOr<const KvCacheManager::Sequence*> KvCacheManager::find(SeqId seq) const {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end()) {
    return absl::NotFoundError(
        absl::StrCat("kv: sequence ", seq, " is not allocated (never allocated, or freed)"));
  }
  return &it->second;
}

absl::StatusOr<KvCacheManager::Sequence*> KvCacheManager::running(SeqId seq, const char* what) {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end()) {
    return absl::NotFoundError(absl::StrCat("kv: ", what, ": sequence ", seq,
                                            " is not allocated (never allocated, or freed)"));
  }
  if (it->second.swapped) {
    return absl::FailedPreconditionError(
        absl::StrCat("kv: ", what, ": sequence ", seq, " is swapped out; swapIn() it first"));
  }
  return &it->second;
}

std::span<const ExtraKey> KvCacheManager::extrasIn(std::span<const ExtraKey> sorted, int32_t block,
                                                   std::vector<ExtraKey>* scratch) const {
  if (sorted.empty()) return {};
  const int32_t begin = block << shift_;
  const int32_t end = begin + options_.block_size;
  auto lo = std::lower_bound(sorted.begin(), sorted.end(), begin,
                             [](const ExtraKey& e, int32_t p) { return e.position < p; });
  scratch->clear();
  for (; lo != sorted.end() && lo->position < end; ++lo) {
    scratch->push_back({lo->position - begin, lo->value});
  }
  return *scratch;
}

std::vector<KvCacheManager::Hit> KvCacheManager::lookup(std::span<const int32_t> prompt,
                                                        std::span<const ExtraKey> extras) const {
  std::vector<Hit> hits;
  if (!options_.enable_prefix_caching || prompt.empty()) return hits;
  const auto max_blocks = static_cast<int32_t>((prompt.size() - 1) >> shift_);
  hits.reserve(max_blocks);
  const int32_t bs = options_.block_size;
  uint64_t hash = kRootHash;
  uint64_t content = kRootContent;
  std::vector<ExtraKey> scratch;
  for (int32_t i = 0; i < max_blocks; ++i) {
    const std::span<const int32_t> tokens = prompt.subspan(static_cast<size_t>(i) * bs, bs);
    const std::span<const ExtraKey> ex = extrasIn(extras, i, &scratch);
    hash = index_.blockHash(hash, tokens, ex);
    const NodeId n = index_.find(hash, content, tokens, ex);
    if (n == kNoNode) break;
    const PrefixNode& node = index_.node(n);
    hits.push_back({n, node.device});
    content = node.content;
  }
  return hits;
}

void KvCacheManager::dropDeviceCopy(NodeId n, BlockId b) {
  PrefixNode& node = index_.node(n);
  node.device = kNoBlock;
  ++stats_.evicted_blocks;
  if (node.host != kNoBlock) return;  // still cached on the host tier
  if (options_.offload_evicted && host_.numFree() > 0) {
    const BlockId h = allocateHost();
    copies_.push_back({CopyKind::kDeviceToHost, b, h});
    node.host = h;
    host_.setNode(h, n);
    host_.unref(h);  // free, cached: the back of the host LRU
    ++stats_.offloaded_blocks;
    return;
  }
  index_.erase(n);
  ++stats_.dropped_prefixes;
}

BlockId KvCacheManager::allocateDevice() {
  const BlockId b = device_.allocate();
  const NodeId n = device_.node(b);
  if (n != kNoNode) {
    device_.setNode(b, kNoNode);
    dropDeviceCopy(n, b);
  }
  ++stats_.allocated_blocks;
  return b;
}

void KvCacheManager::keyComputedBlocks(Sequence& s) {
  if (!options_.enable_prefix_caching) return;
  const int32_t bs = options_.block_size;
  const int32_t full = s.num_computed >> shift_;
  if (s.keyed_blocks >= full) return;
  std::vector<ExtraKey> scratch;
  int32_t i = s.keyed_blocks;
  for (; i < full && !s.chain_broken; ++i) {
    const std::span<const int32_t> tokens(
        s.pending.data() + static_cast<size_t>(i - s.keyed_blocks) * bs, bs);
    const std::span<const ExtraKey> ex = extrasIn(s.extras, i, &scratch);
    const uint64_t hash = index_.blockHash(s.parent_hash, tokens, ex);
    bool existed = false;
    const NodeId n = index_.insert(hash, s.parent_content, tokens, ex, &existed);
    if (n == kNoNode) {
      s.chain_broken = true;  // a collision: this block and its successors stay uncached
      break;
    }
    PrefixNode& node = index_.node(n);
    const BlockId b = s.blocks[i];
    if (node.device == kNoBlock && device_.node(b) == kNoNode) {
      node.device = b;  // a new node, or one only on the host tier: this block is its device copy
      device_.setNode(b, n);
    }
    GW_CHECK(existed || node.device == b);  // a new node always gets this block as its copy
    s.parent_hash = hash;
    s.parent_content = node.content;
  }
  if (s.chain_broken) {
    s.pending.clear();
    s.pending.shrink_to_fit();
    s.extras.clear();
    s.keyed_blocks = full;
    return;
  }
  s.pending.erase(s.pending.begin(),
                  s.pending.begin() + static_cast<ptrdiff_t>(i - s.keyed_blocks) * bs);
  s.keyed_blocks = i;
}

absl::StatusOr<AllocateResult> KvCacheManager::allocate(SeqId seq, std::span<const int32_t> prompt,
                                                        std::span<const ExtraKey> extra_keys) {
  if (seqs_.contains(seq)) {
    return absl::AlreadyExistsError(
        absl::StrCat("kv: allocate: sequence ", seq, " is already allocated; free() it first"));
  }
  if (prompt.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv: allocate: sequence ", seq, " has an empty prompt; expected 1 or more tokens"));
  }
  const int64_t total64 = (static_cast<int64_t>(prompt.size()) + options_.block_size - 1) >> shift_;
  if (total64 > options_.num_blocks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv: allocate: sequence ", seq, "'s prompt of ", prompt.size(), " tokens needs ", total64,
        " blocks of ", options_.block_size, " tokens; the pool has ", options_.num_blocks));
  }
  std::vector<ExtraKey> extras(extra_keys.begin(), extra_keys.end());
  for (const ExtraKey& e : extras) {
    if (e.position < 0 || static_cast<size_t>(e.position) >= prompt.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("kv: allocate: sequence ", seq, ": extra key at position ", e.position,
                       " is outside the prompt's ", prompt.size(), " tokens"));
    }
  }
  std::stable_sort(extras.begin(), extras.end(),
                   [](const ExtraKey& a, const ExtraKey& b) { return a.position < b.position; });

  const auto total = static_cast<int32_t>(total64);
  const std::vector<Hit> hits = lookup(prompt, extras);
  int32_t needed = total;
  for (const Hit& h : hits) {
    if (h.device != kNoBlock && device_.refCount(h.device) > 0) --needed;
  }
  if (needed > device_.numFree()) {
    return absl::ResourceExhaustedError(absl::StrCat("kv: allocate: sequence ", seq, " needs ",
                                                     needed, " free blocks; ", device_.numFree(),
                                                     " of ", options_.num_blocks, " are free"));
  }

  // Pin every hit first, so that making room for the rest cannot evict them.
  AllocateResult result;
  for (const Hit& h : hits) {
    if (h.device != kNoBlock) {
      device_.ref(h.device);
      ++result.device_hit_blocks;
    } else {
      host_.ref(index_.node(h.node).host);
      ++result.host_hit_blocks;
    }
  }
  Sequence s;
  s.blocks.reserve(total);
  for (const Hit& h : hits) {
    if (h.device != kNoBlock) {
      s.blocks.push_back(h.device);
      continue;
    }
    const BlockId d = allocateDevice();
    PrefixNode& node = index_.node(h.node);
    copies_.push_back({CopyKind::kHostToDevice, node.host, d});
    node.device = d;
    device_.setNode(d, h.node);
    host_.unref(node.host);
    s.blocks.push_back(d);
  }
  while (static_cast<int32_t>(s.blocks.size()) < total) s.blocks.push_back(allocateDevice());
  result.new_blocks = total - static_cast<int32_t>(hits.size());

  const auto hit_blocks = static_cast<int32_t>(hits.size());
  s.num_tokens = static_cast<int32_t>(prompt.size());
  s.num_computed = hit_blocks << shift_;
  s.keyed_blocks = hit_blocks;
  if (hit_blocks > 0) {
    const PrefixNode& last = index_.node(hits.back().node);
    s.parent_hash = last.hash;
    s.parent_content = last.content;
  }
  if (options_.enable_prefix_caching) {
    s.pending.assign(prompt.begin() + s.num_computed, prompt.end());
    s.extras = std::move(extras);
  }
  result.cached_tokens = s.num_computed;
  seqs_.emplace(seq, std::move(s));

  ++stats_.lookups;
  const int32_t queried =
      options_.enable_prefix_caching ? static_cast<int32_t>((prompt.size() - 1) >> shift_) : 0;
  stats_.queried_blocks += queried;
  stats_.hit_blocks += result.device_hit_blocks;
  stats_.host_hit_blocks += result.host_hit_blocks;
  stats_.miss_blocks += queried - hit_blocks;
  return result;
}

AdmitCheck KvCacheManager::canAdmit(std::span<const int32_t> prompt,
                                    std::span<const ExtraKey> extra_keys) const {
  AdmitCheck check;
  if (prompt.empty()) return check;
  const int64_t total = (static_cast<int64_t>(prompt.size()) + options_.block_size - 1) >> shift_;
  check.ever_fits = total <= options_.num_blocks;
  if (!check.ever_fits) {
    check.blocks_needed = static_cast<int32_t>(std::min<int64_t>(total, INT32_MAX));
    return check;
  }
  std::vector<ExtraKey> extras(extra_keys.begin(), extra_keys.end());
  std::stable_sort(extras.begin(), extras.end(),
                   [](const ExtraKey& a, const ExtraKey& b) { return a.position < b.position; });
  const std::vector<Hit> hits = lookup(prompt, extras);
  auto needed = static_cast<int32_t>(total);
  for (const Hit& h : hits) {
    if (h.device != kNoBlock && device_.refCount(h.device) > 0) --needed;
  }
  check.blocks_needed = needed;
  check.cached_tokens = static_cast<int32_t>(hits.size()) << shift_;
  check.admissible = needed + watermark_blocks_ <= device_.numFree();
  return check;
}

absl::Status KvCacheManager::setComputed(SeqId seq, int32_t num_computed_tokens) {
  GW_ASSIGN_OR_RETURN(Sequence * s, running(seq, "setComputed"));
  if (num_computed_tokens < 0 || num_computed_tokens > s->num_tokens) {
    return absl::OutOfRangeError(absl::StrCat("kv: setComputed: sequence ", seq, " has ",
                                              s->num_tokens, " tokens; cannot mark ",
                                              num_computed_tokens, " computed"));
  }
  if (num_computed_tokens > s->num_computed) {
    s->num_computed = num_computed_tokens;
    keyComputedBlocks(*s);
  }
  return absl::OkStatus();
}

bool KvCacheManager::canAppend(SeqId seq, int32_t num_tokens) const {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end() || it->second.swapped || num_tokens < 0) return false;
  const Sequence& s = it->second;
  int64_t needed = blocksFor(static_cast<int64_t>(s.num_tokens) + num_tokens) -
                   static_cast<int64_t>(s.blocks.size());
  if (num_tokens > 0 && (s.num_tokens & (options_.block_size - 1)) != 0 && s.tail_shared &&
      device_.refCount(s.blocks.back()) > 1) {
    ++needed;
  }
  return needed <= device_.numFree();
}

absl::Status KvCacheManager::append(SeqId seq, std::span<const int32_t> tokens) {
  GW_ASSIGN_OR_RETURN(Sequence * s, running(seq, "append"));
  if (tokens.empty()) return absl::OkStatus();
  const int64_t new_tokens =
      static_cast<int64_t>(s->num_tokens) + static_cast<int64_t>(tokens.size());
  const int64_t want_blocks = (new_tokens + options_.block_size - 1) >> shift_;
  if (want_blocks > options_.num_blocks || new_tokens > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("kv: append: sequence ", seq, " would hold ",
                                                   new_tokens, " tokens in ", want_blocks,
                                                   " blocks; the pool has ", options_.num_blocks));
  }
  const bool partial = (s->num_tokens & (options_.block_size - 1)) != 0;
  const bool cow = partial && s->tail_shared && device_.refCount(s->blocks.back()) > 1;
  const int64_t needed = want_blocks - static_cast<int64_t>(s->blocks.size()) + (cow ? 1 : 0);
  if (needed > device_.numFree()) {
    return absl::ResourceExhaustedError(absl::StrCat("kv: append: sequence ", seq, " needs ",
                                                     needed, " free blocks; ", device_.numFree(),
                                                     " of ", options_.num_blocks, " are free"));
  }
  // Everything already in the sequence has been computed by the step that produced these tokens.
  if (s->num_computed < s->num_tokens) {
    s->num_computed = s->num_tokens;
    keyComputedBlocks(*s);
  }
  if (cow) {
    const BlockId old = s->blocks.back();
    const BlockId fresh = allocateDevice();
    copies_.push_back({CopyKind::kDeviceToDevice, old, fresh});
    device_.unref(old);  // still held by the other sequence(s)
    s->blocks.back() = fresh;
    ++stats_.cow_copies;
  }
  if (cow || static_cast<int64_t>(s->blocks.size()) < want_blocks) {
    s->tail_shared = false;  // the last block is now this sequence's own
  }
  while (static_cast<int64_t>(s->blocks.size()) < want_blocks) {
    s->blocks.push_back(allocateDevice());
  }
  s->num_tokens = static_cast<int32_t>(new_tokens);
  if (options_.enable_prefix_caching && !s->chain_broken) {
    s->pending.insert(s->pending.end(), tokens.begin(), tokens.end());
  }
  return absl::OkStatus();
}

absl::Status KvCacheManager::fork(SeqId parent, SeqId child) {
  GW_ASSIGN_OR_RETURN(Sequence * p, running(parent, "fork"));
  if (seqs_.contains(child)) {
    return absl::AlreadyExistsError(
        absl::StrCat("kv: fork: child sequence ", child, " is already allocated; pick a new id"));
  }
  p->tail_shared = true;
  Sequence copy = *p;  // p may move when seqs_ grows
  for (BlockId b : copy.blocks) device_.ref(b);
  seqs_.emplace(child, std::move(copy));
  return absl::OkStatus();
}

absl::Status KvCacheManager::free(SeqId seq) {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "kv: free: sequence ", seq, " is not allocated (never allocated, or already freed)"));
  }
  Sequence& s = it->second;
  BlockPool& pool = s.swapped ? host_ : device_;
  // Last block first: a freed prefix's tail is evicted before its head.
  for (std::size_t i = s.blocks.size(); i-- > 0;) {
    pool.unref(s.blocks[i]);
    ++stats_.freed_blocks;
  }
  seqs_.erase(it);
  return absl::OkStatus();
}

int32_t KvCacheManager::evictCached(int32_t max_blocks) {
  int32_t evicted = 0;
  while (evicted < max_blocks) {
    const BlockId b = device_.oldestCached();
    if (b == kNoBlock) break;
    const NodeId n = device_.node(b);
    device_.makeEmpty(b);
    dropDeviceCopy(n, b);
    ++evicted;
  }
  return evicted;
}

absl::StatusOr<int32_t> KvCacheManager::numTokens(SeqId seq) const {
  GW_ASSIGN_OR_RETURN(const Sequence* s, find(seq));
  return s->num_tokens;
}

absl::StatusOr<int32_t> KvCacheManager::numComputed(SeqId seq) const {
  GW_ASSIGN_OR_RETURN(const Sequence* s, find(seq));
  return s->num_computed;
}

absl::StatusOr<bool> KvCacheManager::isSwapped(SeqId seq) const {
  GW_ASSIGN_OR_RETURN(const Sequence* s, find(seq));
  return s->swapped;
}

absl::StatusOr<std::span<const BlockId>> KvCacheManager::blockTable(SeqId seq) const {
  GW_ASSIGN_OR_RETURN(const Sequence* s, find(seq));
  return std::span<const BlockId>(s->blocks);
}

absl::Status KvCacheManager::slotMapping(SeqId seq, int32_t first, int32_t count,
                                         std::span<int64_t> out) const {
  GW_ASSIGN_OR_RETURN(const Sequence* s, find(seq));
  if (s->swapped) {
    return absl::FailedPreconditionError(absl::StrCat(
        "kv: slotMapping: sequence ", seq, " is swapped out; its blocks are on the host"));
  }
  if (first < 0 || count < 0 || static_cast<int64_t>(first) + count > s->num_tokens) {
    return absl::OutOfRangeError(absl::StrCat("kv: slotMapping: tokens [", first, ", ",
                                              static_cast<int64_t>(first) + count, ") of sequence ",
                                              seq, ", which has ", s->num_tokens));
  }
  if (out.size() < static_cast<size_t>(count)) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv: slotMapping: output holds ", out.size(), " slots; ", count, " needed"));
  }
  const int32_t mask = options_.block_size - 1;
  for (int32_t i = 0; i < count; ++i) {
    const int32_t p = first + i;
    out[i] = (static_cast<int64_t>(s->blocks[p >> shift_]) << shift_) + (p & mask);
  }
  return absl::OkStatus();
}

std::vector<BlockCopy> KvCacheManager::takeCopies() {
  std::vector<BlockCopy> out;
  out.swap(copies_);
  return out;
}

Stats KvCacheManager::stats() const {
  Stats s = stats_;
  s.used_blocks = device_.numUsed();
  s.free_blocks = device_.numFree();
  s.cached_blocks = device_.numCached();
  s.host_used_blocks = host_.numUsed();
  s.host_free_blocks = host_.numFree();
  s.host_cached_blocks = host_.numCached();
  s.running_sequences = 0;
  s.swapped_sequences = 0;
  for (const auto& [id, seq] : seqs_) {
    if (seq.swapped) {
      ++s.swapped_sequences;
    } else {
      ++s.running_sequences;
    }
  }
  return s;
}

std::vector<CopyRun> splitCopyRuns(const std::vector<BlockCopy>& copies) {
  std::vector<CopyRun> runs;
  // Blocks read and written in the current run, keyed by (memory, block): device 0, host 1.
  absl::flat_hash_set<uint64_t> read;
  absl::flat_hash_set<uint64_t> written;
  const auto key = [](bool host, BlockId b) {
    return (static_cast<uint64_t>(host) << 32) | static_cast<uint32_t>(b);
  };
  for (size_t i = 0; i < copies.size(); ++i) {
    const BlockCopy& c = copies[i];
    const uint64_t src = key(c.kind == CopyKind::kHostToDevice, c.src);
    const uint64_t dst = key(c.kind == CopyKind::kDeviceToHost, c.dst);
    const bool conflict =
        !runs.empty() && (written.contains(src) || written.contains(dst) || read.contains(dst));
    if (runs.empty() || runs.back().kind != c.kind || conflict) {
      runs.push_back({c.kind, i, i});
      read.clear();
      written.clear();
    }
    runs.back().end = i + 1;
    read.insert(src);
    written.insert(dst);
  }
  return runs;
}

std::string formatStats(const Stats& s) {
  return absl::StrCat(
      "used ", s.used_blocks, "/", s.num_blocks, " (cached ", s.cached_blocks, ") host ",
      s.host_used_blocks, "/", s.num_host_blocks, " (cached ", s.host_cached_blocks, ") seqs ",
      s.running_sequences, "+", s.swapped_sequences, " hits ", s.hit_blocks, "+", s.host_hit_blocks,
      "/", s.queried_blocks, " evicted ", s.evicted_blocks, " offloaded ", s.offloaded_blocks,
      " cow ", s.cow_copies, " swapped ", s.swapped_out_blocks, "/", s.swapped_in_blocks);
}

}  // namespace gangway::kv
