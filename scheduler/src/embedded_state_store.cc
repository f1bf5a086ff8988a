// The embedded StateStore: an in-memory ordered map, a write-ahead log fsynced before every
// acknowledgement, and snapshots. Record: u32 payload length, u32 CRC-32 (zlib) of the payload,
// the payload. Files start with an 8-byte magic. See state_store.h for the recovery rules.
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <string>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <absl/base/thread_annotations.h>
#include <absl/strings/str_cat.h>
#include <absl/synchronization/mutex.h>
#include <zlib.h>

#include "gangway/common/status.h"
#include "gangway/scheduler/state_store.h"

namespace gangway::scheduler {
namespace {

constexpr char kWalMagic[] = "GWWAL001";
constexpr char kSnapshotMagic[] = "GWSNAP01";
constexpr size_t kMagicLen = 8;
constexpr size_t kHeaderLen = 8;
constexpr uint32_t kMaxRecord = 1U << 30;

void putU32(std::string* out, uint32_t v) { out->append(reinterpret_cast<const char*>(&v), 4); }
void putU64(std::string* out, uint64_t v) { out->append(reinterpret_cast<const char*>(&v), 8); }
void putBytes(std::string* out, absl::string_view s) {
  putU32(out, static_cast<uint32_t>(s.size()));
  out->append(s.data(), s.size());
}

// Reads fields from a payload; any overrun sets ok = false.
struct Reader {
  absl::string_view data;
  bool ok = true;
  template <typename T>
  T fixed() {
    T v{};
    if (data.size() < sizeof(T)) {
      ok = false;
      return v;
    }
    std::memcpy(&v, data.data(), sizeof(T));
    data.remove_prefix(sizeof(T));
    return v;
  }
  std::string bytes() {
    const auto n = fixed<uint32_t>();
    if (!ok || data.size() < n) {
      ok = false;
      return {};
    }
    std::string s(data.substr(0, n));
    data.remove_prefix(n);
    return s;
  }
};

std::string frame(absl::string_view payload) {
  std::string rec;
  rec.reserve(kHeaderLen + payload.size());
  putU32(&rec, static_cast<uint32_t>(payload.size()));
  putU32(&rec, static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(payload.data()),
                                           static_cast<uInt>(payload.size()))));
  rec.append(payload.data(), payload.size());
  return rec;
}

absl::Status writeAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return GW_ERRNO(absl::StrCat("write ", path));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> readFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return GW_ERRNO(absl::StrCat("open ", path));
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const absl::Status s = GW_ERRNO(absl::StrCat("read ", path));
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

absl::Status fsyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return GW_ERRNO(absl::StrCat("open ", dir));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return GW_ERRNO(absl::StrCat("fsync ", dir));
  return absl::OkStatus();
}

// Writes magic + one record to path.tmp, fsyncs it, and renames it over path.
absl::Status replaceFile(const std::string& dir, const std::string& path, const char* magic,
                         absl::string_view payload) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return GW_ERRNO(absl::StrCat("create ", tmp));
  std::string data(magic, kMagicLen);
  if (!payload.empty()) data += frame(payload);
  absl::Status s = writeAll(fd, data, tmp);
  if (s.ok() && ::fsync(fd) != 0) s = GW_ERRNO(absl::StrCat("fsync ", tmp));
  ::close(fd);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    s = GW_ERRNO(absl::StrCat("rename ", tmp));
  }
  if (s.ok()) s = fsyncDir(dir);
  return s;
}

absl::Status corrupt(const std::string& path, size_t offset, absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat("state store: ", path, " at byte ", offset, ": ", what,
                   "; the data directory is damaged (restore it from a backup, or move it away "
                   "to start empty)"));
}

