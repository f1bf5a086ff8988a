// StateStore: where the scheduler keeps what it acknowledges (nodes, jobs, assignments, resize
// decisions). A small key-value interface with revisions and compare-and-commit transactions, the
// shape of etcd v3's KV and Txn, so that one conformance suite runs against every implementation:
//   - EmbeddedStateStore (the default): a write-ahead log plus snapshots in a data directory;
//   - an etcd v3 client (for several scheduler replicas).
// Every write returns only when it is durable: an acknowledged write survives `kill -9` of the
// process (and, for the embedded store, power loss: the log is fsynced before the return).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/strings/string_view.h>

namespace gangway::scheduler {

struct StateEntry {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;  // the store revision of the entry's last write
};

// One transaction: if every compare holds, apply every op, atomically, as one new revision.
struct StateTxn {
  struct Compare {
    std::string key;
    int64_t mod_revision = 0;  // the key's expected mod_revision; 0: the key must be absent
  };
  struct Op {
    enum class Kind { kPut, kDelete } kind = Kind::kPut;
    std::string key;
    std::string value;  // for kPut
  };
  std::vector<Compare> compares;
  std::vector<Op> ops;
};

struct StateTxnResult {
  bool succeeded = false;  // false: a compare failed and nothing was written
  int64_t revision = 0;    // the store's revision after the call
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  // Writes `value` under `key`; returns the new revision once durable.
  virtual absl::StatusOr<int64_t> put(absl::string_view key, absl::string_view value) = 0;
  // Removes `key` (a no-op, with no new revision, when absent); returns the store's revision.
  virtual absl::StatusOr<int64_t> remove(absl::string_view key) = 0;
  // Compare-and-commit. An empty key or a txn with no ops is InvalidArgument.
  virtual absl::StatusOr<StateTxnResult> commit(const StateTxn& txn) = 0;
  virtual absl::StatusOr<std::optional<StateEntry>> get(absl::string_view key) = 0;
  // Every entry whose key starts with `prefix`, in key order.
  virtual absl::StatusOr<std::vector<StateEntry>> list(absl::string_view prefix) = 0;
  // The revision of the last acknowledged write (0 for an empty store).
  virtual int64_t revision() const = 0;
};

struct EmbeddedStateStoreOptions {
  std::string data_dir;  // created if missing
  // A snapshot is written (and the log restarted) after this many logged transactions.
  int64_t snapshot_every = 10000;
};

// Opens (or creates) the embedded store in options.data_dir:
//   LOCK                 flock()ed while open: a second process on the same directory fails
//   snapshot             the state at some revision (written to a temporary file, fsynced, renamed)
//   wal                  the transactions after it, one checksummed record each, fsynced per write
// Recovery loads the snapshot and replays the log. A torn last record (a crash in the middle of a
// write that was never acknowledged) is cut off; any other damage (a bad checksum with records
// after it, a bad snapshot, an unknown format) is a FailedPrecondition naming the file and the
// offset, never a silent reset.
absl::StatusOr<std::unique_ptr<StateStore>> openEmbeddedStateStore(
    const EmbeddedStateStoreOptions& options);

struct EtcdStateStoreOptions {
  // Client endpoints, comma-separated host:port (the first that answers is used).
  std::string endpoints;
  // Every key gangway writes lives under this prefix, so one etcd can serve several clusters.
  std::string prefix = "/gangway/";
  // Each call waits this long for etcd (connecting included), then fails with Unavailable.
  double timeout_seconds = 5.0;
  // Fencing: when `fence_lease` is not 0, every write is a transaction that holds only while
  // `fence_key` (the leader election's key, a full etcd key) is bound to that lease; otherwise it
  // writes nothing and fails with FailedPrecondition. A leader paused past its lease, whose key
  // another replica now holds, cannot write once it resumes.
  std::string fence_key;
  int64_t fence_lease = 0;
};

// Connects to etcd v3 over gRPC (KV.Range, Put, DeleteRange, Txn) and reads its revision.
// Revisions are etcd's own (shared with every other key in that etcd, so they grow by one per
// write of this store only when nothing else writes). Unavailable naming the endpoints when etcd
// does not answer within the timeout; a write that timed out may or may not have been applied, and
// the caller must read back before retrying it.
absl::StatusOr<std::unique_ptr<StateStore>> openEtcdStateStore(
    const EtcdStateStoreOptions& options);

}  // namespace gangway::scheduler
