#include "gangway/common/log.h"

#include <gtest/gtest.h>

namespace gangway {
namespace {

TEST(LogTest, LoggerIsNamedByComponentAndShared) {
  Logger& a = logger("launcher");
  Logger& b = logger("launcher");
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(a.name(), "launcher");
  EXPECT_NE(&logger("scheduler"), &a);
}

TEST(LogTest, LevelAppliesToPresentAndFutureLoggers) {
  Logger& a = logger("comm");
  ASSERT_TRUE(setLogLevel("warn"));
  EXPECT_FALSE(a.should_log(spdlog::level::info));
  EXPECT_TRUE(a.should_log(spdlog::level::warn));
  EXPECT_FALSE(logger("kv").should_log(spdlog::level::info));
  EXPECT_FALSE(setLogLevel("loud"));
  ASSERT_TRUE(setLogLevel("info"));
  EXPECT_TRUE(a.should_log(spdlog::level::info));
}

}  // namespace
}  // namespace gangway
