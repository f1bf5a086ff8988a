#include "gangway/scheduler/kv_store.h"

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/synchronization/notification.h>

namespace gangway::scheduler {

void KvStore::set(const std::string& key, std::string value) {
  std::vector<WaitCallback> ready;
  {
    absl::MutexLock lock(&mu_);
    data_[key] = std::move(value);
    wakeLocked(key, ready);
  }
  for (auto& cb : ready) cb(absl::OkStatus());
}

std::string KvStore::compareSet(const std::string& key, const std::string& expected,
                                std::string desired) {
  std::vector<WaitCallback> ready;
  std::string result;
  {
    absl::MutexLock lock(&mu_);
    auto it = data_.find(key);
    if (it == data_.end()) {
      if (!expected.empty()) return expected;  // c10d's answer for a missing key
      result = desired;
      data_[key] = std::move(desired);
      wakeLocked(key, ready);
    } else {
      if (it->second == expected) it->second = std::move(desired);
      result = it->second;
    }
  }
  for (auto& cb : ready) cb(absl::OkStatus());
  return result;
}

absl::StatusOr<int64_t> KvStore::add(const std::string& key, int64_t delta) {
  std::vector<WaitCallback> ready;
  int64_t value = delta;
  {
    absl::MutexLock lock(&mu_);
    auto it = data_.find(key);
    if (it != data_.end()) {
      int64_t current = 0;
      if (!absl::SimpleAtoi(it->second, &current)) {
        return absl::FailedPreconditionError(
            absl::StrCat("store key '", key, "' does not hold an integer"));
      }
      value = current + delta;
    }
    data_[key] = absl::StrCat(value);
    wakeLocked(key, ready);
  }
  for (auto& cb : ready) cb(absl::OkStatus());
  return value;
}

std::optional<std::string> KvStore::get(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  auto it = data_.find(key);
  if (it == data_.end()) return std::nullopt;
  return it->second;
}

bool KvStore::check(const std::vector<std::string>& keys) const {
  absl::MutexLock lock(&mu_);
  for (const auto& k : keys) {
    if (!data_.contains(k)) return false;
  }
  return true;
}

bool KvStore::remove(const std::string& key) {
  absl::MutexLock lock(&mu_);
  return data_.erase(key) > 0;
}

int64_t KvStore::numKeys() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(data_.size());
}

KvStore::WaitId KvStore::waitAsync(const std::vector<std::string>& keys, absl::Time deadline,
                                   WaitCallback done) {
  WaitId id = 0;
  {
    absl::MutexLock lock(&mu_);
    id = next_id_++;
    Waiter w;
    for (const auto& k : keys) {
      if (!data_.contains(k)) w.missing.insert(k);
    }
    if (!w.missing.empty()) {
      for (const auto& k : w.missing) waiting_on_[k].push_back(id);
      w.deadline = deadline;
      w.done = std::move(done);
      waiters_.emplace(id, std::move(w));
      return id;
    }
  }
  done(absl::OkStatus());
  return id;
}

void KvStore::cancelWait(WaitId id) {
  WaitCallback cb;
  {
    absl::MutexLock lock(&mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return;
    cb = std::move(it->second.done);
    waiters_.erase(it);  // stale ids left in waiting_on_ are skipped when the key is set
  }
  cb(absl::CancelledError("store wait cancelled"));
}

absl::Time KvStore::expire(absl::Time now) {
  std::vector<WaitCallback> expired;
  absl::Time next = absl::InfiniteFuture();
  {
    absl::MutexLock lock(&mu_);
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->second.deadline <= now) {
        expired.push_back(std::move(it->second.done));
        waiters_.erase(it++);
      } else {
        next = std::min(next, it->second.deadline);
        ++it;
      }
    }
  }
  for (auto& cb : expired) cb(absl::DeadlineExceededError("timed out waiting for store keys"));
  return next;
}

absl::Time KvStore::nextDeadline() const {
  absl::MutexLock lock(&mu_);
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [id, w] : waiters_) next = std::min(next, w.deadline);
  return next;
}

void KvStore::wakeLocked(const std::string& key, std::vector<WaitCallback>& ready) {
  auto it = waiting_on_.find(key);
  if (it == waiting_on_.end()) return;
  for (WaitId id : it->second) {
    auto w = waiters_.find(id);
    if (w == waiters_.end()) continue;
    w->second.missing.erase(key);
    if (w->second.missing.empty()) {
      ready.push_back(std::move(w->second.done));
      waiters_.erase(w);
    }
  }
  waiting_on_.erase(it);
}

namespace {

class LocalStore final : public Store {
 public:
  explicit LocalStore(KvStore& kv) : kv_(kv) {}

  absl::Status set(const std::string& key, const std::string& value) override {
    kv_.set(key, value);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> get(const std::string& key, absl::Duration timeout) override {
    if (absl::Status s = wait({key}, timeout); !s.ok()) return s;
    auto v = kv_.get(key);
    if (!v.has_value()) return absl::NotFoundError(absl::StrCat("store key '", key, "' deleted"));
    return *v;
  }
  absl::StatusOr<int64_t> add(const std::string& key, int64_t delta) override {
    return kv_.add(key, delta);
  }
  absl::StatusOr<std::string> compareSet(const std::string& key, const std::string& expected,
                                         const std::string& desired) override {
    return kv_.compareSet(key, expected, desired);
  }
  absl::Status wait(const std::vector<std::string>& keys, absl::Duration timeout) override {
    struct Result {
      absl::Notification done;
      absl::Status status;
    };
    auto result = std::make_shared<Result>();  // shared with the callback, which may run later
    const KvStore::WaitId id =
        kv_.waitAsync(keys, absl::InfiniteFuture(), [result](absl::Status s) {
          result->status = std::move(s);
          result->done.Notify();
        });
    if (!result->done.WaitForNotificationWithTimeout(timeout)) {
      kv_.cancelWait(id);
      result->done.WaitForNotification();
      if (result->status.ok()) return absl::OkStatus();  // completed while cancelling
      return absl::DeadlineExceededError("timed out waiting for store keys");
    }
    return result->status;
  }
  absl::StatusOr<bool> check(const std::vector<std::string>& keys) override {
    return kv_.check(keys);
  }
  absl::StatusOr<bool> deleteKey(const std::string& key) override { return kv_.remove(key); }
  absl::StatusOr<int64_t> numKeys() override { return kv_.numKeys(); }

 private:
  KvStore& kv_;
};

}  // namespace

std::unique_ptr<Store> makeLocalStore(KvStore& kv) { return std::make_unique<LocalStore>(kv); }

}  // namespace gangway::scheduler
