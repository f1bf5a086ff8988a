#include "gangway/scheduler/kv_store.h"

#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "store_conformance.h"

namespace gangway::scheduler {
namespace {

class LocalBackend final : public testing::StoreBackend {
 public:
  std::unique_ptr<Store> client() override { return makeLocalStore(kv_); }

 private:
  KvStore kv_;
};

using testing::StoreConformanceTest;
INSTANTIATE_TEST_SUITE_P(Local, StoreConformanceTest,
                         ::testing::Values(testing::StoreFactory{
                             "local", [] { return std::make_unique<LocalBackend>(); }}),
                         [](const auto& p) { return p.param.name; });

TEST(KvStoreTest, AsyncWaitCompletesWhenTheLastKeyIsSet) {
  KvStore kv;
  std::vector<absl::Status> results;
  kv.waitAsync({"a", "b"}, absl::InfiniteFuture(),
               [&](absl::Status s) { results.push_back(std::move(s)); });
  EXPECT_TRUE(results.empty());
  ASSERT_TRUE(kv.set("a", "1").ok());
  EXPECT_TRUE(results.empty());
  ASSERT_TRUE(kv.set("b", "2").ok());
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].ok());
}

TEST(KvStoreTest, AsyncWaitOnPresentKeysCompletesAtOnce) {
  KvStore kv;
  ASSERT_TRUE(kv.set("a", "1").ok());
  bool done = false;
  kv.waitAsync({"a"}, absl::InfiniteFuture(), [&](absl::Status s) { done = s.ok(); });
  EXPECT_TRUE(done);
}

TEST(KvStoreTest, ExpireUsesTheInjectedTime) {
  KvStore kv;
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  std::vector<absl::StatusCode> codes;
  kv.waitAsync({"x"}, t0 + absl::Seconds(5), [&](absl::Status s) { codes.push_back(s.code()); });
  kv.waitAsync({"y"}, t0 + absl::Seconds(9), [&](absl::Status s) { codes.push_back(s.code()); });
  EXPECT_EQ(kv.nextDeadline(), t0 + absl::Seconds(5));
  EXPECT_EQ(kv.expire(t0 + absl::Seconds(4)), t0 + absl::Seconds(5));
  EXPECT_TRUE(codes.empty());
  EXPECT_EQ(kv.expire(t0 + absl::Seconds(5)), t0 + absl::Seconds(9));
  EXPECT_EQ(codes, std::vector<absl::StatusCode>{absl::StatusCode::kDeadlineExceeded});
  ASSERT_TRUE(kv.set("x", "late").ok());  // the expired waiter is not called again
  EXPECT_EQ(codes.size(), 1u);
  ASSERT_TRUE(kv.set("y", "in time").ok());
  EXPECT_EQ(codes, (std::vector<absl::StatusCode>{absl::StatusCode::kDeadlineExceeded,
                                                  absl::StatusCode::kOk}));
  EXPECT_EQ(kv.nextDeadline(), absl::InfiniteFuture());
}

TEST(KvStoreTest, CancelledWaitIsCalledOnceWithCancelled) {
  KvStore kv;
  std::vector<absl::StatusCode> codes;
  const auto id = kv.waitAsync({"x"}, absl::InfiniteFuture(),
                               [&](absl::Status s) { codes.push_back(s.code()); });
  kv.cancelWait(id);
  kv.cancelWait(id);
  ASSERT_TRUE(kv.set("x", "1").ok());
  EXPECT_EQ(codes, std::vector<absl::StatusCode>{absl::StatusCode::kCancelled});
}

TEST(KvStoreLimitsTest, KeysAndValuesPastTheirSizeAreRefusedAndChangeNothing) {
  KvStore kv(StoreLimits{.max_key_bytes = 8, .max_value_bytes = 16});
  EXPECT_EQ(kv.set("123456789", "v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(kv.set("k", std::string(17, 'v')).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(kv.compareSet("k", "", std::string(17, 'v')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(kv.numKeys(), 0);
  EXPECT_EQ(kv.bytes(), 0u);
  ASSERT_TRUE(kv.set("k", std::string(16, 'v')).ok());
  EXPECT_EQ(kv.bytes(), 17u);
}

TEST(KvStoreLimitsTest, TheJobsBytesAndKeysAreBounded) {
  KvStore kv(StoreLimits{.max_bytes = 100, .max_keys = 3});
  ASSERT_TRUE(kv.set("a", std::string(40, 'x')).ok());
  ASSERT_TRUE(kv.set("b", std::string(40, 'x')).ok());
  EXPECT_EQ(kv.set("c", std::string(40, 'x')).code(), absl::StatusCode::kResourceExhausted);
  // Replacing a value counts only the difference; deleting frees its bytes.
  ASSERT_TRUE(kv.set("b", std::string(50, 'y')).ok());
  EXPECT_EQ(kv.bytes(), 92u);
  ASSERT_TRUE(kv.remove("b"));
  EXPECT_EQ(kv.bytes(), 41u);
  ASSERT_TRUE(kv.set("c", "1").ok());
  ASSERT_TRUE(kv.add("d", 1).ok());
  EXPECT_EQ(kv.add("e", 1).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(kv.numKeys(), 3);
  EXPECT_FALSE(kv.get("e").has_value());
}

TEST(KvStoreLimitsTest, PendingWaitsAreBoundedAndCancelledOnesFreeTheirPlace) {
  KvStore kv(StoreLimits{.max_waits = 2, .max_keys_per_call = 3});
  std::vector<absl::StatusCode> codes;
  auto record = [&](absl::Status s) { codes.push_back(s.code()); };
  const auto first = kv.waitAsync({"x"}, absl::InfiniteFuture(), record);
  kv.waitAsync({"y"}, absl::InfiniteFuture(), record);
  kv.waitAsync({"z"}, absl::InfiniteFuture(), record);
  EXPECT_EQ(codes, std::vector<absl::StatusCode>{absl::StatusCode::kResourceExhausted});
  kv.cancelWait(first);
  kv.waitAsync({"z"}, absl::InfiniteFuture(), record);
  EXPECT_EQ(codes.size(), 2u);  // waiting
  kv.waitAsync({"a", "b", "c", "d"}, absl::InfiniteFuture(), record);
  EXPECT_EQ(codes.back(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(kv.check({"a", "b", "c", "d"}).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(kv.set("z", "1").ok());
  EXPECT_EQ(codes.back(), absl::StatusCode::kOk);
}

TEST(KvStoreLimitsTest, AddWrapsInsteadOfOverflowing) {
  KvStore kv;
  ASSERT_TRUE(kv.set("n", "9223372036854775807").ok());
  auto v = kv.add("n", 1);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, INT64_MIN);
}

}  // namespace
}  // namespace gangway::scheduler
