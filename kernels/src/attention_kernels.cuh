// The paged decode attention kernels, flash-decoding style (see kv_cache_cuda.h); device code,
// included by attention_cuda.cu.
//
// Partition kernel, one thread block of 4 warps per (kv head x tile of kHeads query heads,
// sequence, partition of up to 512 tokens):
//  - a *token group* of kT lanes (kT = head_dim / 8 rounded up to a power of two) holds one token's
//    row; lane r loads elements [8r, 8r + 8) of it in one 16-byte load (8 bytes for fp8, two for
//    float32), so a warp reads 32 / kT rows per step, 4 steps unrolled to keep loads in flight;
//  - each lane holds its 8 query elements of all kHeads heads in registers (times scale, and
//    k_scale for fp8) and computes kHeads partial dot products; a butterfly that halves the
//    values it carries at each step (reduce-scatter) combines them across the group with
//    kHeads - 1 + log2(kT / kHeads) shuffles instead of kHeads * log2(kT), leaving each head's
//    score on one lane;
//  - scores go to shared memory; one warp per head takes their max and sum of exponentials;
//  - V rows are read the same way, each lane accumulating out[h][8r .. 8r + 8) for every head;
//    token groups are summed with shuffles, warps through shared memory.
// With one partition the block writes the output; otherwise its max, sum and unnormalised output
// go to the float32 workspace and the reduce kernel, one block per (head, sequence), combines them:
// out = sum_p e^(m_p - M) o_p / sum_p e^(m_p - M) l_p.
#pragma once

#include <cstdint>

#include "gangway/kernels/fp8.h"
#include "gangway/kernels/kv_cache.h"

#include "attention_chunk.cuh"
#include "kv_elem.h"

namespace gangway::kernels::attention {

inline constexpr int kWarps = 4;
inline constexpr int kThreads = kWarps * 32;
inline constexpr int kUnroll = 4;
inline constexpr int kMaxPartition = 512;
inline constexpr int kMaxHeads = 8;
inline constexpr int kReduceThreads = 256;  // >= the largest head_dim
inline constexpr int kReduceChunk = 1024;   // partitions weighed per pass of the reduce kernel
inline constexpr unsigned kFull = 0xffffffffU;

struct AttnParams {
  void* out;
  const void* query;
  int64_t query_stride;
  KvDataType io;
  const void* key_cache;
  const void* value_cache;
  int32_t num_heads;
  int32_t num_kv_heads;
  int32_t head_dim;
  int32_t block_size;
  int32_t max_blocks_per_seq;
  const int32_t* block_tables;
  const int32_t* seq_lens;
  int32_t max_seq_len;  // clamped to the table's capacity
  int32_t group;        // query heads per kv head
  int32_t head_tiles;   // ceil(group / kHeads)
  int32_t partition;    // tokens per partition
  int32_t num_partitions;
  float q_mul;    // scale, times k_scale for fp8
  float v_mul;    // v_scale for fp8, else 1
  float* ws_max;  // [num_seqs][num_heads][num_partitions]
  float* ws_sum;
  float* ws_out;  // [num_seqs][num_heads][num_partitions][head_dim]
};

// Reduce-scatter over the kT lanes of a token group of the kN values each lane holds in v[0..kN):
// at each butterfly step a lane keeps half of its values, sends the other half to its partner and
// adds what the partner sent. Afterwards lane r holds the group's totals of values
// [r / kStride * kOwn, ... + kOwn) in v[0..kOwn), where kOwn = max(kN / kT, 1) and
// kStride = max(kT / kN, 1).
template <int kN, int kOff, int kSize>
__device__ __forceinline__ void reduceScatter(float (&v)[kSize], int r) {
  if constexpr (kOff >= 1) {
    if constexpr (kN > 1) {
      constexpr int kHalf = kN / 2;
      const bool upper = (r & kOff) != 0;
#pragma unroll
      for (int i = 0; i < kHalf; ++i) {
        const float send = upper ? v[i] : v[i + kHalf];
        const float keep = upper ? v[i + kHalf] : v[i];
        v[i] = keep + __shfl_xor_sync(kFull, send, kOff);
      }
      reduceScatter<kHalf, kOff / 2>(v, r);
    } else {
      v[0] += __shfl_xor_sync(kFull, v[0], kOff);
      reduceScatter<1, kOff / 2>(v, r);
    }
  }
}

__device__ __forceinline__ float warpMax(float x) {
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) x = fmaxf(x, __shfl_xor_sync(kFull, x, off));
  return x;
}
__device__ __forceinline__ float warpSum(float x) {
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) x += __shfl_xor_sync(kFull, x, off);
  return x;
}

