// One conformance suite for every backend (as c10d's StoreTestCommon): every collective x type x
// operation x in/out of place x sizes (0, 1, odd, not divisible by the world, past each
// algorithm's switch point) against a reference computed on every rank.
//
// Each process is one rank; the world comes from the environment (gangway run, mpirun, or none
// for a world of one), so ctest runs it as e.g.
//   gangway run --standalone --nproc-per-node 3 -- comm_conformance_test --backend ucx
// Inputs are small integers, so every reduction order gives the same exact result and the check
// is bit for bit, whatever algorithm the backend picked.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gangway/comm/communicator.h"

namespace gangway::comm {
namespace {

std::string g_backend = "ucx";  // NOLINT: set once by main

using kernels::dataTypeName;
using kernels::dataTypeSize;
using kernels::reduceOpName;

// Stores `v` (a small integer) as `type` at element i of p.
void store(DataType type, void* p, std::size_t i, int v) {
  switch (type) {
    case DataType::kInt8:
      static_cast<int8_t*>(p)[i] = static_cast<int8_t>(v);
      break;
    case DataType::kUint8:
      static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v);
      break;
    case DataType::kInt32:
      static_cast<int32_t*>(p)[i] = v;
      break;
    case DataType::kUint32:
      static_cast<uint32_t*>(p)[i] = static_cast<uint32_t>(v);
      break;
    case DataType::kInt64:
      static_cast<int64_t*>(p)[i] = v;
      break;
    case DataType::kUint64:
      static_cast<uint64_t*>(p)[i] = static_cast<uint64_t>(v);
      break;
    case DataType::kFloat16:
      static_cast<uint16_t*>(p)[i] = kernels::floatToHalf(static_cast<float>(v));
      break;
    case DataType::kBFloat16:
      static_cast<uint16_t*>(p)[i] = kernels::floatToBfloat16(static_cast<float>(v));
      break;
    case DataType::kFloat32:
      static_cast<float*>(p)[i] = static_cast<float>(v);
      break;
    case DataType::kFloat64:
      static_cast<double*>(p)[i] = v;
      break;
  }
}

bool isUnsigned(DataType t) {
  return t == DataType::kUint8 || t == DataType::kUint32 || t == DataType::kUint64;
}

// Rank r's input at element i: small enough that sums and products of up to 8 ranks are exact in
// every type, varied enough that a misplaced element shows.
int inputValue(DataType type, ReduceOp op, int r, std::size_t i, int salt) {
  const int h = static_cast<int>((i * 7 + static_cast<std::size_t>(r) * 13 + salt * 5) % 11);
  if (op == ReduceOp::kProd) return isUnsigned(type) ? 1 + h % 2 : (h % 3 == 0 ? -1 : 1 + h % 2);
  return isUnsigned(type) ? h % 4 : h % 7 - 3;
}

using Buffer = std::vector<uint64_t>;  // 8-byte aligned storage for any type

Buffer makeBuffer(DataType type, std::size_t count) {
  return Buffer((count * dataTypeSize(type) + 7) / 8 + 1, 0);
}

Buffer inputOf(DataType type, ReduceOp op, int r, std::size_t count, int salt) {
  Buffer b = makeBuffer(type, count);
  for (std::size_t i = 0; i < count; ++i)
    store(type, b.data(), i, inputValue(type, op, r, i, salt));
  return b;
}

// The reduction of every rank's input, in rank order, with the scalar reference kernels.
Buffer reference(DataType type, ReduceOp op, int n, std::size_t count, int salt) {
  Buffer acc = inputOf(type, op, 0, count, salt);
  const ReduceOp kop = op == ReduceOp::kAvg ? ReduceOp::kSum : op;
  for (int r = 1; r < n; ++r) {
    Buffer in = inputOf(type, op, r, count, salt);
    kernels::reduceReference(acc.data(), acc.data(), in.data(), count, type, kop);
  }
  if (op == ReduceOp::kAvg) kernels::divideByReference(acc.data(), count, type, n);
  return acc;
}

// Index of the first differing element, or -1.
long long firstDifference(const void* a, const void* b, std::size_t count, DataType type) {
  const std::size_t es = dataTypeSize(type);
  for (std::size_t i = 0; i < count; ++i) {
    if (std::memcmp(static_cast<const char*>(a) + i * es, static_cast<const char*>(b) + i * es,
                    es) != 0) {
      return static_cast<long long>(i);
    }
  }
  return -1;
}

#define EXPECT_SAME(got, want, count, type, what)                                       \
  do {                                                                                  \
    const long long d_ = firstDifference((got), (want), (count), (type));               \
    EXPECT_EQ(d_, -1) << what << " " << dataTypeName(type) << " count " << (count)      \
                      << ": first wrong element " << d_ << " on rank " << comm->rank(); \
  } while (false)

class Conformance : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Options o;
    o.backend = g_backend;
    o.timeout = absl::Seconds(120);
    auto c = createFromEnvironment(o);
    ASSERT_TRUE(c.ok()) << c.status();
    comm_ = std::move(c).value().release();
  }
  static void TearDownTestSuite() {
    delete comm_;
    comm_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(comm_, nullptr);
    comm = comm_;
  }
  // Counts: 0, 1, odd, not divisible by the world, and past the small-message algorithms.
  std::vector<std::size_t> counts(DataType type) const {
    std::vector<std::size_t> c = {0, 1, 2, 3, 7, 63, 1001};
    const std::size_t es = dataTypeSize(type);
    c.push_back((200 << 10) / es + 3);  // between the latency and bandwidth algorithms
    c.push_back((600 << 10) / es + 5);  // the pipelined ring, several segments
    return c;
  }
  static Communicator* comm_;
  Communicator* comm = nullptr;
};
Communicator* Conformance::comm_ = nullptr;

