#include "gangway/scheduler/kv_store.h"

#include <algorithm>

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/synchronization/notification.h>

namespace gangway::scheduler {

absl::Status KvStore::admitLocked(const std::string& key, std::size_t value_bytes) const {
  if (key.size() > limits_.max_key_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store key of ", key.size(), " bytes: expected at most ", limits_.max_key_bytes));
  }
  if (value_bytes > limits_.max_value_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store value of ", value_bytes, " bytes: expected at most ", limits_.max_value_bytes));
  }
  std::size_t after = bytes_ + key.size() + value_bytes;
  if (auto it = data_.find(key); it != data_.end()) {
    after -= key.size() + it->second.size();
  } else if (data_.size() >= limits_.max_keys) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the job's store holds its limit of ", limits_.max_keys, " keys"));
  }
  if (after > limits_.max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the job's store would hold ", after, " bytes, past its limit of ", limits_.max_bytes));
  }
  return absl::OkStatus();
}

void KvStore::putLocked(const std::string& key, std::string value) {
  auto [it, inserted] = data_.try_emplace(key);
  if (inserted) {
    bytes_ += key.size();
  } else {
    bytes_ -= it->second.size();
  }
  bytes_ += value.size();
  it->second = std::move(value);
}

absl::Status KvStore::set(const std::string& key, std::string value) {
  std::vector<WaitCallback> ready;
  {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = admitLocked(key, value.size()); !s.ok()) return s;
    putLocked(key, std::move(value));
    wakeLocked(key, ready);
  }
  for (auto& cb : ready) cb(absl::OkStatus());
  return absl::OkStatus();
}

void KvStore::setOwn(const std::string& key, std::string value) {
  std::vector<WaitCallback> ready;
  {
    absl::MutexLock lock(&mu_);
    putLocked(key, std::move(value));
    wakeLocked(key, ready);
  }
  for (auto& cb : ready) cb(absl::OkStatus());
}

absl::StatusOr<std::string> KvStore::compareSet(const std::string& key, const std::string& expected,
                                                std::string desired) {
  std::vector<WaitCallback> ready;
  std::string result;
  {
    absl::MutexLock lock(&mu_);
    auto it = data_.find(key);
    if (it == data_.end() && !expected.empty()) return expected;  // c10d's answer, missing key
    if (it != data_.end() && it->second != expected) return it->second;
    if (absl::Status s = admitLocked(key, desired.size()); !s.ok()) return s;
    result = desired;
    const bool created = it == data_.end();
    putLocked(key, std::move(desired));
    if (created) wakeLocked(key, ready);
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
      // Wraps as c10d's TCPStore does, without the undefined behaviour of a signed overflow.
      value = static_cast<int64_t>(static_cast<uint64_t>(current) + static_cast<uint64_t>(delta));
    }
    std::string text = absl::StrCat(value);
    if (absl::Status s = admitLocked(key, text.size()); !s.ok()) return s;
    putLocked(key, std::move(text));
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

absl::StatusOr<bool> KvStore::check(const std::vector<std::string>& keys) const {
  if (keys.size() > limits_.max_keys_per_call) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a check of ", keys.size(), " keys: expected at most ", limits_.max_keys_per_call));
  }
  absl::MutexLock lock(&mu_);
  for (const auto& k : keys) {
    if (!data_.contains(k)) return false;
  }
  return true;
}

bool KvStore::remove(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = data_.find(key);
  if (it == data_.end()) return false;
  bytes_ -= key.size() + it->second.size();
  data_.erase(it);
  return true;
}

int64_t KvStore::numKeys() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(data_.size());
}

std::size_t KvStore::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

KvStore::WaitId KvStore::waitAsync(const std::vector<std::string>& keys, absl::Time deadline,
                                   WaitCallback done) {
  // The call's own shape first: it needs no lock, and a refused call builds nothing.
  if (keys.size() > limits_.max_keys_per_call) {
    done(absl::InvalidArgumentError(absl::StrCat(
        "a wait for ", keys.size(), " keys: expected at most ", limits_.max_keys_per_call)));
    return 0;
  }
  if (std::any_of(keys.begin(), keys.end(),
                  [&](const std::string& k) { return k.size() > limits_.max_key_bytes; })) {
    done(absl::InvalidArgumentError(
        absl::StrCat("a store key: expected at most ", limits_.max_key_bytes, " bytes")));
    return 0;
  }
  WaitId id = 0;
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    id = next_id_++;
    Waiter w;
    for (const auto& k : keys) {
      if (!data_.contains(k)) w.missing.insert(k);
    }
    if (!w.missing.empty() && waiters_.size() >= limits_.max_waits) {
      result = absl::ResourceExhaustedError(absl::StrCat(
          "the job's store has its limit of ", limits_.max_waits, " calls waiting for keys"));
    } else if (!w.missing.empty()) {
      for (const auto& k : w.missing) waiting_on_[k].push_back(id);
      w.deadline = deadline;
      w.done = std::move(done);
      waiters_.emplace(id, std::move(w));
      return id;
    }
  }
  done(result);
  return id;
}

void KvStore::forgetWaiterLocked(WaitId id, const Waiter& w) {
  for (const auto& key : w.missing) {
    auto it = waiting_on_.find(key);
    if (it == waiting_on_.end()) continue;
    auto& ids = it->second;
    ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
    if (ids.empty()) waiting_on_.erase(it);
  }
}

void KvStore::cancelWait(WaitId id) {
  WaitCallback cb;
  {
    absl::MutexLock lock(&mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return;
    cb = std::move(it->second.done);
    forgetWaiterLocked(id, it->second);
    waiters_.erase(it);
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
        forgetWaiterLocked(it->first, it->second);
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
    return kv_.set(key, value);
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
