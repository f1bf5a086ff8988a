#include "gangway/comm/bootstrap.h"

#include <atomic>
#include <cstdlib>
#include <utility>

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include "gangway/common/worker_env.h"
#include "gangway/scheduler/client/channel.h"
#include "gangway/scheduler/client/grpc_store.h"
#include "gangway/scheduler/client/store.h"

namespace gangway::comm {

namespace {

class SingleBootstrap final : public Bootstrap {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int localRank() const override { return 0; }
  const char* kind() const override { return "single"; }
  absl::StatusOr<std::vector<std::string>> allGather(const std::string& mine,
                                                     absl::Duration /*timeout*/) override {
    return std::vector<std::string>{mine};
  }
};

class StoreBootstrap final : public Bootstrap {
 public:
  StoreBootstrap(std::unique_ptr<scheduler::Store> store, int rank, int size, int local_rank,
                 std::string scope)
      : store_(std::move(store)),
        rank_(rank),
        size_(size),
        local_rank_(local_rank),
        scope_(std::move(scope)) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int localRank() const override { return local_rank_; }
  const char* kind() const override { return "store"; }

  absl::StatusOr<std::vector<std::string>> allGather(const std::string& mine,
                                                     absl::Duration timeout) override {
    const std::string prefix = absl::StrCat(scope_, "/", calls_++, "/");
    if (absl::Status s = store_->set(absl::StrCat(prefix, rank_), mine); !s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("bootstrap through the job's store: ", s.message()));
    }
    std::vector<std::string> keys;
    keys.reserve(size_);
    for (int r = 0; r < size_; ++r) keys.push_back(absl::StrCat(prefix, r));
    if (absl::Status s = store_->wait(keys, timeout); !s.ok()) {
      if (!absl::IsDeadlineExceeded(s)) {
        return absl::Status(s.code(),
                            absl::StrCat("bootstrap through the job's store: ", s.message()));
      }
      std::vector<int> missing;
      for (int r = 0; r < size_; ++r) {
        auto there = store_->check({keys[r]});
        if (there.ok() && !*there) missing.push_back(r);
      }
      return absl::DeadlineExceededError(
          absl::StrCat("bootstrap: rank(s) ", absl::StrJoin(missing, ","), " of ", size_,
                       " did not arrive within ", absl::FormatDuration(timeout)));
    }
    std::vector<std::string> out;
    out.reserve(size_);
    for (const auto& key : keys) {
      auto v = store_->get(key, timeout);
      if (!v.ok()) return v.status();
      out.push_back(*std::move(v));
    }
    return out;
  }

 private:
  std::unique_ptr<scheduler::Store> store_;
  const int rank_;
  const int size_;
  const int local_rank_;
  const std::string scope_;
  int calls_ = 0;
};

// Reads an integer variable; nullopt-like -1 when unset.
absl::StatusOr<int> intFromEnv(const char* name, int unset, int min_value) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return unset;
  int out = 0;
  if (!absl::SimpleAtoi(v, &out) || out < min_value) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, "='", v, "': expected an integer >= ", min_value));
  }
  return out;
}

std::string envOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : std::string(fallback);
}

// Store bootstraps made by this process: every rank makes its communicators in the same order, so
// the n-th one has the same number everywhere and gets a fresh key scope.
std::atomic<int> store_bootstraps{0};

}  // namespace

std::unique_ptr<Bootstrap> makeStoreBootstrap(std::unique_ptr<scheduler::Store> store, int rank,
                                              int size, int local_rank, std::string scope) {
  return std::make_unique<StoreBootstrap>(std::move(store), rank, size, local_rank,
                                          std::move(scope));
}

std::unique_ptr<Bootstrap> makeSingleBootstrap() { return std::make_unique<SingleBootstrap>(); }

absl::StatusOr<std::unique_ptr<Bootstrap>> bootstrapFromEnvironment() {
  const char* store = std::getenv(env::kStore);
  if (store != nullptr && *store != '\0') {
    auto rank = intFromEnv(env::kRank, -1, 0);
    if (!rank.ok()) return rank.status();
    auto size = intFromEnv(env::kWorldSize, -1, 1);
    if (!size.ok()) return size.status();
    if (*rank < 0 || *size < 0) {
      return absl::InvalidArgumentError(
          "GANGWAY_STORE is set but RANK or WORLD_SIZE is not (run workers with gangway run)");
    }
    if (*rank >= *size) {
      return absl::InvalidArgumentError(
          absl::StrCat("RANK=", *rank, " is not below WORLD_SIZE=", *size));
    }
    auto local = intFromEnv(env::kLocalRank, 0, 0);
    if (!local.ok()) return local.status();
    scheduler::ChannelOptions channel_options;
    channel_options.address = store;
    channel_options.tls_ca_file = envOr(env::kStoreTlsCa, "");
    auto channel = scheduler::makeChannel(channel_options);
    if (!channel.ok()) return channel.status();
    const std::string job = envOr(env::kJobId, "default");
    auto kv = scheduler::makeGrpcStore(*std::move(channel), job, envOr(env::kStoreToken, ""));
    const std::string scope =
        absl::StrCat("comm/", envOr(env::kRound, "0"), "/", store_bootstraps.fetch_add(1));
    return makeStoreBootstrap(std::move(kv), *rank, *size, *local, scope);
  }
  if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr) return makeMpiBootstrap();
  auto size = intFromEnv(env::kWorldSize, 1, 1);
  if (!size.ok()) return size.status();
  if (*size > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("WORLD_SIZE=", *size,
                     " but no way to reach the other ranks: GANGWAY_STORE is unset (run under "
                     "`gangway run --standalone` or with --rdzv-endpoint, or under mpirun)"));
  }
  return makeSingleBootstrap();
}

#ifndef GANGWAY_HAVE_MPI
absl::StatusOr<std::unique_ptr<Bootstrap>> makeMpiBootstrap() {
  return absl::FailedPreconditionError(
      "OMPI_COMM_WORLD_SIZE is set (mpirun) but this build of gangway has no MPI support");
}
#endif

}  // namespace gangway::comm
