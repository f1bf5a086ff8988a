#include "lru_baseline.h"

#include <absl/strings/str_cat.h>

#include "gangway/kv/prefix_index.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace gangway::kv::bench {

LruBlockManager::LruBlockManager(int32_t num_blocks, int32_t block_size)
    : block_size_(block_size),
      num_blocks_(num_blocks),
      ref_(num_blocks, 0),
      hash_(num_blocks, 0),
      hashed_(num_blocks, false),
      lru_pos_(num_blocks) {
  for (BlockId b = num_blocks - 1; b >= 0; --b) empty_.push_back(b);
  cached_.reserve(num_blocks);
}

uint64_t LruBlockManager::blockHash(uint64_t parent, const int32_t* tokens) const {
  return XXH3_64bits_withSeed(tokens, sizeof(int32_t) * block_size_, parent);
}

std::vector<BlockId> LruBlockManager::lookup(std::span<const int32_t> prompt) const {
  std::vector<BlockId> hits;
  if (prompt.empty()) return hits;
  const auto max_blocks = static_cast<int32_t>((prompt.size() - 1) / block_size_);
  uint64_t hash = kRootHash;
  for (int32_t i = 0; i < max_blocks; ++i) {
    hash = blockHash(hash, prompt.data() + static_cast<size_t>(i) * block_size_);
    const auto it = cached_.find(hash);
    if (it == cached_.end()) break;
    hits.push_back(it->second);
  }
  return hits;
}

AdmitCheck LruBlockManager::canAdmit(std::span<const int32_t> prompt) const {
  AdmitCheck check;
  if (prompt.empty()) return check;
  const auto total = static_cast<int32_t>((prompt.size() + block_size_ - 1) / block_size_);
  check.ever_fits = total <= num_blocks_;
  const std::vector<BlockId> hits = lookup(prompt);
  int32_t needed = total;
  for (BlockId b : hits) {
    if (ref_[b] > 0) --needed;
  }
  check.blocks_needed = needed;
  check.cached_tokens = static_cast<int32_t>(hits.size()) * block_size_;
  check.admissible = check.ever_fits && needed <= numFree();  // no watermark
  return check;
}

BlockId LruBlockManager::takeFree() {
  BlockId b = kNoBlock;
  if (!empty_.empty()) {
    b = empty_.back();
    empty_.pop_back();
  } else {
    b = lru_.front();
    lru_.pop_front();
    cached_.erase(hash_[b]);
    hashed_[b] = false;
    ++evicted_blocks_;
  }
  ref_[b] = 1;
  return b;
}

void LruBlockManager::ref(BlockId b) {
  if (ref_[b]++ == 0) lru_.erase(lru_pos_[b]);  // a hit on a free cached block
}

void LruBlockManager::unref(BlockId b) {
  if (--ref_[b] != 0) return;
  if (hashed_[b]) {
    lru_pos_[b] = lru_.insert(lru_.end(), b);
  } else {
    empty_.push_back(b);
  }
}

absl::StatusOr<AllocateResult> LruBlockManager::allocate(SeqId seq,
                                                         std::span<const int32_t> prompt) {
  if (seqs_.contains(seq) || prompt.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("lru: allocate: bad sequence ", seq));
  }
  const auto total = static_cast<int32_t>((prompt.size() + block_size_ - 1) / block_size_);
  const std::vector<BlockId> hits = lookup(prompt);
  int32_t needed = total;
  for (BlockId b : hits) {
    if (ref_[b] > 0) --needed;
  }
  if (needed > numFree()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("lru: allocate: ", needed, " blocks needed, ", numFree(), " free"));
  }
  Sequence s;
  s.tokens.assign(prompt.begin(), prompt.end());
  for (BlockId b : hits) {  // pin the hits before taking new blocks, which may evict
    ref(b);
    s.blocks.push_back(b);
  }
  while (static_cast<int32_t>(s.blocks.size()) < total) s.blocks.push_back(takeFree());
  s.keyed_blocks = static_cast<int32_t>(hits.size());
  s.num_computed = s.keyed_blocks * block_size_;
  s.parent_hash = hits.empty() ? kRootHash : hash_[hits.back()];
  AllocateResult result;
  result.cached_tokens = s.num_computed;
  result.device_hit_blocks = static_cast<int32_t>(hits.size());
  result.new_blocks = total - result.device_hit_blocks;
  seqs_.emplace(seq, std::move(s));
  return result;
}

void LruBlockManager::keyComputed(Sequence& s) {
  const int32_t full = s.num_computed / block_size_;
  for (; s.keyed_blocks < full; ++s.keyed_blocks) {
    const int32_t i = s.keyed_blocks;
    const uint64_t h =
        blockHash(s.parent_hash, s.tokens.data() + static_cast<size_t>(i) * block_size_);
    const BlockId b = s.blocks[i];
    if (!hashed_[b] && cached_.try_emplace(h, b).second) {
      hash_[b] = h;
      hashed_[b] = true;
    }
    s.parent_hash = h;
  }
}

bool LruBlockManager::canAppend(SeqId seq) const {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end()) return false;
  const bool new_block = it->second.tokens.size() % block_size_ == 0;
  return !new_block || numFree() > 0;
}

absl::Status LruBlockManager::appendToken(SeqId seq, int32_t token) {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("lru: append: ", seq));
  Sequence& s = it->second;
  const bool new_block = s.tokens.size() % block_size_ == 0;
  if (new_block && numFree() == 0) return absl::ResourceExhaustedError("lru: append: no block");
  s.num_computed = static_cast<int32_t>(s.tokens.size());
  keyComputed(s);
  if (new_block) s.blocks.push_back(takeFree());
  s.tokens.push_back(token);
  return absl::OkStatus();
}

absl::Status LruBlockManager::setComputed(SeqId seq, int32_t num_computed) {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("lru: setComputed: ", seq));
  Sequence& s = it->second;
  if (num_computed > static_cast<int32_t>(s.tokens.size())) {
    return absl::OutOfRangeError("lru: setComputed: past the sequence's tokens");
  }
  if (num_computed > s.num_computed) {
    s.num_computed = num_computed;
    keyComputed(s);
  }
  return absl::OkStatus();
}

absl::Status LruBlockManager::free(SeqId seq) {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("lru: free: ", seq));
  for (BlockId b : it->second.blocks) unref(b);  // head first: the head is evicted first
  seqs_.erase(it);
  return absl::OkStatus();
}

}  // namespace gangway::kv::bench
