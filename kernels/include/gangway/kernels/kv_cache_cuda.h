// The KV-cache kernels of kv_cache.h on device memory (built when CUDA is; GANGWAY_HAVE_CUDA):
// the same arguments and layout, enqueued on `stream` (a cudaStream_t; nullptr: the default
// stream). Errors: InvalidArgument for arguments checked on the host, before anything is enqueued;
// Internal naming the CUDA error, with file:line, when CUDA fails.
//
// What is device memory: the caches, key, value, slot_mapping, query, out, block_tables and
// seq_lens. What stays host memory: the argument structs, the BlockPair arrays and the array of
// cache pointers of copyBlocksDevice. Where the host functions check the contents of buffers
// (slots, sequence lengths, block ids), the device ones cannot without synchronising with the
// stream; each says below what it does instead.
#pragma once

#include <cstddef>
#include <cstdint>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "gangway/kernels/kv_cache.h"

namespace gangway::kernels {

// reshapeAndCacheHost on the device, bit for bit the same bytes (fp8.h's conversions on both).
// slot_mapping is device memory and is not read on the host: a token whose slot is negative or
// >= kvCacheSlots(cache) is skipped (nothing written for it, no error); check slots on the host
// where that matters. Buffers aligned to their element type.
absl::Status reshapeAndCacheDevice(const ReshapeAndCacheArgs& args, void* stream);

// Paged decode attention, flash-decoding style. The grid is (kv head x query-head tile, sequence,
// partition): each thread block reads the K and V rows of one partition (512, 256 or 128 tokens:
// smaller when larger ones would leave SMs idle) of one sequence once, for up to 8 query heads of
// its kv head; 16-byte loads, warp shuffles for the dot products, float32 throughout. With more
// than one partition each block writes its (max, sum, partial output) to a float32 workspace and a
// second kernel combines them.
//
// Workspace: pass `workspace` of at least pagedDecodeAttentionWorkspaceBytes(args) bytes (device
// memory, any 4-byte alignment; it may be reused once the stream has passed this call), or nullptr
// to have the call allocate and free it on the stream (cudaMallocAsync / cudaFreeAsync; both can
// be captured in a CUDA graph). 0 bytes are needed when one partition covers max_seq_len. The
// partition size, and so the workspace, depends on the shapes, max_seq_len and the current
// device's SM count, not on the contents of any buffer.
//
// Limits: head_dim a multiple of 8 up to 256; key_cache and value_cache 16-byte aligned;
// num_seqs <= 65535. seq_lens and block_tables are device memory and not read on the host: a
// length above max_seq_len (or the table's capacity) is clamped to it, and block ids must be in
// range (they are not checked; pagedDecodeAttentionHost checks them).
absl::StatusOr<std::size_t> pagedDecodeAttentionWorkspaceBytes(const PagedAttentionArgs& args);
absl::Status pagedDecodeAttentionDevice(const PagedAttentionArgs& args, void* workspace,
                                        std::size_t workspace_bytes, void* stream);

// copyBlocksHost on device caches: `caches` is a host array of device pointers, `pairs` a host
// array; both are checked on the host and passed to the kernel by value, so the call needs no
// allocation or synchronisation, and the arrays may be reused when it returns. One kernel launch
// for all caches and pairs (one per 256 caches x 1024 pairs beyond that).
absl::Status copyBlocksDevice(void* const* caches, int32_t num_caches, const KvCacheShape& shape,
                              const BlockPair* pairs, int32_t num_pairs, void* stream);

// swapBlocksHost between any two memories CUDA can copy between (host <-> device, device <->
// device): one cudaMemcpyAsync (cudaMemcpyDefault) per run of consecutive pairs (mergeBlockRuns).
// Host caches should be pinned (cudaHostAlloc / cudaHostRegister) for the copies to be
// asynchronous; pageable memory works but each copy then waits for the stream.
absl::Status swapBlocksDevice(const void* src_cache, const KvCacheShape& src_shape, void* dst_cache,
                              const KvCacheShape& dst_shape, const BlockPair* pairs,
                              int32_t num_pairs, void* stream);

}  // namespace gangway::kernels
