#include "event_loop.h"

#include <csignal>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace gangway::launcher {
namespace {

struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
  }
  void put(char c) const { EXPECT_EQ(::write(write_end.get(), &c, 1), 1); }
  void drain() const {
    char buf[64];
    while (::read(read_end.get(), buf, sizeof(buf)) > 0) {
    }
  }
  Fd read_end;
  Fd write_end;
};

TEST(EventLoopTest, ReadableDescriptorsRunTheirHandlers) {
  auto loop = EventLoop::create({SIGUSR1});
  ASSERT_TRUE(loop.ok()) << loop.status();
  Pipe a;
  Pipe b;
  int a_calls = 0;
  int b_calls = 0;
  ASSERT_TRUE((*loop)->add(a.read_end.get(), [&] { ++a_calls, a.drain(); }).ok());
  ASSERT_TRUE((*loop)->add(b.read_end.get(), [&] { ++b_calls, b.drain(); }).ok());
  b.put('x');
  ASSERT_TRUE((*loop)->runOnce().ok());
  EXPECT_EQ(a_calls, 0);
  EXPECT_EQ(b_calls, 1);
  a.put('y');
  b.put('z');
  ASSERT_TRUE((*loop)->runOnce().ok());
  EXPECT_EQ(a_calls, 1);
  EXPECT_EQ(b_calls, 2);
}

TEST(EventLoopTest, RemovedDescriptorIsNotCalledEvenInTheSameWakeup) {
  auto loop = EventLoop::create({SIGUSR1});
  ASSERT_TRUE(loop.ok()) << loop.status();
  Pipe a;
  Pipe b;
  int calls = 0;
  EventLoop::Registration ra = 0;
  EventLoop::Registration rb = 0;
  // Whichever runs first removes the other: exactly one handler runs.
  auto ra_or = (*loop)->add(a.read_end.get(), [&] { ++calls, (*loop)->remove(rb); });
  auto rb_or = (*loop)->add(b.read_end.get(), [&] { ++calls, (*loop)->remove(ra); });
  ASSERT_TRUE(ra_or.ok() && rb_or.ok());
  ra = *ra_or;
  rb = *rb_or;
  a.put('x');
  b.put('y');
  ASSERT_TRUE((*loop)->runOnce().ok());
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE((*loop)->runOnce(/*timeout_ms=*/0).ok());  // the survivor is still readable
  EXPECT_EQ(calls, 2);
}

TEST(EventLoopTest, SignalsArriveThroughTheLoopInOneBatch) {
  auto loop = EventLoop::create({SIGUSR1, SIGUSR2});
  ASSERT_TRUE(loop.ok()) << loop.status();
  std::vector<int> seen;
  (*loop)->onSignals([&](const std::vector<int>& signals) {
    seen.insert(seen.end(), signals.begin(), signals.end());
  });
  ASSERT_EQ(::raise(SIGUSR2), 0);  // blocked: pending, not delivered
  ASSERT_EQ(::raise(SIGUSR1), 0);
  ASSERT_TRUE((*loop)->runOnce().ok());
  EXPECT_EQ(seen, (std::vector<int>{SIGUSR1, SIGUSR2}));  // lowest number first
}

TEST(EventLoopTest, DeadlineFiresOnceAndDisarmCancelsIt) {
  auto loop = EventLoop::create({SIGUSR1});
  ASSERT_TRUE(loop.ok()) << loop.status();
  int fired = 0;
  (*loop)->onDeadline([&] { ++fired; });
  (*loop)->armDeadline(0.001);
  while (fired == 0) ASSERT_TRUE((*loop)->runOnce().ok());
  EXPECT_EQ(fired, 1);
  // A deadline disarmed before the loop looks at it never fires, even if it has expired.
  (*loop)->armDeadline(1e-6);
  Pipe p;
  ASSERT_TRUE((*loop)->add(p.read_end.get(), [&] { p.drain(); }).ok());
  p.put('x');
  (*loop)->disarmDeadline();
  ASSERT_TRUE((*loop)->runOnce(/*timeout_ms=*/0).ok());
  EXPECT_EQ(fired, 1);
}

}  // namespace
}  // namespace gangway::launcher
