// The etcd v3 StateStore: every call is one etcd KV RPC under a key prefix. A write is
// acknowledged when etcd answers, i.e. once it is committed by the etcd cluster's quorum.
#include <chrono>
#include <set>

#include <absl/base/thread_annotations.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>

#include "gangway/common/status.h"
#include "gangway/scheduler/state_store.h"

#include "etcd/etcd_kv.grpc.pb.h"
#include "etcd_channel.h"

namespace gangway::scheduler {
namespace {

// The smallest key greater than every key that starts with `prefix` (etcd's range_end for a
// prefix); "\0" (every key) when the prefix is all 0xff bytes or empty.
std::string prefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) != 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

class EtcdStateStore final : public StateStore {
 public:
  bool fenced() const { return options_.fence_lease != 0; }

  absl::StatusOr<int64_t> fencedWrite(StateTxn::Op::Kind kind, absl::string_view key,
                                      absl::string_view value) {
    StateTxn txn;
    txn.ops.push_back({kind, std::string(key), std::string(value)});
    GW_ASSIGN_OR_RETURN(const StateTxnResult r, commit(txn));
    return r.revision;
  }

  explicit EtcdStateStore(EtcdStateStoreOptions options) : options_(std::move(options)) {}

  absl::Status open() {
    GW_ASSIGN_OR_RETURN(auto channel, etcdChannel(options_.endpoints, "state store"));
    stub_ = etcdserverpb::KV::NewStub(channel);
    etcdserverpb::RangeRequest req;
    req.set_key(options_.prefix);
    req.set_range_end(prefixEnd(options_.prefix));
    req.set_count_only(true);
    etcdserverpb::RangeResponse resp;
    GW_RETURN_IF_ERROR(
        call("Range", [&](grpc::ClientContext* c) { return stub_->Range(c, req, &resp); }));
    seen(resp.header().revision());
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> put(absl::string_view key, absl::string_view value) override {
    if (fenced()) return fencedWrite(StateTxn::Op::Kind::kPut, key, value);
    GW_RETURN_IF_ERROR(checkKey(key));
    etcdserverpb::PutRequest req;
    req.set_key(full(key));
    req.set_value(std::string(value));
    etcdserverpb::PutResponse resp;
    GW_RETURN_IF_ERROR(
        call("Put", [&](grpc::ClientContext* c) { return stub_->Put(c, req, &resp); }));
    seen(resp.header().revision());
    return resp.header().revision();
  }

  absl::StatusOr<int64_t> remove(absl::string_view key) override {
    if (fenced()) return fencedWrite(StateTxn::Op::Kind::kDelete, key, "");
    GW_RETURN_IF_ERROR(checkKey(key));
    etcdserverpb::DeleteRangeRequest req;
    req.set_key(full(key));
    etcdserverpb::DeleteRangeResponse resp;
    GW_RETURN_IF_ERROR(call(
        "DeleteRange", [&](grpc::ClientContext* c) { return stub_->DeleteRange(c, req, &resp); }));
    seen(resp.header().revision());
    return resp.header().revision();
  }

  absl::StatusOr<StateTxnResult> commit(const StateTxn& txn) override {
    if (txn.ops.empty())
      return absl::InvalidArgumentError("state store: a transaction with no ops");
    std::set<std::string> keys;
    etcdserverpb::TxnRequest req;
    for (const StateTxn::Op& op : txn.ops) {
      GW_RETURN_IF_ERROR(checkKey(op.key));
      if (!keys.insert(op.key).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("state store: a transaction writes key ", op.key, " twice"));
      }
      etcdserverpb::RequestOp* r = req.add_success();
      if (op.kind == StateTxn::Op::Kind::kDelete) {
        r->mutable_request_delete_range()->set_key(full(op.key));
      } else {
        r->mutable_request_put()->set_key(full(op.key));
        r->mutable_request_put()->set_value(op.value);
      }
    }
    for (const StateTxn::Compare& cmp : txn.compares) {
      etcdserverpb::Compare* c = req.add_compare();
      c->set_key(full(cmp.key));
      c->set_result(etcdserverpb::Compare::EQUAL);
      if (cmp.mod_revision == 0) {
        c->set_target(etcdserverpb::Compare::CREATE);  // absent: etcd's create_revision == 0
        c->set_create_revision(0);
      } else {
        c->set_target(etcdserverpb::Compare::MOD);
        c->set_mod_revision(cmp.mod_revision);
      }
    }
    if (fenced()) {
      // The leader's writes hold only while the election key is bound to its lease: a replica
      // paused past its lease, whose key expired and was taken, writes nothing.
      etcdserverpb::Compare* c = req.add_compare();
      c->set_key(options_.fence_key);
      c->set_target(etcdserverpb::Compare::LEASE);
      c->set_result(etcdserverpb::Compare::EQUAL);
      c->set_lease(options_.fence_lease);
      req.add_failure()->mutable_request_range()->set_key(options_.fence_key);
    }
    etcdserverpb::TxnResponse resp;
    GW_RETURN_IF_ERROR(
        call("Txn", [&](grpc::ClientContext* c) { return stub_->Txn(c, req, &resp); }));
    seen(resp.header().revision());
    if (fenced() && !resp.succeeded()) {
      bool held = false;
      if (resp.responses_size() > 0) {
        const auto& kvs = resp.responses(0).response_range().kvs();
        held = !kvs.empty() && kvs[0].lease() == options_.fence_lease;
      }
      if (!held) {
        return absl::FailedPreconditionError(absl::StrCat(
            "state store: this scheduler no longer leads (the election key ", options_.fence_key,
            " is not held by its lease); the write was not applied"));
      }
    }
    return StateTxnResult{resp.succeeded(), resp.header().revision()};
  }

