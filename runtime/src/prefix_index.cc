#include "gangway/kv/prefix_index.h"

#include <cstring>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "gangway/common/check.h"

namespace gangway::kv {

PrefixIndex::PrefixIndex(int32_t block_size, int32_t capacity, int32_t hash_bits)
    : block_size_(block_size),
      hash_mask_(hash_bits >= 64 ? ~0ULL : (1ULL << hash_bits) - 1),
      nodes_(capacity),
      tokens_(static_cast<size_t>(capacity) * block_size) {
  free_nodes_.reserve(capacity);
  for (NodeId n = capacity - 1; n >= 0; --n) free_nodes_.push_back(n);
  index_.reserve(capacity);
}

uint64_t PrefixIndex::blockHash(uint64_t parent_hash, std::span<const int32_t> tokens,
                                std::span<const ExtraKey> extras) const {
  uint64_t h = XXH3_64bits_withSeed(tokens.data(), tokens.size_bytes(), parent_hash);
  for (const ExtraKey& e : extras) {
    const uint64_t pair[2] = {static_cast<uint64_t>(e.position), e.value};
    h = XXH3_64bits_withSeed(pair, sizeof(pair), h);
  }
  return h & hash_mask_;
}

bool PrefixIndex::matches(NodeId n, uint64_t parent_content, std::span<const int32_t> tokens,
                          std::span<const ExtraKey> extras) const {
  const PrefixNode& node = nodes_[n];
  if (node.parent_content != parent_content) return false;
  if (std::memcmp(&tokens_[static_cast<size_t>(n) * block_size_], tokens.data(),
                  tokens.size_bytes()) != 0) {
    return false;
  }
  if (node.num_extra != static_cast<int32_t>(extras.size())) return false;
  if (extras.empty()) return true;
  const std::vector<ExtraKey>& stored = extras_.at(n);
  for (size_t i = 0; i < extras.size(); ++i) {
    if (stored[i].position != extras[i].position || stored[i].value != extras[i].value) {
      return false;
    }
  }
  return true;
}

NodeId PrefixIndex::find(uint64_t hash, uint64_t parent_content, std::span<const int32_t> tokens,
                         std::span<const ExtraKey> extras) const {
  const auto it = index_.find(hash);
  if (it == index_.end()) return kNoNode;
  return matches(it->second, parent_content, tokens, extras) ? it->second : kNoNode;
}

NodeId PrefixIndex::insert(uint64_t hash, uint64_t parent_content, std::span<const int32_t> tokens,
                           std::span<const ExtraKey> extras, bool* existed) {
  *existed = false;
  const auto [it, inserted] = index_.try_emplace(hash, kNoNode);
  if (!inserted) {
    if (matches(it->second, parent_content, tokens, extras)) {
      *existed = true;
      return it->second;
    }
    return kNoNode;  // a collision: the hash belongs to other content
  }
  GW_CHECK(!free_nodes_.empty());
  const NodeId n = free_nodes_.back();
  free_nodes_.pop_back();
  it->second = n;
  PrefixNode& node = nodes_[n];
  node.hash = hash;
  node.content = next_content_++;
  node.parent_content = parent_content;
  node.device = kNoBlock;
  node.host = kNoBlock;
  node.num_extra = static_cast<int32_t>(extras.size());
  std::memcpy(&tokens_[static_cast<size_t>(n) * block_size_], tokens.data(), tokens.size_bytes());
  if (!extras.empty()) extras_[n].assign(extras.begin(), extras.end());
  return n;
}

void PrefixIndex::erase(NodeId n) {
  PrefixNode& node = nodes_[n];
  GW_CHECK(node.device == kNoBlock && node.host == kNoBlock);
  index_.erase(node.hash);
  if (node.num_extra != 0) extras_.erase(n);
  node = PrefixNode{};
  free_nodes_.push_back(n);
}

}  // namespace gangway::kv
