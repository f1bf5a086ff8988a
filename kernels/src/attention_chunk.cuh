// Device element access for the attention kernels: query and output elements by run-time type
// (read once per block, written once), and Chunk<cache type>, eight consecutive cache elements
// loaded with one 16-byte load (8 bytes for fp8, two 16-byte loads for float32) and converted to
// float. Device code: included (through attention_kernels.cuh) by attention_cuda.cu.
#pragma once

#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gangway/kernels/fp8.h"
#include "gangway/kernels/kv_cache.h"

namespace gangway::kernels::attention {

__device__ __forceinline__ float loadIo(const void* base, KvDataType io, int64_t i) {
  switch (io) {
    case KvDataType::kBFloat16:
      return hd::bfloat16ToFloat(static_cast<const uint16_t*>(base)[i]);
    case KvDataType::kFloat32:
      return static_cast<const float*>(base)[i];
    default:
      return hd::halfToFloat(static_cast<const uint16_t*>(base)[i]);
  }
}

__device__ __forceinline__ void storeIo(void* base, KvDataType io, int64_t i, float v) {
  switch (io) {
    case KvDataType::kBFloat16:
      static_cast<uint16_t*>(base)[i] = hd::floatToBfloat16(v);
      break;
    case KvDataType::kFloat32:
      static_cast<float*>(base)[i] = v;
      break;
    default:
      static_cast<uint16_t*>(base)[i] = hd::floatToHalf(v);
  }
}

// Eight consecutive cache elements: their raw bits, one load, and their float values.
template <KvDataType kCache>
struct Chunk;
template <>
struct Chunk<KvDataType::kFloat16> {
  uint4 raw;
  __device__ __forceinline__ void load(const void* p) { raw = *static_cast<const uint4*>(p); }
  __device__ __forceinline__ void toFloat(float (&f)[8]) const {
    const auto* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 v = __half22float2(h[i]);
      f[2 * i] = v.x;
      f[2 * i + 1] = v.y;
    }
  }
};
template <>
struct Chunk<KvDataType::kBFloat16> {
  uint4 raw;
  __device__ __forceinline__ void load(const void* p) { raw = *static_cast<const uint4*>(p); }
  __device__ __forceinline__ static void pair(uint32_t w, float& lo, float& hi) {
    lo = __uint_as_float(w << 16);
    hi = __uint_as_float(w & 0xffff0000U);
  }
  __device__ __forceinline__ void toFloat(float (&f)[8]) const {
    pair(raw.x, f[0], f[1]);
    pair(raw.y, f[2], f[3]);
    pair(raw.z, f[4], f[5]);
    pair(raw.w, f[6], f[7]);
  }
};
template <>
struct Chunk<KvDataType::kFloat32> {
  float4 lo;
  float4 hi;
  __device__ __forceinline__ void load(const void* p) {
    lo = static_cast<const float4*>(p)[0];
    hi = static_cast<const float4*>(p)[1];
  }
  __device__ __forceinline__ void toFloat(float (&f)[8]) const {
    f[0] = lo.x;
    f[1] = lo.y;
    f[2] = lo.z;
    f[3] = lo.w;
    f[4] = hi.x;
    f[5] = hi.y;
    f[6] = hi.z;
    f[7] = hi.w;
  }
};
template <>
struct Chunk<KvDataType::kFp8E4M3> {
  uint2 raw;
  __device__ __forceinline__ void load(const void* p) { raw = *static_cast<const uint2*>(p); }
  __device__ __forceinline__ void toFloat(float (&f)[8]) const {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t w = i < 4 ? raw.x : raw.y;
      f[i] = hd::fp8e4m3ToFloat(static_cast<uint8_t>(w >> (8 * (i % 4))));
    }
  }
};

}  // namespace gangway::kernels::attention
