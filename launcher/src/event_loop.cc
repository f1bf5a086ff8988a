#include "event_loop.h"

#include <cerrno>
#include <cmath>

#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "gangway/common/status.h"

namespace gangway::launcher {
namespace {

constexpr EventLoop::Registration kSignalTag = 0;
constexpr EventLoop::Registration kTimerTag = 1;
constexpr int kMaxEvents = 32;

}  // namespace

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::create(const std::vector<int>& signals) {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : signals) sigaddset(&mask, sig);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return GW_ERRNO("sigprocmask");
  loop->signal_fd_.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!loop->signal_fd_.valid()) return GW_ERRNO("signalfd");
  loop->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!loop->epoll_.valid()) return GW_ERRNO("epoll_create1");
  loop->timer_fd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!loop->timer_fd_.valid()) return GW_ERRNO("timerfd_create");
  for (auto [fd, tag] : {std::pair{loop->signal_fd_.get(), kSignalTag},
                         std::pair{loop->timer_fd_.get(), kTimerTag}}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    if (::epoll_ctl(loop->epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return GW_ERRNO("epoll_ctl");
  }
  return loop;
}

void EventLoop::armDeadline(double seconds) {
  itimerspec spec{};
  const double s = std::max(seconds, 1e-6);
  spec.it_value.tv_sec = static_cast<time_t>(s);
  spec.it_value.tv_nsec = static_cast<long>((s - std::floor(s)) * 1e9);
  ::timerfd_settime(timer_fd_.get(), 0, &spec, nullptr);
}

void EventLoop::disarmDeadline() {
  itimerspec spec{};
  ::timerfd_settime(timer_fd_.get(), 0, &spec, nullptr);
  uint64_t expirations = 0;
  (void)!::read(timer_fd_.get(), &expirations, sizeof(expirations));
}

absl::StatusOr<EventLoop::Registration> EventLoop::add(int fd, Handler on_readable) {
  const Registration id = next_++;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return GW_ERRNO("epoll_ctl");
  entries_.emplace(id, Entry{fd, std::move(on_readable)});
  return id;
}

void EventLoop::remove(Registration registration) {
  auto it = entries_.find(registration);
  if (it == entries_.end()) return;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
  entries_.erase(it);
}

void EventLoop::readSignals() {
  std::vector<int> signals;
  signalfd_siginfo si{};
  while (::read(signal_fd_.get(), &si, sizeof(si)) == sizeof(si)) {
    signals.push_back(static_cast<int>(si.ssi_signo));
  }
  if (!signals.empty() && on_signals_) on_signals_(signals);
}

absl::Status EventLoop::runOnce(int timeout_ms) {
  epoll_event events[kMaxEvents];
  const int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, timeout_ms);
  if (n < 0) return errno == EINTR ? absl::OkStatus() : GW_ERRNO("epoll_wait");
  for (int i = 0; i < n; ++i) {
    const Registration tag = events[i].data.u64;
    if (tag == kSignalTag) {
      readSignals();
    } else if (tag == kTimerTag) {
      uint64_t expirations = 0;
      if (::read(timer_fd_.get(), &expirations, sizeof(expirations)) > 0 && on_deadline_) {
        on_deadline_();
      }
    } else if (auto it = entries_.find(tag); it != entries_.end()) {
      // A copy: the handler may remove its own registration.
      const Handler handler = it->second.handler;
      handler();
    }
  }
  return absl::OkStatus();
}

}  // namespace gangway::launcher
