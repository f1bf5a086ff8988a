// Device reductions against the host reference, bit for bit. Skipped where no GPU is present
// (CI); run on a GPU machine.
#include "gangway/kernels/reduce_cuda.h"

#include <cstring>
#include <random>
#include <vector>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

namespace gangway::kernels {
namespace {

TEST(ReduceCuda, MatchesReferenceBitForBit) {
  if (cudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(11);
  for (DataType type : kAllDataTypes) {
    const std::size_t size = dataTypeSize(type);
    for (ReduceOp op : kAllReduceOps) {
      for (std::size_t count : {1, 7, 1000, 4097, 1 << 20}) {
        std::vector<unsigned char> a(count * size);
        std::vector<unsigned char> b(count * size);
        for (auto& x : a) x = static_cast<unsigned char>(rng());
        for (auto& x : b) x = static_cast<unsigned char>(rng());
        if (type == DataType::kFloat16 || type == DataType::kBFloat16 ||
            type == DataType::kFloat32 || type == DataType::kFloat64) {
          // Finite values: NaN payloads may differ between CPU and GPU conversions.
          for (std::size_t i = 0; i < count; ++i) {
            const float v = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) / 64.0f;
            unsigned char* pa = a.data() + i * size;
            if (type == DataType::kFloat16) {
              const uint16_t h = floatToHalf(v);
              std::memcpy(pa, &h, 2);
            } else if (type == DataType::kBFloat16) {
              const uint16_t h = floatToBfloat16(v);
              std::memcpy(pa, &h, 2);
            } else if (type == DataType::kFloat32) {
              std::memcpy(pa, &v, 4);
            } else {
              const double d = v * 1.000001;
              std::memcpy(pa, &d, 8);
            }
            std::memcpy(b.data() + i * size, pa, size);  // then perturb b a little
            b[i * size] ^= 0x10;
          }
        }
        std::vector<unsigned char> want(a.size());
        reduceReference(want.data(), a.data(), b.data(), count, type, op);
        if (op == ReduceOp::kAvg) divideByReference(want.data(), count, type, 3);
        void* da = nullptr;
        void* db = nullptr;
        void* dd = nullptr;
        ASSERT_EQ(cudaMalloc(&da, a.size() + 16), cudaSuccess);
        ASSERT_EQ(cudaMalloc(&db, a.size() + 16), cudaSuccess);
        ASSERT_EQ(cudaMalloc(&dd, a.size() + 16), cudaSuccess);
        // Aligned on even counts, one element off on odd ones (the scalar path).
        const std::size_t off = count % 2 == 1 ? size : 0;
        char* pa = static_cast<char*>(da) + off;
        char* pb = static_cast<char*>(db) + off;
        char* pd = static_cast<char*>(dd) + off;
        ASSERT_EQ(cudaMemcpy(pa, a.data(), a.size(), cudaMemcpyHostToDevice), cudaSuccess);
        ASSERT_EQ(cudaMemcpy(pb, b.data(), b.size(), cudaMemcpyHostToDevice), cudaSuccess);
        ASSERT_TRUE(reduceDevice(pd, pa, pb, count, type, op, nullptr).ok());
        if (op == ReduceOp::kAvg) ASSERT_TRUE(divideByDevice(pd, count, type, 3, nullptr).ok());
        std::vector<unsigned char> got(a.size());
        ASSERT_EQ(cudaMemcpy(got.data(), pd, got.size(), cudaMemcpyDeviceToHost), cudaSuccess);
        EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size()), 0)
            << dataTypeName(type) << " " << reduceOpName(op) << " " << count;
        cudaFree(da);
        cudaFree(db);
        cudaFree(dd);
      }
    }
  }
}

}  // namespace
}  // namespace gangway::kernels
