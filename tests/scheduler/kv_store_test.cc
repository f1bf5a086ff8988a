#include "gangway/scheduler/kv_store.h"

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
  kv.set("a", "1");
  EXPECT_TRUE(results.empty());
  kv.set("b", "2");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].ok());
}

TEST(KvStoreTest, AsyncWaitOnPresentKeysCompletesAtOnce) {
  KvStore kv;
  kv.set("a", "1");
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
  kv.set("x", "late");  // the expired waiter is not called again
  EXPECT_EQ(codes.size(), 1u);
  kv.set("y", "in time");
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
  kv.set("x", "1");
  EXPECT_EQ(codes, std::vector<absl::StatusCode>{absl::StatusCode::kCancelled});
}

}  // namespace
}  // namespace gangway::scheduler
