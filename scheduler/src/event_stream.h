// A server stream of events that a state machine pushes (the rendezvous' RoundEvents to an agent,
// the cluster manager's NodeEvents to a pool agent): events are queued by the state machine (under
// its lock, so queueing never blocks) and written one at a time. The queue is bounded: a peer that
// stops reading has its stream closed (RESOURCE_EXHAUSTED) instead of growing the server's
// memory; its agent reconnects and is sent its latest event again.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <utility>

#include <absl/base/thread_annotations.h>
#include <absl/status/statusor.h>
#include <absl/strings/str_cat.h>
#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>

#include "gangway/scheduler/client/channel.h"

namespace gangway::scheduler {

template <typename Event>
class EventStreamReactor final : public grpc::ServerWriteReactor<Event> {
 public:
  using Sink = std::function<void(const Event&)>;
  // Ends the stream with a status (another stream for the same peer replaced it).
  using Close = std::function<void(const absl::Status&)>;
  // Registers the sink and the closer with the state machine; returns a handle for `detach`.
  using Attach = std::function<absl::StatusOr<uint64_t>(Sink, Close)>;
  // The stream `handle` ended; `lost` when the peer went away (not a clean finish).
  using Detach = std::function<void(uint64_t handle, bool lost)>;
  // Whether the stream ends after writing this event (a job's end).
  using IsLast = std::function<bool(const Event&)>;

  EventStreamReactor(Detach detach, IsLast is_last, std::size_t max_events, std::size_t max_bytes)
      : detach_(std::move(detach)),
        is_last_(std::move(is_last)),
        max_events_(max_events),
        max_bytes_(max_bytes) {}

  // The reactor is deleted by whichever of start() and OnDone() ends last: an event delivered
  // during attach() may finish the call before start() has recorded the handle.
  void start(const absl::Status& authorized, const Attach& attach) {
    if (!authorized.ok()) {
      finish(toGrpc(authorized));
      release();
      return;
    }
    auto handle = attach([this](const Event& e) { enqueue(e); },
                         [this](const absl::Status& s) { finish(toGrpc(s)); });
    if (!handle.ok()) {
      finish(toGrpc(handle.status()));
    } else {
      absl::MutexLock lock(&mu_);
      handle_ = *handle;
    }
    release();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      lost_ = true;
      finishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
      return;
    }
    if (is_last_(current_)) {
      finishLocked(grpc::Status::OK);
      return;
    }
    writeNextLocked();
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    lost_ = true;  // the peer went away (or its deadline passed)
    finishLocked(grpc::Status::CANCELLED);
  }
  void OnDone() override { release(); }

 private:
  void release() {
    if (refs_.fetch_sub(1) != 1) return;
    uint64_t handle;
    bool lost;
    {
      absl::MutexLock lock(&mu_);
      handle = handle_;
      lost = lost_;
    }
    // After detach returns, the state machine never calls enqueue on this reactor again.
    if (handle != 0) detach_(handle, lost);
    delete this;
  }
  void enqueue(const Event& e) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    const std::size_t bytes = e.ByteSizeLong();
    if (queue_.size() + 1 > max_events_ || queued_bytes_ + bytes > max_bytes_) {
      // The peer stopped reading. Its events are dropped now (the state machine keeps the
      // latest, replayed when the agent watches again); the status follows the write in flight,
      // if the peer ever reads it. Until then the agent counts as present, and is removed when
      // its heartbeats stop or this stream ends.
      const std::string why = absl::StrCat("the stream fell behind: ", queue_.size(), " events (",
                                           queued_bytes_, " bytes) unread; watch again");
      queue_.clear();
      queued_bytes_ = 0;
      lost_ = true;
      finishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, why));
      return;
    }
    queue_.push_back({e, bytes});
    queued_bytes_ += bytes;
    if (!writing_) writeNextLocked();
  }
  void writeNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (queue_.empty() || finished_) return;
    current_ = std::move(queue_.front().event);
    queued_bytes_ -= queue_.front().bytes;
    queue_.pop_front();
    writing_ = true;
    this->StartWrite(&current_);
  }
  void finish(grpc::Status s) {
    absl::MutexLock lock(&mu_);
    finishLocked(std::move(s));
  }
  void finishLocked(grpc::Status s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    this->Finish(std::move(s));
  }

  const Detach detach_;
  const IsLast is_last_;
  const std::size_t max_events_;
  const std::size_t max_bytes_;
  std::atomic<int> refs_{2};  // start() and OnDone()
  absl::Mutex mu_;
  uint64_t handle_ ABSL_GUARDED_BY(mu_) = 0;
  struct Queued {
    Event event;
    std::size_t bytes;  // its serialized size, counted once
  };
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);
  std::size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  Event current_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace gangway::scheduler