TEST_F(Conformance, AllReduceEveryTypeOpAndPlacement) {
  const int n = comm->size();
  int salt = 0;
  for (DataType type : kernels::kAllDataTypes) {
    for (ReduceOp op : kernels::kAllReduceOps) {
      for (std::size_t count : counts(type)) {
        for (bool in_place : {false, true}) {
          ++salt;
          Buffer want = reference(type, op, n, count, salt);
          Buffer in = inputOf(type, op, comm->rank(), count, salt);
          Buffer out = makeBuffer(type, count);
          void* dst = in_place ? in.data() : out.data();
          ASSERT_TRUE(comm->allReduce(in.data(), dst, count, type, op).ok());
          ASSERT_TRUE(comm->synchronize().ok());
          EXPECT_SAME(dst, want.data(), count, type,
                      std::string("allReduce ") + reduceOpName(op) + (in_place ? " in" : " out"));
        }
      }
    }
  }
}

TEST_F(Conformance, AllReduceEveryAlgorithm) {
  if (std::string(comm->backend()) != "ucx") GTEST_SKIP() << "algorithms are the ucx backend's";
  const int n = comm->size();
  for (Algorithm a : {Algorithm::kRecursiveDoubling, Algorithm::kRabenseifner, Algorithm::kRing}) {
    Options o;
    o.backend = g_backend;
    o.algorithm = a;
    auto c = createFromEnvironment(o);
    ASSERT_TRUE(c.ok()) << c.status();
    int salt = 1000;
    for (DataType type :
         {DataType::kFloat32, DataType::kBFloat16, DataType::kInt8, DataType::kFloat64}) {
      for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kAvg, ReduceOp::kProd}) {
        for (std::size_t count :
             {std::size_t{1}, std::size_t{5}, std::size_t{4099}, std::size_t{300001}}) {
          for (bool in_place : {false, true}) {
            ++salt;
            Buffer want = reference(type, op, n, count, salt);
            Buffer in = inputOf(type, op, comm->rank(), count, salt);
            Buffer out = makeBuffer(type, count);
            void* dst = in_place ? in.data() : out.data();
            ASSERT_TRUE((*c)->allReduce(in.data(), dst, count, type, op).ok());
            EXPECT_SAME(dst, want.data(), count, type,
                        std::string("allReduce/") + algorithmName(a) + " " + reduceOpName(op));
          }
        }
      }
    }
  }
}

TEST_F(Conformance, ReduceToEveryRoot) {
  const int n = comm->size();
  int salt = 2000;
  for (DataType type : kernels::kAllDataTypes) {
    for (ReduceOp op : kernels::kAllReduceOps) {
      for (std::size_t count : counts(type)) {
        for (int root = 0; root < n; ++root) {
          for (bool in_place : {false, true}) {
            ++salt;
            Buffer want = reference(type, op, n, count, salt);
            Buffer in = inputOf(type, op, comm->rank(), count, salt);
            Buffer out = makeBuffer(type, count);
            void* dst = in_place ? in.data() : out.data();
            ASSERT_TRUE(comm->reduce(in.data(), dst, count, type, op, root).ok());
            ASSERT_TRUE(comm->synchronize().ok());
            if (comm->rank() == root) {
              EXPECT_SAME(
                  dst, want.data(), count, type,
                  std::string("reduce ") + reduceOpName(op) + " root " + std::to_string(root));
            }
          }
        }
      }
    }
  }
}

