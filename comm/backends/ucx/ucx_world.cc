#include "ucx/ucx_world.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <utility>

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>

#include "gangway/common/status.h"

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
// How often a waiting rank checks that the processes of its local peers still exist.
constexpr absl::Duration kLivenessInterval = absl::Milliseconds(20);

// What a rank publishes: "gw1 <boot id> <pid namespace> <pid>\n" then its UCX worker address.
// Two ranks with the same boot id and pid namespace are on one machine and see each other's pid.
std::string readFirstLine(const char* path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

std::string hostIdentity() {
  std::string boot = readFirstLine("/proc/sys/kernel/random/boot_id");
  if (boot.empty()) boot = "unknown-boot";
  char ns[128] = {};
  const ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);
  return absl::StrCat(boot, " ", n > 0 ? std::string(ns, static_cast<std::size_t>(n)) : "pid:?");
}

// Whether process `pid` (on this machine) has exited: gone, or a zombie nobody reaped yet.
bool processGone(int pid) {
  if (kill(pid, 0) != 0) return errno == ESRCH;
  const std::string stat = readFirstLine(absl::StrCat("/proc/", pid, "/stat").c_str());
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
}

}  // namespace

uint64_t UcxWorld::collectiveTag(uint32_t seq, int src, uint32_t step) {
  return (uint64_t{seq & 0x7FFFFFu} << 40) | (uint64_t(src & 0xFFFFF) << 20) |
         uint64_t{step & 0xFFFFFu};
}

uint64_t UcxWorld::p2pTag(int src, uint64_t seq) {
  return kP2pBit | (uint64_t(src & 0x7FFFFF) << 40) | (seq & 0xFFFFFFFFFFull);
}

std::string UcxWorld::peerFailure(int peer) const {
  if (local_pid_[peer] != 0 && failed_[peer] == static_cast<int>(UCS_ERR_CONNECTION_RESET)) {
    return absl::StrCat("its process ", local_pid_[peer], " exited");
  }
  return ucs_status_string(static_cast<ucs_status_t>(failed_[peer]));
}

void UcxWorld::onEndpointError(void* arg, ucp_ep_h /*ep*/, ucs_status_t status) {
  auto* a = static_cast<ErrorArg*>(arg);
  a->world->failed_[a->peer] = static_cast<int>(status);
}

