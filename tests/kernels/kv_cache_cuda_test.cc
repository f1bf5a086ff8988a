// The device KV-cache kernels against the host ones: the same bytes for reshapeAndCache, copyBlocks
// and swapBlocks; attention within the tolerance of kv_test_util.h of both the naive float64
// attention and the host result. Skipped where no GPU is present (CI); run on a GPU machine.
#include "gangway/kernels/kv_cache_cuda.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "gangway/kernels/kv_cache.h"
#include "gangway/kernels/reduce_cuda.h"

#include "kv_test_util.h"

namespace gangway::kernels {
namespace {

using testing::AttentionConfig;
using testing::AttentionProblem;

#define SKIP_WITHOUT_GPU() \
  if (cudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device"

// Device memory holding a copy of a host vector.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
    EXPECT_EQ(cudaMalloc(&ptr_, bytes == 0 ? 1 : bytes), cudaSuccess);
  }
  template <typename T>
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size() * sizeof(T)) {
    EXPECT_EQ(cudaMemcpy(ptr_, host.data(), bytes_, cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::vector<uint8_t> download() const {
    std::vector<uint8_t> host(bytes_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr_, bytes_, cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

std::vector<uint8_t> randomBytes(std::size_t n, std::mt19937& rng) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// --- reshapeAndCache ---

TEST(ReshapeAndCacheCuda, SameBytesAsHostForEveryTypeCombination) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(21);
  for (KvDataType in : {KvDataType::kFloat16, KvDataType::kBFloat16, KvDataType::kFloat32}) {
    for (KvDataType cache_type : kAllKvDataTypes) {
      const KvCacheShape cache{37, 16, 4, 128, cache_type};
      const int64_t row = kvTokenElements(cache);
      const int64_t tokens = 200;
      const int64_t stride = 3 * row;  // [tokens][k | v | other]
      std::vector<uint8_t> kv(static_cast<std::size_t>(tokens * stride) * kvDataTypeSize(in));
      std::uniform_real_distribution<float> value(-500.0f, 500.0f);  // beyond fp8's range too
      for (int64_t i = 0; i < tokens * stride; ++i) testing::setElem(in, kv.data(), i, value(rng));
      std::vector<int64_t> all(static_cast<std::size_t>(kvCacheSlots(cache)));
      for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
      std::shuffle(all.begin(), all.end(), rng);
      std::vector<int64_t> slots(all.begin(), all.begin() + tokens);
      for (int64_t t = 0; t < tokens; t += 9) slots[static_cast<std::size_t>(t)] = -1;
      std::vector<uint8_t> key_cache = randomBytes(kvCacheBytes(cache), rng);
      std::vector<uint8_t> value_cache = randomBytes(kvCacheBytes(cache), rng);

      DeviceBuffer d_kv(kv);
      DeviceBuffer d_slots(slots);
      DeviceBuffer d_kc(key_cache);
      DeviceBuffer d_vc(value_cache);
      ReshapeAndCacheArgs a;
      a.key = kv.data();
      a.value = kv.data() + static_cast<std::size_t>(row) * kvDataTypeSize(in);
      a.num_tokens = tokens;
      a.key_stride = stride;
      a.value_stride = stride;
      a.input_type = in;
      a.slot_mapping = slots.data();
      a.key_cache = key_cache.data();
      a.value_cache = value_cache.data();
      a.cache = cache;
      a.k_scale = cache_type == KvDataType::kFp8E4M3 ? 0.75f : 1.0f;
      a.v_scale = cache_type == KvDataType::kFp8E4M3 ? 1.25f : 1.0f;
      ReshapeAndCacheArgs d = a;
      d.key = d_kv.get();
      d.value = d_kv.as<uint8_t>() + static_cast<std::size_t>(row) * kvDataTypeSize(in);
      d.slot_mapping = d_slots.as<int64_t>();
      d.key_cache = d_kc.get();
      d.value_cache = d_vc.get();
      ASSERT_TRUE(reshapeAndCacheHost(a).ok());
      ASSERT_TRUE(reshapeAndCacheDevice(d, nullptr).ok());
      EXPECT_EQ(d_kc.download(), key_cache)
          << kvDataTypeName(in) << " " << kvDataTypeName(cache_type);
      EXPECT_EQ(d_vc.download(), value_cache)
          << kvDataTypeName(in) << " " << kvDataTypeName(cache_type);
    }
  }
}

TEST(ReshapeAndCacheCuda, OutOfRangeSlotsAreSkippedOnTheDevice) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(22);
  const KvCacheShape cache{4, 8, 2, 64, KvDataType::kFloat16};
  const int64_t row = kvTokenElements(cache);
  std::vector<uint8_t> kv(static_cast<std::size_t>(3 * row) * 2);
  for (int64_t i = 0; i < 3 * row; ++i) testing::setElem(KvDataType::kFloat16, kv.data(), i, 1.5f);
  std::vector<int64_t> slots = {3, kvCacheSlots(cache), 31};
  std::vector<uint8_t> key_cache(kvCacheBytes(cache), 0);
  DeviceBuffer d_kv(kv);
  DeviceBuffer d_slots(slots);
  DeviceBuffer d_kc(key_cache);
  DeviceBuffer d_vc(key_cache);
  ReshapeAndCacheArgs d;
  d.key = d_kv.get();
  d.value = d_kv.get();
  d.num_tokens = 3;
  d.input_type = KvDataType::kFloat16;
  d.slot_mapping = d_slots.as<int64_t>();
  d.key_cache = d_kc.get();
  d.value_cache = d_vc.get();
  d.cache = cache;
  ASSERT_TRUE(reshapeAndCacheDevice(d, nullptr).ok());
  // The host writes the same valid tokens when the bad one is padding.
  slots[1] = -1;
  ReshapeAndCacheArgs a = d;
  a.key = kv.data();
  a.value = kv.data();
  a.slot_mapping = slots.data();
  std::vector<uint8_t> value_cache = key_cache;
  a.key_cache = key_cache.data();
  a.value_cache = value_cache.data();
  ASSERT_TRUE(reshapeAndCacheHost(a).ok());
  EXPECT_EQ(d_kc.download(), key_cache);
  EXPECT_EQ(d_vc.download(), value_cache);
  d.cache.head_dim = 0;
  EXPECT_EQ(reshapeAndCacheDevice(d, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

// --- pagedDecodeAttention ---

// Device copies of a problem's buffers and the arguments pointing at them.
struct DeviceProblem {
  explicit DeviceProblem(const AttentionProblem& p)
      : query(p.query),
        key_cache(p.key_cache),
        value_cache(p.value_cache),
        tables(p.block_tables),
        seq_lens(p.config.seq_lens),
        out(static_cast<std::size_t>(p.outElements()) * kvDataTypeSize(p.config.io_type)) {
    args = p.args(nullptr);
    args.out = out.get();
    args.query = query.get();
    args.key_cache = key_cache.get();
    args.value_cache = value_cache.get();
    args.block_tables = tables.as<int32_t>();
    args.seq_lens = seq_lens.as<int32_t>();
  }
  DeviceBuffer query;
  DeviceBuffer key_cache;
  DeviceBuffer value_cache;
  DeviceBuffer tables;
  DeviceBuffer seq_lens;
  DeviceBuffer out;
  PagedAttentionArgs args;
};

void checkDeviceAttention(const AttentionConfig& c) {
  const AttentionProblem p = testing::makeAttentionProblem(c);
  const std::vector<double> ref = testing::naiveAttention(p);
  std::vector<uint8_t> host_out(static_cast<std::size_t>(p.outElements()) *
                                kvDataTypeSize(c.io_type));
  ASSERT_TRUE(pagedDecodeAttentionHost(p.args(host_out.data())).ok());
  DeviceProblem d(p);
  // The call's own workspace, then the caller's.
  ASSERT_TRUE(pagedDecodeAttentionDevice(d.args, nullptr, 0, nullptr).ok()) << testing::describe(c);
  const std::vector<uint8_t> got = d.out.download();
  testing::expectNear(p, got, ref, "device " + testing::describe(c));
  std::vector<double> host_ref(ref.size());
  for (int64_t i = 0; i < p.outElements(); ++i) {
    host_ref[static_cast<std::size_t>(i)] = testing::getElem(c.io_type, host_out.data(), i);
  }
  testing::expectNear(p, got, host_ref, "device against host " + testing::describe(c));

  absl::StatusOr<std::size_t> bytes = pagedDecodeAttentionWorkspaceBytes(d.args);
  ASSERT_TRUE(bytes.ok());
  DeviceBuffer workspace(*bytes);
  ASSERT_EQ(cudaMemset(d.out.get(), 0xff, got.size()), cudaSuccess);
  ASSERT_TRUE(pagedDecodeAttentionDevice(d.args, workspace.get(), *bytes, nullptr).ok());
  EXPECT_EQ(d.out.download(), got) << "deterministic, whichever workspace";
}

struct CudaAttentionParam {
  int32_t num_heads;
  int32_t num_kv_heads;
  int32_t head_dim;
  KvDataType io;
  KvDataType cache;
};

class PagedAttentionCuda : public ::testing::TestWithParam<CudaAttentionParam> {};

TEST_P(PagedAttentionCuda, MatchesReferenceAndHost) {
  SKIP_WITHOUT_GPU();
  const CudaAttentionParam& prm = GetParam();
  AttentionConfig c;
  c.num_heads = prm.num_heads;
  c.num_kv_heads = prm.num_kv_heads;
  c.head_dim = prm.head_dim;
  c.io_type = prm.io;
  c.cache_type = prm.cache;
  c.seq_lens = {0, 1, 15, 16, 37, 1500, 5000, 513};  // several partitions' worth
  checkDeviceAttention(c);
  c.seq_lens = {0, 7, 100};  // one partition: written directly, no reduce kernel
  checkDeviceAttention(c);
}

std::vector<CudaAttentionParam> cudaAttentionParams() {
  std::vector<CudaAttentionParam> params;
  const int32_t heads[][2] = {{4, 4}, {8, 2}, {16, 2}, {8, 1}, {32, 4}, {12, 2}, {14, 2}};
  for (const auto& h : heads) {
    for (int32_t hd : {64, 128, 80}) {
      for (KvDataType io : {KvDataType::kFloat32, KvDataType::kFloat16, KvDataType::kBFloat16}) {
        params.push_back({h[0], h[1], hd, io, io});
        params.push_back({h[0], h[1], hd, io, KvDataType::kFp8E4M3});
      }
    }
  }
  for (int32_t hd : {8, 32, 40, 96, 112, 192, 256}) {
    params.push_back({8, 2, hd, KvDataType::kFloat16, KvDataType::kFloat16});
    params.push_back({8, 2, hd, KvDataType::kBFloat16, KvDataType::kFp8E4M3});
  }
  params.push_back({8, 2, 128, KvDataType::kFloat16, KvDataType::kFloat32});
  return params;
}

INSTANTIATE_TEST_SUITE_P(Matrix, PagedAttentionCuda, ::testing::ValuesIn(cudaAttentionParams()),
                         testing::attentionParamName<CudaAttentionParam>);

TEST(PagedAttentionCuda, ReadsEveryFp8CodeExactly) {
  SKIP_WITHOUT_GPU();
  const testing::Fp8CodesProblem p;
  DeviceBuffer query(p.query);
  DeviceBuffer key_cache(p.key_cache);
  DeviceBuffer value_cache(p.value_cache);
  DeviceBuffer table(p.table);
  DeviceBuffer seq_lens(p.seq_lens);
  DeviceBuffer out(256 * sizeof(float));
  PagedAttentionArgs a = p.args(out.get());
  a.query = query.get();
  a.key_cache = key_cache.get();
  a.value_cache = value_cache.get();
  a.block_tables = table.as<int32_t>();
  a.seq_lens = seq_lens.as<int32_t>();
  ASSERT_TRUE(pagedDecodeAttentionDevice(a, nullptr, 0, nullptr).ok());
  const std::vector<uint8_t> bytes = out.download();
  std::vector<float> got(256);
  std::memcpy(got.data(), bytes.data(), bytes.size());
  testing::expectEveryFp8Code(got, a.v_scale);
}

TEST(PagedAttentionCuda, ManySequencesAndFusedQueries) {
  SKIP_WITHOUT_GPU();
  AttentionConfig c;
  c.seq_lens.clear();
  std::mt19937 rng(5);
  for (int i = 0; i < 64; ++i) c.seq_lens.push_back(static_cast<int32_t>(rng() % 3000));
  c.query_stride = int64_t{3} * c.num_heads * c.head_dim;
  c.block_size = 32;
  checkDeviceAttention(c);
}

TEST(PagedAttentionCuda, DeviceLimitsAreInvalidArguments) {
  SKIP_WITHOUT_GPU();
  AttentionConfig c;
  c.seq_lens = {1000};
  const AttentionProblem p = testing::makeAttentionProblem(c);
  DeviceProblem d(p);
  PagedAttentionArgs a = d.args;
  a.cache.head_dim = 12;
  EXPECT_EQ(pagedDecodeAttentionDevice(a, nullptr, 0, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  a.cache.head_dim = 264;
  EXPECT_EQ(pagedDecodeAttentionDevice(a, nullptr, 0, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  a = d.args;
  a.key_cache = d.key_cache.as<uint8_t>() + 2;
  EXPECT_EQ(pagedDecodeAttentionDevice(a, nullptr, 0, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  a = d.args;
  absl::StatusOr<std::size_t> bytes = pagedDecodeAttentionWorkspaceBytes(a);
  ASSERT_TRUE(bytes.ok());
  if (*bytes > 0) {
    DeviceBuffer small(*bytes - 4);
    EXPECT_EQ(pagedDecodeAttentionDevice(a, small.get(), *bytes - 4, nullptr).code(),
              absl::StatusCode::kInvalidArgument);
  }
  a.num_heads = 7;
  EXPECT_EQ(pagedDecodeAttentionWorkspaceBytes(a).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// --- copyBlocks, swapBlocks ---

void checkCopyBlocks(const KvCacheShape& shape, int32_t num_caches,
                     const std::vector<BlockPair>& pairs, std::size_t offset) {
  std::mt19937 rng(31);
  std::vector<std::vector<uint8_t>> host;
  std::vector<std::unique_ptr<DeviceBuffer>> dev;
  std::vector<void*> host_ptrs;
  std::vector<void*> dev_ptrs;
  for (int32_t c = 0; c < num_caches; ++c) {
    host.push_back(randomBytes(kvCacheBytes(shape) + offset, rng));
    dev.push_back(std::make_unique<DeviceBuffer>(host.back()));
    host_ptrs.push_back(host.back().data() + offset);
    dev_ptrs.push_back(dev.back()->as<uint8_t>() + offset);
  }
  const auto n = static_cast<int32_t>(pairs.size());
  ASSERT_TRUE(copyBlocksHost(host_ptrs.data(), num_caches, shape, pairs.data(), n).ok());
  ASSERT_TRUE(copyBlocksDevice(dev_ptrs.data(), num_caches, shape, pairs.data(), n, nullptr).ok());
  for (int32_t c = 0; c < num_caches; ++c) {
    ASSERT_EQ(dev[static_cast<std::size_t>(c)]->download(), host[static_cast<std::size_t>(c)])
        << "cache " << c;
  }
}

TEST(CopyBlocksCuda, SameBytesAsHost) {
  SKIP_WITHOUT_GPU();
  // 16-byte aligned blocks (vector path), with shared sources and runs.
  checkCopyBlocks(KvCacheShape{40, 16, 2, 64, KvDataType::kFloat16}, 6,
                  {{0, 10}, {1, 11}, {2, 12}, {3, 20}, {3, 21}, {39, 5}}, 0);
  // Odd block bytes and unaligned caches (byte path).
  checkCopyBlocks(KvCacheShape{9, 3, 1, 5, KvDataType::kFp8E4M3}, 3, {{0, 8}, {4, 2}}, 3);
  // More caches and pairs than one launch carries.
  std::vector<BlockPair> many;
  many.reserve(1100);
  for (int32_t i = 0; i < 1100; ++i) many.push_back({i, 1100 + i});
  checkCopyBlocks(KvCacheShape{2200, 1, 1, 8, KvDataType::kFloat16}, 300, many, 0);
}

TEST(SwapBlocksCuda, HostToDeviceAndBackSameBytesAsHost) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(41);
  const KvCacheShape device{12, 16, 2, 64, KvDataType::kBFloat16};
  KvCacheShape host = device;
  host.num_blocks = 30;
  const std::vector<BlockPair> in = {{20, 3}, {21, 4}, {22, 5}, {29, 0}, {1, 11}};
  const std::vector<BlockPair> out = {{3, 7}, {4, 8}, {11, 28}};
  for (bool pinned : {false, true}) {
    std::vector<uint8_t> src = randomBytes(kvCacheBytes(host), rng);
    std::vector<uint8_t> dst = randomBytes(kvCacheBytes(device), rng);
    // The device's host-side cache: a pageable or a pinned copy of the reference's.
    std::vector<uint8_t> pageable = src;
    void* pinned_src = nullptr;
    uint8_t* host_cache = pageable.data();
    if (pinned) {
      ASSERT_EQ(cudaMallocHost(&pinned_src, src.size()), cudaSuccess);
      std::memcpy(pinned_src, src.data(), src.size());
      host_cache = static_cast<uint8_t*>(pinned_src);
    }
    DeviceBuffer d_dst(dst);
    ASSERT_TRUE(swapBlocksHost(src.data(), host, dst.data(), device, in.data(), 5).ok());
    ASSERT_TRUE(
        swapBlocksDevice(host_cache, host, d_dst.get(), device, in.data(), 5, nullptr).ok());
    EXPECT_EQ(d_dst.download(), dst);
    ASSERT_TRUE(swapBlocksHost(dst.data(), device, src.data(), host, out.data(), 3).ok());
    ASSERT_TRUE(
        swapBlocksDevice(d_dst.get(), device, host_cache, host, out.data(), 3, nullptr).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(std::memcmp(host_cache, src.data(), src.size()), 0) << "pinned " << pinned;
    if (pinned) cudaFreeHost(pinned_src);
  }
  const BlockPair bad[] = {{0, 12}};
  DeviceBuffer d(kvCacheBytes(device));
  std::vector<uint8_t> h(kvCacheBytes(host));
  EXPECT_EQ(swapBlocksDevice(h.data(), host, d.get(), device, bad, 1, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace gangway::kernels
