#include "gangway/common/check.h"

#include <gtest/gtest.h>

namespace gangway {
namespace {

int checkedHalf(int v) {
  GW_CHECK_MSG(v % 2 == 0, "only even values are halved");
  return v / 2;
}

TEST(CheckDeathTest, PassingCheckReturnsNormally) { EXPECT_EQ(checkedHalf(8), 4); }

TEST(CheckDeathTest, FailingCheckAbortsNamingConditionPlaceAndMessage) {
  EXPECT_DEATH(checkedHalf(3),
               "gangway: fatal: .*check_test.cc:[0-9]+: check failed: v % 2 == 0: only even "
               "values are halved");
  EXPECT_DEATH(GW_CHECK(1 + 1 == 3), "check failed: 1 \\+ 1 == 3\n");
}

}  // namespace
}  // namespace gangway
