// The job key-value store's state: c10d Store semantics (set, get, add, compare-set, wait, check,
// delete, num-keys), thread-safe, with asynchronous waits so that one server thread can hold any
// number of blocked clients. Transport-free: the gRPC service and the in-process Store
// (makeLocalStore, the client-side Store interface of gangway/scheduler/client/store.h) both sit
// on it.
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

namespace gangway::scheduler {

class KvStore {
 public:
  using WaitId = uint64_t;
  // Called once: OK when every awaited key exists, DeadlineExceeded at the deadline, Cancelled
  // by cancelWait. Runs on the thread that completed the wait, never with the store's lock held.
  using WaitCallback = std::function<void(absl::Status)>;

  void set(const std::string& key, std::string value);
  // c10d semantics; see store.proto.
  std::string compareSet(const std::string& key, const std::string& expected, std::string desired);
  // FailedPrecondition when the key holds something that is not a decimal integer.
  absl::StatusOr<int64_t> add(const std::string& key, int64_t delta);
  std::optional<std::string> get(const std::string& key) const;
  bool check(const std::vector<std::string>& keys) const;
  bool remove(const std::string& key);
  int64_t numKeys() const;

  // Calls `done` when every key in `keys` exists (at once if they already do) or at `deadline`.
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

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> data_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<WaitId, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::vector<WaitId>> waiting_on_ ABSL_GUARDED_BY(mu_);
  WaitId next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

// A Store over a KvStore in this process. Its blocking calls wait on a condition, not a timer
// thread: the deadline is checked by the waiting thread itself.
std::unique_ptr<Store> makeLocalStore(KvStore& kv);

}  // namespace gangway::scheduler
