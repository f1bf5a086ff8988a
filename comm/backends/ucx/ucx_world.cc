#include "ucx/ucx_world.h"

#include <algorithm>
#include <utility>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include <sched.h>

namespace gangway::comm::ucx {

namespace {

// Tag layout. Bit 63 clear: collective, [62..40] sequence, [39..20] sender, [19..0] step.
// Bit 63 set: point to point, [62..40] sender (low bits), [39..0] per-pair sequence.
constexpr uint64_t kP2pBit = uint64_t{1} << 63;
constexpr uint64_t kFullMask = ~uint64_t{0};

absl::Status ucsError(ucs_status_t s, absl::string_view what, const char* file, int line) {
  return absl::UnavailableError(
      absl::StrCat("ucx: ", what, ": ", ucs_status_string(s), " (", file, ":", line, ")"));
}
#define GW_UCS(s, what) ucsError((s), (what), __FILE__, __LINE__)

// Progress + request bookkeeping costs well under a microsecond; checking the clock every few
// hundred idle iterations keeps deadlines accurate to well under a millisecond.
constexpr int kIdleSpinsPerClockCheck = 256;

}  // namespace

uint64_t UcxWorld::collectiveTag(uint32_t seq, int src, uint32_t step) {
  return (uint64_t{seq & 0x7FFFFFu} << 40) | (uint64_t(src & 0xFFFFF) << 20) |
         uint64_t{step & 0xFFFFFu};
}

uint64_t UcxWorld::p2pTag(int src, uint64_t seq) {
  return kP2pBit | (uint64_t(src & 0x7FFFFF) << 40) | (seq & 0xFFFFFFFFFFull);
}

void UcxWorld::onEndpointError(void* arg, ucp_ep_h /*ep*/, ucs_status_t status) {
  auto* a = static_cast<ErrorArg*>(arg);
  a->world->failed_[a->peer] = static_cast<int>(status);
}

absl::StatusOr<std::unique_ptr<UcxWorld>> UcxWorld::create(Bootstrap& bootstrap,
                                                           absl::Duration timeout) {
  std::unique_ptr<UcxWorld> w(new UcxWorld(bootstrap.rank(), bootstrap.size(), timeout));
  ucp_config_t* config = nullptr;
  if (ucs_status_t s = ucp_config_read(nullptr, nullptr, &config); s != UCS_OK) {
    return GW_UCS(s, "reading UCX_* settings");
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS;
  params.features = UCP_FEATURE_TAG;
  params.estimated_num_eps = static_cast<size_t>(w->size_);
  ucs_status_t s = ucp_init(&params, config, &w->context_);
  ucp_config_release(config);
  if (s != UCS_OK) return GW_UCS(s, "ucp_init");

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  if (s = ucp_worker_create(w->context_, &wp, &w->worker_); s != UCS_OK) {
    return GW_UCS(s, "ucp_worker_create");
  }

  ucp_address_t* address = nullptr;
  size_t address_length = 0;
  if (s = ucp_worker_get_address(w->worker_, &address, &address_length); s != UCS_OK) {
    return GW_UCS(s, "ucp_worker_get_address");
  }
  std::string mine(reinterpret_cast<const char*>(address), address_length);
  ucp_worker_release_address(w->worker_, address);
  auto all = bootstrap.allGather(mine, timeout);
  if (!all.ok()) return all.status();

  w->eps_.assign(w->size_, nullptr);
  w->failed_.assign(w->size_, 0);
  for (int peer = 0; peer < w->size_; ++peer) {
    if (peer == w->rank_) continue;
    if ((*all)[peer].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("ucx: rank ", peer, " published an empty worker address"));
    }
    auto arg = std::make_unique<ErrorArg>(ErrorArg{w.get(), peer});
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep.address = reinterpret_cast<const ucp_address_t*>((*all)[peer].data());
    ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep.err_handler.cb = &UcxWorld::onEndpointError;
    ep.err_handler.arg = arg.get();
    w->error_args_.push_back(std::move(arg));
    if (s = ucp_ep_create(w->worker_, &ep, &w->eps_[peer]); s != UCS_OK) {
      return GW_UCS(s, absl::StrCat("connecting to rank ", peer));
    }
  }
  return w;
}

void UcxWorld::progressUntilDone(std::vector<void*>& requests, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  int spins = 0;
  while (!requests.empty()) {
    ucp_worker_progress(worker_);
    std::erase_if(requests, [](void* r) {
      if (ucp_request_check_status(r) == UCS_INPROGRESS) return false;
      ucp_request_free(r);
      return true;
    });
    if (++spins % kIdleSpinsPerClockCheck == 0) {
      if (absl::Now() > deadline) {
        for (void* r : requests) ucp_request_free(r);  // released by UCX when they complete
        requests.clear();
        return;
      }
      sched_yield();
    }
  }
}

UcxWorld::~UcxWorld() {
  if (worker_ != nullptr) {
    // Every operation of a finished call has completed locally; a worker flush makes sure the
    // transports have handed the last messages on (shared memory: in the peer's queue; tcp: in
    // the kernel). It needs no progress from the peers, unlike a flushing close, which waits for
    // a peer's acknowledgement and would stall on a peer that is busy elsewhere. Endpoints are
    // then force-closed.
    std::vector<void*> pending;
    ucp_request_param_t flush{};
    ucs_status_ptr_t r = ucp_worker_flush_nbx(worker_, &flush);
    if (r != nullptr && !UCS_PTR_IS_ERR(r)) pending.push_back(r);
    progressUntilDone(pending, std::min(timeout_, absl::Seconds(5)));
    for (ucp_ep_h ep : eps_) {
      if (ep == nullptr) continue;
      ucp_request_param_t p{};
      p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      p.flags = UCP_EP_CLOSE_FLAG_FORCE;
      r = ucp_ep_close_nbx(ep, &p);
      if (r != nullptr && !UCS_PTR_IS_ERR(r)) pending.push_back(r);
    }
    progressUntilDone(pending, absl::Seconds(1));
    // Messages that arrived for calls that never completed (after a failure) are dropped
    // quietly instead of being reported one by one when the worker goes.
    std::vector<char> sink;
    for (int i = 0; i < 1 << 16; ++i) {
      ucp_tag_recv_info_t info{};
      ucp_tag_message_h msg = ucp_tag_probe_nb(worker_, 0, 0, 1, &info);
      if (msg == nullptr) break;
      sink.resize(std::max(sink.size(), info.length));
      ucp_request_param_t p{};
      r = ucp_tag_msg_recv_nbx(worker_, sink.data(), info.length, msg, &p);
      if (r != nullptr && !UCS_PTR_IS_ERR(r)) {
        pending.push_back(r);
        progressUntilDone(pending, absl::Seconds(1));
      }
    }
    ucp_worker_destroy(worker_);
  }
  if (context_ != nullptr) ucp_cleanup(context_);
}

absl::Status UcxWorld::postSend(OpSet& set, int peer, uint64_t tag, const void* buf,
                                std::size_t bytes) {
  if (failed_[peer] != 0) {
    return fail(set, absl::UnavailableError(absl::StrCat(
                         "ucx: rank ", peer, " is gone (",
                         ucs_status_string(static_cast<ucs_status_t>(failed_[peer])), ")")));
  }
  ucp_request_param_t p{};
  ucs_status_ptr_t r = ucp_tag_send_nbx(eps_[peer], buf, bytes, tag, &p);
  if (r == nullptr) return absl::OkStatus();
  if (UCS_PTR_IS_ERR(r)) {
    return fail(set, GW_UCS(UCS_PTR_STATUS(r), absl::StrCat("sending to rank ", peer)));
  }
  set.ops_.push_back({r, peer, false, 0});
  return absl::OkStatus();
}

absl::Status UcxWorld::postRecv(OpSet& set, int peer, uint64_t tag, void* buf, std::size_t bytes,
                                uint64_t cookie) {
  ucp_request_param_t p{};
  ucs_status_ptr_t r = ucp_tag_recv_nbx(worker_, buf, bytes, tag, kFullMask, &p);
  if (r == nullptr) {
    set.done_now_.push_back(cookie);
    return absl::OkStatus();
  }
  if (UCS_PTR_IS_ERR(r)) {
    return fail(set, GW_UCS(UCS_PTR_STATUS(r), absl::StrCat("receiving from rank ", peer)));
  }
  set.ops_.push_back({r, peer, true, cookie});
  return absl::OkStatus();
}

void UcxWorld::cancelAll(OpSet& set) {
  for (auto& op : set.ops_) {
    if (op.request == nullptr) continue;
    if (op.is_recv) ucp_request_cancel(worker_, op.request);
  }
  // Cancelled receives complete on the next progress calls; sends to failed peers complete with
  // an error once their endpoint is purged. Bounded: what is left is released when complete.
  const absl::Time deadline = absl::Now() + absl::Seconds(1);
  int spins = 0;
  while (true) {
    ucp_worker_progress(worker_);
    bool left = false;
    for (auto& op : set.ops_) {
      if (op.request == nullptr) continue;
      if (ucp_request_check_status(op.request) != UCS_INPROGRESS) {
        ucp_request_free(op.request);
        op.request = nullptr;
      } else {
        left = true;
      }
    }
    if (!left) break;
    if (++spins % kIdleSpinsPerClockCheck == 0 && absl::Now() > deadline) {
      for (auto& op : set.ops_) {
        if (op.request != nullptr) ucp_request_free(op.request);
      }
      break;
    }
  }
  set.ops_.clear();
  set.done_now_.clear();
}

absl::Status UcxWorld::fail(OpSet& set, absl::Status s) {
  cancelAll(set);
  return s;
}

absl::Status UcxWorld::waitSome(OpSet& set, std::vector<uint64_t>& received, const char* what) {
  if (!set.done_now_.empty()) {
    received.insert(received.end(), set.done_now_.begin(), set.done_now_.end());
    set.done_now_.clear();
    return absl::OkStatus();
  }
  if (set.ops_.empty()) return absl::OkStatus();
  absl::Time deadline = absl::InfinitePast();
  int idle = 0;
  while (true) {
    ucp_worker_progress(worker_);
    bool any = false;
    for (auto& op : set.ops_) {
      const ucs_status_t s = ucp_request_check_status(op.request);
      if (s == UCS_INPROGRESS) {
        if (failed_[op.peer] != 0) {
          return fail(set,
                      absl::UnavailableError(absl::StrCat(
                          "ucx: ", what, ": rank ", op.peer, " is gone (",
                          ucs_status_string(static_cast<ucs_status_t>(failed_[op.peer])), ")")));
        }
        continue;
      }
      ucp_request_free(op.request);
      op.request = nullptr;
      any = true;
      if (s == UCS_ERR_MESSAGE_TRUNCATED) {
        return fail(set, absl::AbortedError(absl::StrCat(
                             "ucx: ", what, ": rank ", op.peer,
                             " sent more than expected (do the ranks agree on count and type?)")));
      }
      if (s != UCS_OK) {
        return fail(set, absl::UnavailableError(absl::StrCat(
                             "ucx: ", what, ": ", op.is_recv ? "receiving from" : "sending to",
                             " rank ", op.peer, " failed: ", ucs_status_string(s))));
      }
      if (op.is_recv) received.push_back(op.cookie);
    }
    if (any) {
      std::erase_if(set.ops_, [](const OpSet::Op& op) { return op.request == nullptr; });
      return absl::OkStatus();
    }
    if (++idle % kIdleSpinsPerClockCheck == 0) {
      const absl::Time now = absl::Now();
      if (deadline == absl::InfinitePast()) {
        deadline = now + timeout_;
      } else if (now > deadline) {
        std::vector<int> peers;
        for (const auto& op : set.ops_) peers.push_back(op.peer);
        std::sort(peers.begin(), peers.end());
        peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
        return fail(set,
                    absl::DeadlineExceededError(absl::StrCat(
                        "ucx: ", what, ": rank ", rank_, " waited ", absl::FormatDuration(timeout_),
                        " for rank(s) ", absl::StrJoin(peers, ","), " without progress")));
      }
      sched_yield();  // ranks may outnumber cores: let the peer run
    }
  }
}

absl::Status UcxWorld::waitAll(OpSet& set, const char* what) {
  std::vector<uint64_t> ignored;
  while (!set.ops_.empty() || !set.done_now_.empty()) {
    ignored.clear();
    if (absl::Status s = waitSome(set, ignored, what); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace gangway::comm::ucx