TEST_F(Conformance, ReduceScatter) {
  const int n = comm->size();
  int salt = 3000;
  for (DataType type : kernels::kAllDataTypes) {
    for (ReduceOp op : kernels::kAllReduceOps) {
      for (std::size_t count : counts(type)) {
        for (bool in_place : {false, true}) {
          ++salt;
          const std::size_t es = dataTypeSize(type);
          Buffer want = reference(type, op, n, count * n, salt);
          Buffer in = inputOf(type, op, comm->rank(), count * n, salt);
          Buffer out = makeBuffer(type, count);
          void* dst = in_place ? static_cast<void*>(reinterpret_cast<char*>(in.data()) +
                                                    count * es * comm->rank())
                               : out.data();
          ASSERT_TRUE(comm->reduceScatter(in.data(), dst, count, type, op).ok());
          ASSERT_TRUE(comm->synchronize().ok());
          EXPECT_SAME(dst, reinterpret_cast<char*>(want.data()) + count * es * comm->rank(), count,
                      type, std::string("reduceScatter ") + reduceOpName(op));
        }
      }
    }
  }
}

TEST_F(Conformance, AllGather) {
  const int n = comm->size();
  int salt = 4000;
  for (DataType type : kernels::kAllDataTypes) {
    for (std::size_t count : counts(type)) {
      for (bool in_place : {false, true}) {
        ++salt;
        const std::size_t es = dataTypeSize(type);
        Buffer want = makeBuffer(type, count * n);
        for (int r = 0; r < n; ++r) {
          Buffer part = inputOf(type, ReduceOp::kSum, r, count, salt);
          if (count > 0)
            std::memcpy(reinterpret_cast<char*>(want.data()) + r * count * es, part.data(),
                        count * es);
        }
        Buffer mine = inputOf(type, ReduceOp::kSum, comm->rank(), count, salt);
        Buffer out = makeBuffer(type, count * n);
        char* slot = reinterpret_cast<char*>(out.data()) + comm->rank() * count * es;
        if (in_place && count > 0) std::memcpy(slot, mine.data(), count * es);
        const void* src = in_place ? static_cast<const void*>(slot) : mine.data();
        ASSERT_TRUE(comm->allGather(src, out.data(), count, type).ok());
        ASSERT_TRUE(comm->synchronize().ok());
        EXPECT_SAME(out.data(), want.data(), count * n, type, "allGather");
      }
    }
  }
}

TEST_F(Conformance, BroadcastFromEveryRoot) {
  const int n = comm->size();
  int salt = 5000;
  for (DataType type : kernels::kAllDataTypes) {
    for (std::size_t count : counts(type)) {
      for (int root = 0; root < n; ++root) {
        for (bool in_place : {false, true}) {
          ++salt;
          Buffer want = inputOf(type, ReduceOp::kSum, root, count, salt);
          Buffer in = comm->rank() == root ? want : makeBuffer(type, count);
          Buffer out = makeBuffer(type, count);
          void* dst = in_place ? in.data() : out.data();
          ASSERT_TRUE(comm->broadcast(in.data(), dst, count, type, root).ok());
          ASSERT_TRUE(comm->synchronize().ok());
          EXPECT_SAME(dst, want.data(), count, type, "broadcast root " + std::to_string(root));
        }
      }
    }
  }
}

