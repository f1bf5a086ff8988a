// The host tier of the KV cache: host blocks, and moving a sequence's blocks out of the device
// and back (swapOut / swapIn), with the copies the server carries out. The rest of the manager is
// manager.cc.
#include <algorithm>

#include <absl/strings/str_cat.h>

#include "gangway/common/status.h"
#include "gangway/kv/manager.h"

namespace gangway::kv {

BlockId KvCacheManager::allocateHost() {
  const BlockId h = host_.allocate();
  const NodeId n = host_.node(h);
  if (n != kNoNode) {
    host_.setNode(h, kNoNode);
    PrefixNode& node = index_.node(n);
    node.host = kNoBlock;
    ++stats_.host_evicted_blocks;
    if (node.device == kNoBlock) {
      index_.erase(n);
      ++stats_.dropped_prefixes;
    }
  }
  return h;
}

absl::Status KvCacheManager::swapOut(SeqId seq) {
  GW_ASSIGN_OR_RETURN(Sequence * s, running(seq, "swapOut"));
  if (options_.num_host_blocks == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "kv: swapOut: sequence ", seq, ": there is no host tier (num_host_blocks is 0)"));
  }
  int32_t needed = 0;
  for (BlockId b : s->blocks) {
    const NodeId n = device_.node(b);
    const BlockId h = n == kNoNode ? kNoBlock : index_.node(n).host;
    if (h == kNoBlock || host_.refCount(h) == 0) ++needed;
  }
  if (static_cast<int32_t>(s->blocks.size()) > options_.num_host_blocks) {
    return absl::InvalidArgumentError(absl::StrCat("kv: swapOut: sequence ", seq, " holds ",
                                                   s->blocks.size(), " blocks; the host tier has ",
                                                   options_.num_host_blocks));
  }
  if (needed > host_.numFree()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("kv: swapOut: sequence ", seq, " needs ", needed, " free host blocks; ",
                     host_.numFree(), " of ", options_.num_host_blocks, " are free"));
  }
  std::vector<BlockId> host_blocks(s->blocks.size(), kNoBlock);
  for (size_t i = 0; i < s->blocks.size(); ++i) {  // pin host copies that already exist
    const NodeId n = device_.node(s->blocks[i]);
    if (n != kNoNode && index_.node(n).host != kNoBlock) {
      host_blocks[i] = index_.node(n).host;
      host_.ref(host_blocks[i]);
    }
  }
  for (size_t i = 0; i < s->blocks.size(); ++i) {
    const BlockId d = s->blocks[i];
    if (host_blocks[i] == kNoBlock) {
      const BlockId h = allocateHost();
      copies_.push_back({CopyKind::kDeviceToHost, d, h});
      const NodeId n = device_.node(d);
      if (n != kNoNode) {
        index_.node(n).host = h;
        host_.setNode(h, n);
      }
      host_blocks[i] = h;
    }
    device_.unref(d);
  }
  stats_.swapped_out_blocks += static_cast<int64_t>(s->blocks.size());
  ++stats_.preemptions;
  s->blocks = std::move(host_blocks);
  s->swapped = true;
  return absl::OkStatus();
}

bool KvCacheManager::canSwapIn(SeqId seq) const {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end() || !it->second.swapped) return false;
  int32_t needed = 0;
  for (BlockId h : it->second.blocks) {
    const NodeId n = host_.node(h);
    const BlockId d = n == kNoNode ? kNoBlock : index_.node(n).device;
    if (d == kNoBlock || device_.refCount(d) == 0) ++needed;
  }
  return needed <= device_.numFree();
}

absl::Status KvCacheManager::swapIn(SeqId seq) {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end()) {
    return absl::NotFoundError(absl::StrCat("kv: swapIn: sequence ", seq,
                                            " is not allocated (never allocated, or freed)"));
  }
  Sequence& s = it->second;
  if (!s.swapped) {
    return absl::FailedPreconditionError(
        absl::StrCat("kv: swapIn: sequence ", seq, " is not swapped out"));
  }
  if (!canSwapIn(seq)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("kv: swapIn: sequence ", seq, " needs more free blocks than the ",
                     device_.numFree(), " of ", options_.num_blocks, " free"));
  }
  std::vector<BlockId> device_blocks(s.blocks.size(), kNoBlock);
  for (size_t i = 0; i < s.blocks.size(); ++i) {  // pin device copies that still exist
    const NodeId n = host_.node(s.blocks[i]);
    if (n != kNoNode && index_.node(n).device != kNoBlock) {
      device_blocks[i] = index_.node(n).device;
      device_.ref(device_blocks[i]);
    }
  }
  for (size_t i = 0; i < s.blocks.size(); ++i) {
    const BlockId h = s.blocks[i];
    if (device_blocks[i] == kNoBlock) {
      const BlockId d = allocateDevice();
      copies_.push_back({CopyKind::kHostToDevice, h, d});
      const NodeId n = host_.node(h);
      if (n != kNoNode) {
        index_.node(n).device = d;
        device_.setNode(d, n);
      }
      device_blocks[i] = d;
    }
    host_.unref(h);
  }
  stats_.swapped_in_blocks += static_cast<int64_t>(s.blocks.size());
  s.blocks = std::move(device_blocks);
  s.swapped = false;
  return absl::OkStatus();
}

}  // namespace gangway::kv