template <KvDataType kCache, int kT, int kHeads>
__global__ void __launch_bounds__(kThreads) attentionPartitionKernel(const AttnParams p) {
  using Storage = detail::KvStorage<kCache>;
  constexpr int kGroups = 32 / kT;         // tokens per warp per step
  constexpr int kStep = kWarps * kGroups;  // tokens per block per step
  constexpr int kOwn = kHeads > kT ? kHeads / kT : 1;
  constexpr int kStride = kT > kHeads ? kT / kHeads : 1;
  __shared__ float logits[kHeads][kMaxPartition];
  __shared__ float red[2][kHeads][kT * 8];
  __shared__ float head_max[kHeads];
  __shared__ float head_sum[kHeads];

  const int kv_head = static_cast<int>(blockIdx.x) / p.head_tiles;
  const int tile = static_cast<int>(blockIdx.x) % p.head_tiles;
  const int seq = static_cast<int>(blockIdx.y);
  const int part = static_cast<int>(blockIdx.z);
  const int head0 = kv_head * p.group + tile * kHeads;
  const int nh = min(kHeads, p.group - tile * kHeads);
  const int len = max(0, min(p.seq_lens[seq], p.max_seq_len));
  const int start = part * p.partition;
  const int hd = p.head_dim;
  const int64_t out_base = (static_cast<int64_t>(seq) * p.num_heads + head0) * hd;
  if (start >= len) {
    if (p.num_partitions == 1) {  // len == 0: zeros (the reduce kernel does this otherwise)
      for (int i = threadIdx.x; i < nh * hd; i += kThreads)
        storeIo(p.out, p.io, out_base + i, 0.0f);
    }
    return;
  }
  const int end = min(start + p.partition, len);
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  const int r = lane % kT;
  const int grp = lane / kT;
  const bool active = r < hd / 8;

  float q[kHeads][8];
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
    const int64_t base = seq * p.query_stride + static_cast<int64_t>(head0 + h) * hd + r * 8;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      q[h][j] = (active && h < nh) ? loadIo(p.query, p.io, base + j) * p.q_mul : 0.0f;
    }
  }

  const int32_t* table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  const int64_t slot_elems = static_cast<int64_t>(p.num_kv_heads) * hd;
  const int64_t head_off = static_cast<int64_t>(kv_head) * hd + r * 8;
  const int bs = p.block_size;
  auto row_of = [&](const void* cache, int t) {
    const int64_t slot = static_cast<int64_t>(table[t / bs]) * bs + t % bs;
    return static_cast<const Storage*>(cache) + slot * slot_elems + head_off;
  };

  // Scores.
  for (int base = start; base < end; base += kStep * kUnroll) {
    Chunk<kCache> c[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + u * kStep + warp * kGroups + grp;
      if (active && t < end) {
        c[u].load(row_of(p.key_cache, t));
      } else {
        c[u] = Chunk<kCache>{};
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + u * kStep + warp * kGroups + grp;
      float k[8];
      c[u].toFloat(k);
      float dots[kHeads];
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
        float acc = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; ++j) acc = fmaf(q[h][j], k[j], acc);
        dots[h] = acc;
      }
      reduceScatter<kHeads, kT / 2>(dots, r);  // every lane takes part
      if (t < end && r % kStride == 0) {
#pragma unroll
        for (int i = 0; i < kOwn; ++i) logits[r / kStride * kOwn + i][t - start] = dots[i];
      }
    }
  }
  __syncthreads();

  // Softmax within the partition: one warp per head.
  const int n = end - start;
  for (int h = warp; h < kHeads; h += kWarps) {
    float m = -INFINITY;
    for (int i = lane; i < n; i += 32) m = fmaxf(m, logits[h][i]);
    m = warpMax(m);
    float sum = 0.0f;
    for (int i = lane; i < n; i += 32) {
      const float e = expf(logits[h][i] - m);
      logits[h][i] = e;
      sum += e;
    }
    sum = warpSum(sum);
    if (lane == 0) {
      head_max[h] = m;
      head_sum[h] = sum;
    }
  }
  __syncthreads();

  // Weighted values.
  float acc[kHeads][8];
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[h][j] = 0.0f;
  }
  for (int base = start; base < end; base += kStep * kUnroll) {
    Chunk<kCache> c[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + u * kStep + warp * kGroups + grp;
      if (active && t < end) {
        c[u].load(row_of(p.value_cache, t));
      } else {
        c[u] = Chunk<kCache>{};
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + u * kStep + warp * kGroups + grp;
      if (t < end) {
        float v[8];
        c[u].toFloat(v);
#pragma unroll
        for (int h = 0; h < kHeads; ++h) {
          const float w = logits[h][t - start];
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[h][j] = fmaf(w, v[j], acc[h][j]);
        }
      }
    }
  }
  // Token groups of a warp, then the 4 warps (3 + 2 -> 1 + 0 -> 0).
#pragma unroll
  for (int off = kT; off < 32; off *= 2) {
#pragma unroll
    for (int h = 0; h < kHeads; ++h) {
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[h][j] += __shfl_xor_sync(kFull, acc[h][j], off);
    }
  }
  auto exchange = [&](bool write, int slot, bool read) {
    if (grp == 0 && write) {
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
#pragma unroll
        for (int j = 0; j < 8; ++j) red[slot][h][r * 8 + j] = acc[h][j];
      }
    }
    __syncthreads();
    if (grp == 0 && read) {
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[h][j] += red[slot][h][r * 8 + j];
      }
    }
    __syncthreads();
  };
  exchange(warp >= 2, warp & 1, warp < 2);  // warp 2 -> 0, 3 -> 1
  exchange(warp == 1, 0, warp == 0);        // warp 1 -> 0

  if (warp != 0 || grp != 0 || !active) return;
  const int64_t ws_row =
      (static_cast<int64_t>(seq) * p.num_heads + head0) * p.num_partitions + part;
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {  // constant indices keep acc in registers
    if (h >= nh) break;
    if (p.num_partitions == 1) {
      const float mul = p.v_mul / head_sum[h];
#pragma unroll
      for (int j = 0; j < 8; ++j)
        storeIo(p.out, p.io, out_base + h * hd + r * 8 + j, acc[h][j] * mul);
    } else {
      const int64_t row = ws_row + static_cast<int64_t>(h) * p.num_partitions;
#pragma unroll
      for (int j = 0; j < 8; ++j) p.ws_out[row * hd + r * 8 + j] = acc[h][j] * p.v_mul;
      if (r == 0) {
        p.ws_max[row] = head_max[h];
        p.ws_sum[row] = head_sum[h];
      }
    }
  }
}