TEST_F(Conformance, AllToAll) {
  const int n = comm->size();
  int salt = 6000;
  for (DataType type : kernels::kAllDataTypes) {
    for (std::size_t count : counts(type)) {
      ++salt;
      const std::size_t es = dataTypeSize(type);
      // Rank r's slice j holds inputOf(r, salt + j); after the exchange rank me's slice r is
      // inputOf(r, salt + me).
      Buffer in = makeBuffer(type, count * n);
      Buffer want = makeBuffer(type, count * n);
      for (int j = 0; j < n && count > 0; ++j) {
        Buffer part = inputOf(type, ReduceOp::kSum, comm->rank(), count, salt + j);
        std::memcpy(reinterpret_cast<char*>(in.data()) + j * count * es, part.data(), count * es);
        Buffer theirs = inputOf(type, ReduceOp::kSum, j, count, salt + comm->rank());
        std::memcpy(reinterpret_cast<char*>(want.data()) + j * count * es, theirs.data(),
                    count * es);
      }
      Buffer out = makeBuffer(type, count * n);
      ASSERT_TRUE(comm->allToAll(in.data(), out.data(), count, type).ok());
      ASSERT_TRUE(comm->synchronize().ok());
      EXPECT_SAME(out.data(), want.data(), count * n, type, "allToAll");
    }
  }
}

TEST_F(Conformance, SendRecvAroundTheRing) {
  const int n = comm->size();
  if (n == 1) GTEST_SKIP() << "point to point needs two ranks";
  const int me = comm->rank();
  for (std::size_t count : {std::size_t{1}, std::size_t{1000}, std::size_t{300000}}) {
    Buffer mine = inputOf(DataType::kInt32, ReduceOp::kSum, me, count, 7);
    Buffer want = inputOf(DataType::kInt32, ReduceOp::kSum, (me + n - 1) % n, count, 7);
    Buffer got = makeBuffer(DataType::kInt32, count);
    // Even ranks send first, odd ranks receive first: no cycle of blocking sends.
    if (me % 2 == 0) {
      ASSERT_TRUE(comm->send(mine.data(), count, DataType::kInt32, (me + 1) % n).ok());
      ASSERT_TRUE(comm->recv(got.data(), count, DataType::kInt32, (me + n - 1) % n).ok());
    } else {
      ASSERT_TRUE(comm->recv(got.data(), count, DataType::kInt32, (me + n - 1) % n).ok());
      ASSERT_TRUE(comm->send(mine.data(), count, DataType::kInt32, (me + 1) % n).ok());
    }
    EXPECT_SAME(got.data(), want.data(), count, DataType::kInt32, "send/recv");
  }
  ASSERT_TRUE(comm->barrier().ok());
}

TEST_F(Conformance, BadArgumentsAreRefusedBeforeAnyTraffic) {
  const int n = comm->size();
  float x[4] = {};
  auto s = comm->broadcast(x, x, 4, DataType::kFloat32, n);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(std::string(s.message()).find("root"), std::string::npos) << s;
  s = comm->reduce(x, x, 4, DataType::kFloat32, ReduceOp::kSum, -1);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  s = comm->allReduce(nullptr, x, 4, DataType::kFloat32, ReduceOp::kSum);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  s = comm->allReduce(reinterpret_cast<char*>(x) + 1, x, 2, DataType::kFloat32, ReduceOp::kSum);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(std::string(s.message()).find("aligned"), std::string::npos) << s;
  if (n > 1) {
    s = comm->allToAll(x, x, 1, DataType::kFloat32);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  }
  s = comm->send(x, 1, DataType::kFloat32, comm->rank());
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  // The communicator still works: nothing was sent.
  float one = 1.0F;
  float sum = 0.0F;
  ASSERT_TRUE(comm->allReduce(&one, &sum, 1, DataType::kFloat32, ReduceOp::kSum).ok());
  EXPECT_EQ(sum, static_cast<float>(n));
}

TEST_F(Conformance, CapabilitiesAreStatedUpFront) {
  const Capabilities& caps = comm->capabilities();
  auto by_name = backendCapabilities(comm->backend());
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ(caps.types.size(), by_name->types.size());
  for (DataType t : kernels::kAllDataTypes) EXPECT_TRUE(caps.supports(t)) << dataTypeName(t);
  for (ReduceOp op : kernels::kAllReduceOps) EXPECT_TRUE(caps.supports(op)) << reduceOpName(op);
  EXPECT_TRUE(caps.supports(MemoryKind::kHost));
}

}  // namespace
}  // namespace gangway::comm

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--backend" && i + 1 < argc) {
      gangway::comm::g_backend = argv[++i];
    } else if (a.rfind("--backend=", 0) == 0) {
      gangway::comm::g_backend = a.substr(10);
    } else {
      std::fprintf(stderr, "comm_conformance_test: unknown argument '%s' (expected --backend B)\n",
                   argv[i]);
      return 2;
    }
  }
  return RUN_ALL_TESTS();
}