class EmbeddedStateStore final : public StateStore {
 public:
  explicit EmbeddedStateStore(EmbeddedStateStoreOptions options) : options_(std::move(options)) {}
  ~EmbeddedStateStore() override {
    if (wal_fd_ >= 0) ::close(wal_fd_);
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  absl::Status open() ABSL_LOCKS_EXCLUDED(mu_);

  absl::StatusOr<int64_t> put(absl::string_view key, absl::string_view value) override {
    StateTxn txn;
    txn.ops.push_back({StateTxn::Op::Kind::kPut, std::string(key), std::string(value)});
    GW_ASSIGN_OR_RETURN(StateTxnResult r, commit(txn));
    return r.revision;
  }

  absl::StatusOr<int64_t> remove(absl::string_view key) override {
    absl::MutexLock lock(&mu_);
    if (!data_.contains(std::string(key))) return revision_;
    StateTxn txn;
    txn.ops.push_back({StateTxn::Op::Kind::kDelete, std::string(key), {}});
    GW_ASSIGN_OR_RETURN(StateTxnResult r, commitLocked(txn));
    return r.revision;
  }

  absl::StatusOr<StateTxnResult> commit(const StateTxn& txn) override {
    absl::MutexLock lock(&mu_);
    return commitLocked(txn);
  }

  absl::StatusOr<std::optional<StateEntry>> get(absl::string_view key) override {
    absl::MutexLock lock(&mu_);
    const auto it = data_.find(std::string(key));
    if (it == data_.end()) return std::optional<StateEntry>();
    return std::optional<StateEntry>(it->second);
  }

  absl::StatusOr<std::vector<StateEntry>> list(absl::string_view prefix) override {
    absl::MutexLock lock(&mu_);
    std::vector<StateEntry> out;
    for (auto it = data_.lower_bound(std::string(prefix));
         it != data_.end() && absl::string_view(it->first).substr(0, prefix.size()) == prefix;
         ++it) {
      out.push_back(it->second);
    }
    return out;
  }

  int64_t revision() const override {
    absl::MutexLock lock(&mu_);
    return revision_;
  }

 private:
  absl::StatusOr<StateTxnResult> commitLocked(const StateTxn& txn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void apply(const StateTxn& txn, int64_t revision) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status loadSnapshot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status replayWal() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status snapshot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status openWalForAppend() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string path(const char* name) const { return options_.data_dir + "/" + name; }

  const EmbeddedStateStoreOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, StateEntry> data_ ABSL_GUARDED_BY(mu_);
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t logged_since_snapshot_ ABSL_GUARDED_BY(mu_) = 0;
  int wal_fd_ ABSL_GUARDED_BY(mu_) = -1;
  off_t wal_size_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status broken_ ABSL_GUARDED_BY(mu_);
  int lock_fd_ = -1;
};

absl::Status EmbeddedStateStore::open() {
  std::error_code ec;
  std::filesystem::create_directories(options_.data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat("state store: cannot create data directory ",
                                                      options_.data_dir, ": ", ec.message()));
  }
  const std::string lock_path = path("LOCK");
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return GW_ERRNO(absl::StrCat("open ", lock_path));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("state store: ", options_.data_dir,
                                                      " is in use by another process (", lock_path,
                                                      " is locked)"));
  }
  absl::MutexLock lock(&mu_);
  // Files a crash left before their rename: never part of the state.
  (void)::unlink(path("snapshot.tmp").c_str());
  (void)::unlink(path("wal.tmp").c_str());
  GW_RETURN_IF_ERROR(loadSnapshot());
  GW_RETURN_IF_ERROR(replayWal());
  return openWalForAppend();
}

absl::Status EmbeddedStateStore::loadSnapshot() {
  const std::string p = path("snapshot");
  if (::access(p.c_str(), F_OK) != 0) return absl::OkStatus();
  GW_ASSIGN_OR_RETURN(const std::string file, readFile(p));
  if (file.size() < kMagicLen || file.compare(0, kMagicLen, kSnapshotMagic) != 0) {
    return corrupt(p, 0, "not a gangway snapshot (bad magic)");
  }
  if (file.size() == kMagicLen) return absl::OkStatus();  // the empty store's snapshot
  Reader header{absl::string_view(file).substr(kMagicLen)};
  const auto len = header.fixed<uint32_t>();
  const auto crc = header.fixed<uint32_t>();
  if (!header.ok || header.data.size() != len) {
    return corrupt(p, kMagicLen, "truncated or oversized snapshot record");
  }
  if (crc32(0L, reinterpret_cast<const Bytef*>(header.data.data()), len) != crc) {
    return corrupt(p, kMagicLen, "snapshot checksum mismatch");
  }
  Reader r{header.data};
  revision_ = static_cast<int64_t>(r.fixed<uint64_t>());
  const auto n = r.fixed<uint32_t>();
  for (uint32_t i = 0; r.ok && i < n; ++i) {
    StateEntry e;
    e.key = r.bytes();
    e.value = r.bytes();
    e.mod_revision = static_cast<int64_t>(r.fixed<uint64_t>());
    data_[e.key] = std::move(e);
  }
  if (!r.ok || !r.data.empty()) return corrupt(p, kMagicLen, "malformed snapshot contents");
  return absl::OkStatus();
}