  absl::StatusOr<std::optional<StateEntry>> get(absl::string_view key) override {
    etcdserverpb::RangeRequest req;
    req.set_key(full(key));
    etcdserverpb::RangeResponse resp;
    GW_RETURN_IF_ERROR(
        call("Range", [&](grpc::ClientContext* c) { return stub_->Range(c, req, &resp); }));
    seen(resp.header().revision());
    if (resp.kvs_size() == 0) return std::optional<StateEntry>();
    return std::optional<StateEntry>(entry(resp.kvs(0)));
  }

  absl::StatusOr<std::vector<StateEntry>> list(absl::string_view prefix) override {
    etcdserverpb::RangeRequest req;
    req.set_key(full(prefix));
    req.set_range_end(prefixEnd(full(prefix)));
    etcdserverpb::RangeResponse resp;
    GW_RETURN_IF_ERROR(
        call("Range", [&](grpc::ClientContext* c) { return stub_->Range(c, req, &resp); }));
    seen(resp.header().revision());
    std::vector<StateEntry> out;
    out.reserve(resp.kvs_size());
    for (const etcdserverpb::KeyValue& kv : resp.kvs()) out.push_back(entry(kv));
    return out;  // etcd returns a range in key order
  }

  int64_t revision() const override {
    absl::MutexLock lock(&mu_);
    return revision_;
  }

 private:
  std::string full(absl::string_view key) const { return absl::StrCat(options_.prefix, key); }

  StateEntry entry(const etcdserverpb::KeyValue& kv) const {
    return StateEntry{kv.key().substr(options_.prefix.size()), kv.value(), kv.mod_revision()};
  }

  static absl::Status checkKey(absl::string_view key) {
    if (key.empty()) return absl::InvalidArgumentError("state store: an empty key");
    return absl::OkStatus();
  }

  // One RPC: waits for the channel to connect (nothing is sent before it does) up to the timeout.
  template <typename F>
  absl::Status call(const char* what, F rpc) {
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::microseconds(static_cast<int64_t>(options_.timeout_seconds * 1e6)));
    const grpc::Status s = rpc(&ctx);
    if (!s.ok()) {
      const auto code = s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                                s.error_code() == grpc::StatusCode::UNAVAILABLE
                            ? absl::StatusCode::kUnavailable
                            : static_cast<absl::StatusCode>(s.error_code());
      return absl::Status(code, absl::StrCat("state store: etcd at ", options_.endpoints, ": ",
                                             what, " failed within ", options_.timeout_seconds,
                                             " s: ", s.error_message()));
    }
    return absl::OkStatus();
  }

  void seen(int64_t revision) {
    absl::MutexLock lock(&mu_);
    revision_ = std::max(revision_, revision);
  }

  const EtcdStateStoreOptions options_;
  std::unique_ptr<etcdserverpb::KV::Stub> stub_;
  mutable absl::Mutex mu_;
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<StateStore>> openEtcdStateStore(
    const EtcdStateStoreOptions& options) {
  if (!(options.timeout_seconds > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("state store: etcd timeout is ", options.timeout_seconds, " s; expected > 0"));
  }
  auto store = std::make_unique<EtcdStateStore>(options);
  GW_RETURN_IF_ERROR(store->open());
  return std::unique_ptr<StateStore>(std::move(store));
}

}  // namespace gangway::scheduler