// One block per (query head, sequence): combine the sequence's partitions.
__global__ void __launch_bounds__(kReduceThreads) attentionReduceKernel(const AttnParams p) {
  __shared__ float weight[kReduceChunk];
  __shared__ float scratch[kReduceThreads / 32];
  const int head = static_cast<int>(blockIdx.x);
  const int seq = static_cast<int>(blockIdx.y);
  const int tid = static_cast<int>(threadIdx.x);
  const int hd = p.head_dim;
  const int len = max(0, min(p.seq_lens[seq], p.max_seq_len));
  const int parts = (len + p.partition - 1) / p.partition;
  const int64_t out_base = (static_cast<int64_t>(seq) * p.num_heads + head) * hd;
  if (parts == 0) {
    for (int d = tid; d < hd; d += kReduceThreads) storeIo(p.out, p.io, out_base + d, 0.0f);
    return;
  }
  const int64_t row0 = (static_cast<int64_t>(seq) * p.num_heads + head) * p.num_partitions;
  const float* mx = p.ws_max + row0;
  const float* sums = p.ws_sum + row0;
  const float* parts_out = p.ws_out + row0 * hd;
  float m = -INFINITY;
  for (int i = tid; i < parts; i += kReduceThreads) m = fmaxf(m, mx[i]);
  m = warpMax(m);
  if ((tid & 31) == 0) scratch[tid >> 5] = m;
  __syncthreads();
  m = scratch[0];
#pragma unroll
  for (int w = 1; w < kReduceThreads / 32; ++w) m = fmaxf(m, scratch[w]);
  float total = 0.0f;
  float acc = 0.0f;
  for (int c0 = 0; c0 < parts; c0 += kReduceChunk) {
    const int cnt = min(kReduceChunk, parts - c0);
    __syncthreads();  // the previous chunk's weights are used
    for (int i = tid; i < cnt; i += kReduceThreads) weight[i] = expf(mx[c0 + i] - m);
    __syncthreads();
    for (int i = 0; i < cnt; ++i) total = fmaf(weight[i], sums[c0 + i], total);
    if (tid < hd) {
      for (int i = 0; i < cnt; ++i) {
        acc = fmaf(weight[i], parts_out[static_cast<int64_t>(c0 + i) * hd + tid], acc);
      }
    }
  }
  if (tid < hd) storeIo(p.out, p.io, out_base + tid, acc / total);
}

}  // namespace gangway::kernels::attention