absl::Status UcxWorld::openLane(Lane& lane, const char* tls, bool new_protocols) {
  ucp_config_t* config = nullptr;
  if (ucs_status_t s = ucp_config_read(nullptr, nullptr, &config); s != UCS_OK) {
    return GW_UCS(s, "reading UCX_* settings");
  }
  if (tls != nullptr) ucp_config_modify(config, "TLS", tls);
  if (new_protocols) ucp_config_modify(config, "PROTO_ENABLE", "y");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS;
  params.features = UCP_FEATURE_TAG;
  params.estimated_num_eps = static_cast<size_t>(size_);
  ucs_status_t s = ucp_init(&params, config, &lane.context);
  ucp_config_release(config);
  if (s != UCS_OK) return GW_UCS(s, "ucp_init");
  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  if (s = ucp_worker_create(lane.context, &wp, &lane.worker); s != UCS_OK) {
    return GW_UCS(s, "ucp_worker_create");
  }
  ucp_address_t* address = nullptr;
  size_t length = 0;
  if (s = ucp_worker_get_address(lane.worker, &address, &length); s != UCS_OK) {
    return GW_UCS(s, "ucp_worker_get_address");
  }
  lane.address.assign(reinterpret_cast<const char*>(address), length);
  ucp_worker_release_address(lane.worker, address);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<UcxWorld>> UcxWorld::create(Bootstrap& bootstrap,
                                                           absl::Duration timeout) {
  std::unique_ptr<UcxWorld> w(new UcxWorld(bootstrap.rank(), bootstrap.size(), timeout));
  // Two lanes unless the user chose UCX's transports (UCX_TLS): shared memory only for peers on
  // this machine, and UCX's own choice (tcp, verbs, ...) for the others. With every transport in
  // one context, UCX also runs tcp and cma lanes between processes of one machine, which halves
  // the bandwidth measured here (benches/comm); posix/sysv shared memory alone is the fastest.
  // The shared-memory lane also turns on UCX 1.13's newer protocol selection (PROTO_ENABLE=y)
  // unless UCX_PROTO_ENABLE is set: measured at 11.5 against 10 GB/s at 2 MiB (backends/ucx).
  const bool user_tls = std::getenv("UCX_TLS") != nullptr;
  const bool user_proto = std::getenv("UCX_PROTO_ENABLE") != nullptr;
  if (!user_tls) {
    GW_RETURN_IF_ERROR(w->openLane(w->lanes_[kShm], "posix,sysv,self", !user_proto));
  }
  GW_RETURN_IF_ERROR(w->openLane(w->lanes_[kNet], nullptr, false));

  const std::string host = hostIdentity();
  const std::string& shm = w->lanes_[kShm].address;
  const std::string& net = w->lanes_[kNet].address;
  std::string mine = absl::StrCat("gw1 ", host, " ", getpid(), " ", shm.size(), "\n");
  mine += shm;
  mine += net;
  auto all = bootstrap.allGather(mine, timeout);
  if (!all.ok()) return all.status();

  w->eps_.assign(w->size_, nullptr);
  w->peer_lane_.assign(w->size_, kNet);
  w->failed_.assign(w->size_, 0);
  w->local_pid_.assign(w->size_, 0);
  std::vector<std::string> addresses(w->size_);
  for (int peer = 0; peer < w->size_; ++peer) {
    const std::string& blob = (*all)[peer];
    const auto eol = blob.find('\n');
    std::vector<std::string> fields =
        absl::StrSplit(blob.substr(0, eol == std::string::npos ? 0 : eol), ' ');
    int pid = 0;
    std::size_t shm_length = 0;
    if (eol == std::string::npos || fields.size() != 5 || fields[0] != "gw1" ||
        !absl::SimpleAtoi(fields[3], &pid) || !absl::SimpleAtoi(fields[4], &shm_length) ||
        eol + 1 + shm_length >= blob.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ucx: rank ", peer, " published no usable address (a different gangway version?)"));
    }
    const bool local = absl::StrCat(fields[1], " ", fields[2]) == host;
    if (local) w->local_pid_[peer] = pid;
    if (local && shm_length > 0 && w->lanes_[kShm].worker != nullptr) {
      w->peer_lane_[peer] = kShm;
      addresses[peer] = blob.substr(eol + 1, shm_length);
    } else {
      addresses[peer] = blob.substr(eol + 1 + shm_length);
    }
  }
  for (int peer = 0; peer < w->size_; ++peer) {
    if (peer == w->rank_) continue;
    auto arg = std::make_unique<ErrorArg>(ErrorArg{w.get(), peer});
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep.address = reinterpret_cast<const ucp_address_t*>(addresses[peer].data());
    // UCX's shared-memory transports cannot report a failed peer, and asking for peer failure
    // handling makes UCX avoid them (tcp even on one machine: 8 us instead of 0.3 us for 8
    // bytes). Peers on this machine are watched through their process instead (processGone);
    // remote peers use UCX's peer failure handling (keepalive over tcp or verbs).
    ep.err_mode =
        w->local_pid_[peer] != 0 ? UCP_ERR_HANDLING_MODE_NONE : UCP_ERR_HANDLING_MODE_PEER;
    ep.err_handler.cb = &UcxWorld::onEndpointError;
    ep.err_handler.arg = arg.get();
    w->error_args_.push_back(std::move(arg));
    Lane& lane = w->lanes_[w->peer_lane_[peer]];
    lane.used = true;
    if (ucs_status_t s = ucp_ep_create(lane.worker, &ep, &w->eps_[peer]); s != UCS_OK) {
      return GW_UCS(s, absl::StrCat("connecting to rank ", peer));
    }
  }
  int local_ranks = 0;  // this rank included
  for (int pid : w->local_pid_) local_ranks += pid != 0 ? 1 : 0;
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0) {
    w->oversubscribed_ = local_ranks > CPU_COUNT(&cpus);
  }
  return w;
}

void UcxWorld::progress() {
  for (Lane& lane : lanes_) {
    if (lane.used) ucp_worker_progress(lane.worker);
  }
}

