// The job key-value store's state: c10d Store semantics (set, get, add, compare-set, wait, check,
// delete, num-keys), thread-safe, with asynchronous waits so that one server thread can hold any
// number of blocked clients. Transport-free: the gRPC service and the in-process Store
// (makeLocalStore, the client-side Store interface of gangway/scheduler/client/store.h) both sit
// on it. Bounded by StoreLimits (limits.h): a call past a limit fails with RESOURCE_EXHAUSTED or
// INVALID_ARGUMENT and changes nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <absl/base/thread_annotations.h>
#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>
#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/synchronization/mutex.h>
#include <absl/time/time.h>

#include "gangway/scheduler/client/store.h"
#include "gangway/scheduler/limits.h"

namespace gangway::scheduler {

class KvStore {
 public:
  using WaitId = uint64_t;
  // Called once: OK when every awaited key exists, DeadlineExceeded at the deadline, Cancelled
  // by cancelWait. Runs on the thread that completed the wait, never with the store's lock held.
  using WaitCallback = std::function<void(absl::Status)>;

  explicit KvStore(StoreLimits limits = {}) : limits_(limits) {}

  absl::Status set(const std::string& key, std::string value);
  // The control plane's own keys (a round's layout and MASTER_PORT): set whatever the limits,
  // and counted against them.
  void setOwn(const std::string& key, std::string value);
  // c10d semantics; see store.proto.
  absl::StatusOr<std::string> compareSet(const std::string& key, const std::string& expected,
                                         std::string desired);
  // FailedPrecondition when the key holds something that is not a decimal integer.
  absl::StatusOr<int64_t> add(const std::string& key, int64_t delta);
  std::optional<std::string> get(const std::string& key) const;
  absl::StatusOr<bool> check(const std::vector<std::string>& keys) const;
  bool remove(const std::string& key);
  int64_t numKeys() const;
  // Keys and values, in bytes.
  std::size_t bytes() const;

  // Calls `done` when every key in `keys` exists (at once if they already do) or at `deadline`;
  // at once with the error when the keys or the number of pending waits are past the limits.
  WaitId waitAsync(const std::vector<std::string>& keys, absl::Time deadline, WaitCallback done);
  void cancelWait(WaitId id);
  // Completes every wait whose deadline is at or before `now` with DeadlineExceeded. Returns the
  // earliest remaining deadline (absl::InfiniteFuture() if none).
  absl::Time expire(absl::Time now);
  // Earliest pending deadline.
  absl::Time nextDeadline() const;

 private:
  struct Waiter {
    absl::flat_hash_set<std::string> missing;
    absl::Time deadline;
    WaitCallback done;
  };
  // Moves the callbacks of waiters that `key` completes into `ready`.
  void wakeLocked(const std::string& key, std::vector<WaitCallback>& ready)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops a waiter that did not complete from the lists of the keys it still waited on.
  void forgetWaiterLocked(WaitId id, const Waiter& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether storing `value` at `key` keeps the store within its limits.
  absl::Status admitLocked(const std::string& key, std::size_t value_bytes) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void putLocked(const std::string& key, std::string value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const StoreLimits limits_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> data_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<WaitId, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::vector<WaitId>> waiting_on_ ABSL_GUARDED_BY(mu_);
  WaitId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

// A Store over a KvStore in this process. Its blocking calls wait on a condition, not a timer
// thread: the deadline is checked by the waiting thread itself.
std::unique_ptr<Store> makeLocalStore(KvStore& kv);

}  // namespace gangway::scheduler