// Where the first whole, checksummed record at or after `from` starts, if any. A torn last write
// has nothing after it; a record whose length field was damaged in the middle of the log does:
// without this check, such damage would look torn and the records after it would be cut off.
std::optional<size_t> findRecord(absl::string_view file, size_t from) {
  for (size_t o = from; o + kHeaderLen < file.size(); ++o) {
    Reader h{file.substr(o, kHeaderLen)};
    const auto len = h.fixed<uint32_t>();
    const auto crc = h.fixed<uint32_t>();
    if (len == 0 || len > kMaxRecord || kHeaderLen + len > file.size() - o) continue;
    if (crc32(0L, reinterpret_cast<const Bytef*>(file.data() + o + kHeaderLen), len) == crc) {
      return o;
    }
  }
  return std::nullopt;
}

absl::Status EmbeddedStateStore::replayWal() {
  const std::string p = path("wal");
  if (::access(p.c_str(), F_OK) != 0) return absl::OkStatus();
  GW_ASSIGN_OR_RETURN(const std::string file, readFile(p));
  if (file.size() < kMagicLen) {
    // Created but its magic never made it to disk: nothing was ever acknowledged in it.
    if (std::string(kWalMagic).compare(0, file.size(), file) == 0) {
      wal_size_ = 0;
      return absl::OkStatus();
    }
    return corrupt(p, 0, "not a gangway log (bad magic)");
  }
  if (file.compare(0, kMagicLen, kWalMagic) != 0)
    return corrupt(p, 0, "not a gangway log (bad magic)");
  size_t off = kMagicLen;
  while (off < file.size()) {
    const size_t left = file.size() - off;
    Reader h{absl::string_view(file).substr(off, std::min(left, kHeaderLen))};
    const auto len = h.fixed<uint32_t>();
    const auto crc = h.fixed<uint32_t>();
    if (!h.ok || len > kMaxRecord || kHeaderLen + len > left) {
      if (const auto next = findRecord(file, off + 1); next.has_value()) {
        return corrupt(p, off,
                       absl::StrCat("a record length that runs past the end, with a whole record "
                                    "after it at byte ",
                                    *next));
      }
      break;  // the last record, torn mid-write: cut here
    }
    const absl::string_view payload = absl::string_view(file).substr(off + kHeaderLen, len);
    if (crc32(0L, reinterpret_cast<const Bytef*>(payload.data()), len) != crc) {
      if (off + kHeaderLen + len == file.size()) break;  // the last record, torn mid-write
      return corrupt(p, off, "checksum mismatch in a record that has records after it");
    }
    Reader r{payload};
    const auto rev = static_cast<int64_t>(r.fixed<uint64_t>());
    const auto nops = r.fixed<uint32_t>();
    StateTxn txn;
    for (uint32_t i = 0; r.ok && i < nops; ++i) {
      StateTxn::Op op;
      op.kind = r.fixed<uint8_t>() == 2 ? StateTxn::Op::Kind::kDelete : StateTxn::Op::Kind::kPut;
      op.key = r.bytes();
      op.value = r.bytes();
      txn.ops.push_back(std::move(op));
    }
    if (!r.ok || !r.data.empty()) return corrupt(p, off, "malformed record");
    if (rev > revision_) {
      if (rev != revision_ + 1) {
        return corrupt(p, off, absl::StrCat("revision ", rev, " follows ", revision_));
      }
      apply(txn, rev);
      ++logged_since_snapshot_;
    }
    off += kHeaderLen + len;
  }
  if (off < file.size() && ::truncate(p.c_str(), static_cast<off_t>(off)) != 0) {
    return GW_ERRNO(absl::StrCat("truncate the torn tail of ", p));
  }
  wal_size_ = static_cast<off_t>(off);
  return absl::OkStatus();
}

