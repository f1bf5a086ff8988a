// The agent's event loop: one epoll set holding a signalfd for the signals the agent handles, a
// timerfd for its one deadline, and any other descriptor (worker output pipes, the rendezvous
// client's eventfd), each with its handler. Nothing polls: the agent sleeps until something
// happens.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <absl/status/statusor.h>

#include "gangway/common/fd.h"

namespace gangway::launcher {

class EventLoop {
 public:
  using Handler = std::function<void()>;
  // The signals taken from the signalfd in one wakeup, in the order the kernel gave them.
  using SignalHandler = std::function<void(const std::vector<int>& signals)>;
  using Registration = uint64_t;

  // Blocks `signals` in this thread (they arrive through the loop only) and sets up the epoll set.
  // Must run before any other thread starts, so that every thread inherits the mask.
  static absl::StatusOr<std::unique_ptr<EventLoop>> create(const std::vector<int>& signals);

  // The handler for signals (none: they are read and dropped).
  void onSignals(SignalHandler handler) { on_signals_ = std::move(handler); }
  // The handler for the deadline.
  void onDeadline(Handler handler) { on_deadline_ = std::move(handler); }
  // Arms the deadline `seconds` from now (replacing any other); disarm() cancels it, and any
  // expiry not yet handled.
  void armDeadline(double seconds);
  void disarmDeadline();

  // Calls `on_readable` whenever `fd` is readable (level-triggered) until remove(). The loop
  // does not own `fd`.
  absl::StatusOr<Registration> add(int fd, Handler on_readable);
  // Removes a descriptor; its handler is not called again, even for an event of the same wakeup.
  void remove(Registration registration);

  // Waits for events (`timeout_ms` < 0: without limit) and runs their handlers. An error of
  // epoll_wait other than EINTR is returned.
  absl::Status runOnce(int timeout_ms = -1);

 private:
  EventLoop() = default;
  void readSignals();

  Fd epoll_;
  Fd signal_fd_;
  Fd timer_fd_;
  SignalHandler on_signals_;
  Handler on_deadline_;
  struct Entry {
    int fd;
    Handler handler;
  };
  absl::flat_hash_map<Registration, Entry> entries_;
  Registration next_ = 2;  // 0: the signalfd, 1: the timerfd
};

}  // namespace gangway::launcher
