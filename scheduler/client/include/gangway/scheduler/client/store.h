// The client-side view of a job's key-value store, with c10d's blocking calls (PyTorch's
// Store.hpp): every blocking call takes a timeout. Implemented over gRPC (grpc_store.h) and, in
// the control plane's own process, over its state (gangway/scheduler/kv_store.h); one conformance
// suite runs against both.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/time/time.h>

namespace gangway::scheduler {

class Store {
 public:
  virtual ~Store() = default;
  virtual absl::Status set(const std::string& key, const std::string& value) = 0;
  // DeadlineExceeded if the key does not appear within `timeout`.
  virtual absl::StatusOr<std::string> get(const std::string& key, absl::Duration timeout) = 0;
  virtual absl::StatusOr<int64_t> add(const std::string& key, int64_t delta) = 0;
  virtual absl::StatusOr<std::string> compareSet(const std::string& key,
                                                 const std::string& expected,
                                                 const std::string& desired) = 0;
  virtual absl::Status wait(const std::vector<std::string>& keys, absl::Duration timeout) = 0;
  virtual absl::StatusOr<bool> check(const std::vector<std::string>& keys) = 0;
  virtual absl::StatusOr<bool> deleteKey(const std::string& key) = 0;
  virtual absl::StatusOr<int64_t> numKeys() = 0;
};

}  // namespace gangway::scheduler
