// One conformance suite for every Store implementation (as PyTorch's StoreTestCommon):
// instantiate it with a factory that makes a fresh, empty store.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "gangway/scheduler/kv_store.h"

namespace gangway::scheduler::testing {

// One store (a server, or a KvStore) and as many clients of it as a test wants.
class StoreBackend {
 public:
  virtual ~StoreBackend() = default;
  virtual std::unique_ptr<Store> client() = 0;
};

// Makes a fresh, empty backend; `name` identifies the implementation in test names.
struct StoreFactory {
  std::string name;
  std::function<std::unique_ptr<StoreBackend>()> make;
};

class StoreConformanceTest : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override {
    backend_ = GetParam().make();
    store_ = backend_->client();
  }
  Store& store() { return *store_; }
  std::unique_ptr<Store> another() { return backend_->client(); }

  std::unique_ptr<StoreBackend> backend_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreConformanceTest, SetThenGetReturnsTheValue) {
  const std::string binary("a\0b\xff", 4);
  ASSERT_TRUE(store().set("k", binary).ok());
  auto v = store().get("k", absl::Seconds(10));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, binary);
  ASSERT_TRUE(store().set("k", "second").ok());
  EXPECT_EQ(*store().get("k", absl::Seconds(10)), "second");
}

TEST_P(StoreConformanceTest, GetWaitsForAKeySetByAnotherClient) {
  std::thread setter([this] { ASSERT_TRUE(store().set("late", "value").ok()); });
  auto v = store().get("late", absl::Seconds(30));
  setter.join();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "value");
}

TEST_P(StoreConformanceTest, GetOfAMissingKeyTimesOut) {
  auto v = store().get("never", absl::Milliseconds(50));
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDeadlineExceeded) << v.status();
}

TEST_P(StoreConformanceTest, AddCountsFromZeroAndIsAtomic) {
  EXPECT_EQ(*store().add("n", 5), 5);
  EXPECT_EQ(*store().add("n", -2), 3);
  EXPECT_EQ(*store().get("n", absl::Seconds(10)), "3");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this] {
      for (int i = 0; i < 250; ++i) ASSERT_TRUE(store().add("counter", 1).ok());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(*store().add("counter", 0), 1000);
  ASSERT_TRUE(store().set("text", "abc").ok());
  EXPECT_EQ(store().add("text", 1).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(StoreConformanceTest, CompareSetFollowsC10dSemantics) {
  // Missing key, empty expected: set.
  EXPECT_EQ(*store().compareSet("k", "", "first"), "first");
  // Existing key, expected matches: swapped.
  EXPECT_EQ(*store().compareSet("k", "first", "second"), "second");
  // Existing key, expected differs: unchanged, current value returned.
  EXPECT_EQ(*store().compareSet("k", "first", "third"), "second");
  EXPECT_EQ(*store().get("k", absl::Seconds(10)), "second");
  // Missing key, non-empty expected: unchanged, `expected` returned (c10d TCPStore).
  EXPECT_EQ(*store().compareSet("missing", "x", "y"), "x");
  EXPECT_FALSE(*store().check({"missing"}));
}

TEST_P(StoreConformanceTest, WaitForSeveralKeys) {
  ASSERT_TRUE(store().set("a", "1").ok());
  EXPECT_EQ(store().wait({"a", "b"}, absl::Milliseconds(50)).code(),
            absl::StatusCode::kDeadlineExceeded);
  std::thread setter([this] { ASSERT_TRUE(store().set("b", "2").ok()); });
  EXPECT_TRUE(store().wait({"a", "b"}, absl::Seconds(30)).ok());
  setter.join();
  EXPECT_TRUE(store().wait({}, absl::Milliseconds(1)).ok());
}

TEST_P(StoreConformanceTest, OneSetWakesManyWaiters) {
  std::atomic<int> woken{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 8; ++i) {
    waiters.emplace_back([this, &woken] {
      auto client = another();
      if (client->wait({"go"}, absl::Seconds(30)).ok()) ++woken;
    });
  }
  ASSERT_TRUE(store().set("go", "now").ok());
  for (auto& t : waiters) t.join();
  EXPECT_EQ(woken.load(), 8);
}

TEST_P(StoreConformanceTest, CheckDeleteAndNumKeys) {
  EXPECT_EQ(*store().numKeys(), 0);
  EXPECT_FALSE(*store().check({"x"}));
  ASSERT_TRUE(store().set("x", "1").ok());
  ASSERT_TRUE(store().set("y", "2").ok());
  EXPECT_TRUE(*store().check({"x", "y"}));
  EXPECT_EQ(*store().numKeys(), 2);
  EXPECT_TRUE(*store().deleteKey("x"));
  EXPECT_FALSE(*store().deleteKey("x"));
  EXPECT_FALSE(*store().check({"x", "y"}));
  EXPECT_EQ(*store().numKeys(), 1);
}

}  // namespace gangway::scheduler::testing
