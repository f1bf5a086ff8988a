#include "gangway/common/hostname.h"

#include <sys/utsname.h>

#include <gtest/gtest.h>

namespace gangway {
namespace {

TEST(HostnameTest, IsTheKernelsNodeName) {
  utsname u{};
  ASSERT_EQ(::uname(&u), 0);
  EXPECT_EQ(hostName(), u.nodename);
}

}  // namespace
}  // namespace gangway