void UcxWorld::progressUntilDone(std::vector<void*>& requests, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  int spins = 0;
  while (!requests.empty()) {
    progress();
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
  // Every operation of a finished call has completed locally; a worker flush makes sure the
  // transports have handed the last messages on (shared memory: in the peer's queue; tcp: in
  // the kernel). It needs no progress from the peers, unlike a flushing close, which waits for
  // a peer's acknowledgement and would stall on a peer that is busy elsewhere. Endpoints are
  // then force-closed.
  std::vector<void*> pending;
  for (Lane& lane : lanes_) {
    if (!lane.used) continue;
    ucp_request_param_t flush{};
    ucs_status_ptr_t r = ucp_worker_flush_nbx(lane.worker, &flush);
    if (r != nullptr && !UCS_PTR_IS_ERR(r)) pending.push_back(r);
  }
  progressUntilDone(pending, std::min(timeout_, absl::Seconds(5)));
  // A lane with a failed peer on this machine (no UCX failure handling there) may hold sends
  // UCX can never finish nor purge: UCX aborts the process if such a worker is destroyed. That
  // lane is left to the process's exit instead (a broken communicator is an error path; its
  // shared memory goes with the process).
  bool abandon[2] = {false, false};
  for (int peer = 0; peer < static_cast<int>(eps_.size()); ++peer) {
    if (failed_[peer] != 0 && local_pid_[peer] != 0) abandon[peer_lane_[peer]] = true;
  }
  for (int peer = 0; peer < static_cast<int>(eps_.size()); ++peer) {
    ucp_ep_h ep = eps_[peer];
    if (ep == nullptr || abandon[peer_lane_[peer]]) continue;
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_EP_CLOSE_FLAG_FORCE;
    ucs_status_ptr_t r = ucp_ep_close_nbx(ep, &p);
    if (r != nullptr && !UCS_PTR_IS_ERR(r)) pending.push_back(r);
  }
  progressUntilDone(pending, absl::Seconds(1));
  for (int l = 0; l < 2; ++l) {
    Lane& lane = lanes_[l];
    if (lane.worker == nullptr || abandon[l]) continue;
    // Messages that arrived for calls that never completed (after a failure) are dropped
    // quietly instead of being reported one by one when the worker goes.
    std::vector<char> sink;
    for (int i = 0; lane.used && i < 1 << 16; ++i) {
      ucp_tag_recv_info_t info{};
      ucp_tag_message_h msg = ucp_tag_probe_nb(lane.worker, 0, 0, 1, &info);
      if (msg == nullptr) break;
      sink.resize(std::max(sink.size(), info.length));
      ucp_request_param_t p{};
      ucs_status_ptr_t r = ucp_tag_msg_recv_nbx(lane.worker, sink.data(), info.length, msg, &p);
      if (r != nullptr && !UCS_PTR_IS_ERR(r)) {
        pending.push_back(r);
        progressUntilDone(pending, absl::Seconds(1));
      }
    }
    ucp_worker_destroy(lane.worker);
  }
  for (int l = 0; l < 2; ++l) {
    if (lanes_[l].context != nullptr && !abandon[l]) ucp_cleanup(lanes_[l].context);
  }
}

absl::Status UcxWorld::postSend(OpSet& set, int peer, uint64_t tag, const void* buf,
                                std::size_t bytes) {
  if (failed_[peer] != 0) {
    return fail(set, absl::UnavailableError(
                         absl::StrCat("ucx: rank ", peer, " is gone (", peerFailure(peer), ")")));
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
  ucs_status_ptr_t r =
      ucp_tag_recv_nbx(lanes_[peer_lane_[peer]].worker, buf, bytes, tag, kFullMask, &p);
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
    if (op.is_recv) ucp_request_cancel(lanes_[peer_lane_[op.peer]].worker, op.request);
  }
  // Cancelled receives complete on the next progress calls; sends to failed peers complete with
  // an error once their endpoint is purged. Bounded: what is left is released when complete.
  std::vector<void*> left;
  for (auto& op : set.ops_) {
    if (op.request != nullptr) left.push_back(op.request);
  }
  progressUntilDone(left, absl::Seconds(1));
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
    progress();
    bool any = false;
    for (auto& op : set.ops_) {
      const ucs_status_t s = ucp_request_check_status(op.request);
      if (s == UCS_INPROGRESS) {
        if (failed_[op.peer] != 0) {
          return fail(
              set, absl::UnavailableError(absl::StrCat("ucx: ", what, ": rank ", op.peer,
                                                       " is gone (", peerFailure(op.peer), ")")));
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
    // More ranks than cores on this machine: a spinning rank takes the core its peer needs.
    if (oversubscribed_) sched_yield();
    if (++idle % kIdleSpinsPerClockCheck == 0) {
      const absl::Time now = absl::Now();
      if (now >= next_liveness_check_) {
        next_liveness_check_ = now + kLivenessInterval;
        for (const auto& op : set.ops_) {
          const int pid = local_pid_[op.peer];
          if (pid != 0 && failed_[op.peer] == 0 && processGone(pid)) {
            failed_[op.peer] = static_cast<int>(UCS_ERR_CONNECTION_RESET);
          }
        }
        // The next pass over the operations reports it.
        continue;
      }
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
      sched_yield();
    }
  }
}

absl::Status UcxWorld::waitAll(OpSet& set, const char* what) {
  std::vector<uint64_t> ignored;
  while (!set.ops_.empty() || !set.done_now_.empty()) {
    ignored.clear();
    GW_RETURN_IF_ERROR(waitSome(set, ignored, what));
  }
  return absl::OkStatus();
}

}  // namespace gangway::comm::ucx