absl::Status EmbeddedStateStore::openWalForAppend() {
  const std::string p = path("wal");
  if (wal_size_ < static_cast<off_t>(kMagicLen)) {
    GW_RETURN_IF_ERROR(replaceFile(options_.data_dir, p, kWalMagic, {}));
    wal_size_ = static_cast<off_t>(kMagicLen);
  }
  wal_fd_ = ::open(p.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (wal_fd_ < 0) return GW_ERRNO(absl::StrCat("open ", p));
  return absl::OkStatus();
}

void EmbeddedStateStore::apply(const StateTxn& txn, int64_t revision) {
  for (const StateTxn::Op& op : txn.ops) {
    if (op.kind == StateTxn::Op::Kind::kDelete) {
      data_.erase(op.key);
    } else {
      data_[op.key] = StateEntry{op.key, op.value, revision};
    }
  }
  revision_ = revision;
}

absl::StatusOr<StateTxnResult> EmbeddedStateStore::commitLocked(const StateTxn& txn) {
  GW_RETURN_IF_ERROR(broken_);
  if (txn.ops.empty()) return absl::InvalidArgumentError("state store: a transaction with no ops");
  std::set<absl::string_view> keys;
  for (const StateTxn::Op& op : txn.ops) {
    if (op.key.empty()) return absl::InvalidArgumentError("state store: an empty key");
    if (!keys.insert(op.key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("state store: a transaction writes key ", op.key, " twice"));
    }
  }
  for (const StateTxn::Compare& c : txn.compares) {
    const auto it = data_.find(c.key);
    const int64_t have = it == data_.end() ? 0 : it->second.mod_revision;
    if (have != c.mod_revision) return StateTxnResult{false, revision_};
  }
  std::string payload;
  putU64(&payload, static_cast<uint64_t>(revision_ + 1));
  putU32(&payload, static_cast<uint32_t>(txn.ops.size()));
  for (const StateTxn::Op& op : txn.ops) {
    payload.push_back(op.kind == StateTxn::Op::Kind::kDelete ? 2 : 1);
    putBytes(&payload, op.key);
    putBytes(&payload, op.kind == StateTxn::Op::Kind::kDelete ? absl::string_view() : op.value);
  }
  if (payload.size() > kMaxRecord) {
    return absl::InvalidArgumentError(absl::StrCat("state store: a transaction of ", payload.size(),
                                                   " bytes; at most ", kMaxRecord));
  }
  const std::string rec = frame(payload);
  absl::Status s = writeAll(wal_fd_, rec, path("wal"));
  if (s.ok() && ::fdatasync(wal_fd_) != 0) s = GW_ERRNO("fdatasync the state store's log");
  if (!s.ok()) {
    // Not acknowledged: cut what may have reached the file, or refuse every later write.
    if (::ftruncate(wal_fd_, wal_size_) != 0) broken_ = s;
    return s;
  }
  wal_size_ += static_cast<off_t>(rec.size());
  apply(txn, revision_ + 1);
  if (++logged_since_snapshot_ >= options_.snapshot_every) {
    // The transaction is durable in the log already; a failed snapshot leaves the log as it is.
    if (absl::Status snap = snapshot(); !snap.ok()) broken_ = snap;
  }
  return StateTxnResult{true, revision_};
}

absl::Status EmbeddedStateStore::snapshot() {
  std::string payload;
  putU64(&payload, static_cast<uint64_t>(revision_));
  putU32(&payload, static_cast<uint32_t>(data_.size()));
  for (const auto& [key, e] : data_) {
    putBytes(&payload, key);
    putBytes(&payload, e.value);
    putU64(&payload, static_cast<uint64_t>(e.mod_revision));
  }
  GW_RETURN_IF_ERROR(replaceFile(options_.data_dir, path("snapshot"), kSnapshotMagic, payload));
  // Records up to revision_ are in the snapshot now; a crash before the next line leaves them in
  // the log too, where recovery skips them.
  ::close(wal_fd_);
  wal_fd_ = -1;
  wal_size_ = 0;
  logged_since_snapshot_ = 0;
  return openWalForAppend();
}

}  // namespace

absl::StatusOr<std::unique_ptr<StateStore>> openEmbeddedStateStore(
    const EmbeddedStateStoreOptions& options) {
  if (options.data_dir.empty()) {
    return absl::InvalidArgumentError("state store: --data-dir is empty; expected a directory");
  }
  if (options.snapshot_every < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("state store: snapshot_every is ", options.snapshot_every, "; expected >= 1"));
  }
  auto store = std::make_unique<EmbeddedStateStore>(options);
  GW_RETURN_IF_ERROR(store->open());
  return std::unique_ptr<StateStore>(std::move(store));
}

}  // namespace gangway::scheduler
