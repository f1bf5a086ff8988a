#include "gangway/common/host_port.h"

#include <string>

#include <gtest/gtest.h>

namespace gangway {
namespace {

TEST(HostPortTest, ParsesNamesAddressesAndBracketedIpv6) {
  auto hp = parseHostPort("node-1:29500", "endpoint", kDefaultControlPlanePort);
  ASSERT_TRUE(hp.ok()) << hp.status();
  EXPECT_EQ(hp->host, "node-1");
  EXPECT_EQ(hp->port, 29500);
  hp = parseHostPort("[fd00::7]:80", "endpoint", -1);
  ASSERT_TRUE(hp.ok()) << hp.status();
  EXPECT_EQ(hp->host, "fd00::7");
  EXPECT_EQ(hp->port, 80);
}

TEST(HostPortTest, MissingPortTakesTheDefault) {
  for (const char* text : {"sched", "sched:", "[::1]", "fd00::7"}) {
    auto hp = parseHostPort(text, "endpoint", kDefaultControlPlanePort);
    ASSERT_TRUE(hp.ok()) << text << ": " << hp.status();
    EXPECT_EQ(hp->port, 29400) << text;
  }
  EXPECT_EQ(parseHostPort("fd00::7", "endpoint", 1)->host, "fd00::7");  // a bare IPv6 address
}

TEST(HostPortTest, EmptyHostIsLeftToTheCaller) {
  auto hp = parseHostPort(":9400", "--metrics-listen", -1);
  ASSERT_TRUE(hp.ok()) << hp.status();
  EXPECT_EQ(hp->host, "");
  EXPECT_EQ(hp->port, 9400);
}

TEST(HostPortTest, ErrorsNameTheInputAndWhatWasExpected) {
  struct Case {
    const char* text;
    int default_port;
    const char* message;
  };
  for (const Case& c : {
           Case{"[::1", 1, "endpoint '[::1': unclosed '['"},
           Case{"[::1]x", 1, "endpoint '[::1]x': expected [ADDRESS]:PORT"},
           Case{"h:70000", 1, "endpoint 'h:70000': expected HOST:PORT with a port 0 to 65535"},
           Case{"h:-1", 1, "endpoint 'h:-1': expected HOST:PORT with a port 0 to 65535"},
           Case{"h:x", 1, "endpoint 'h:x': expected HOST:PORT with a port 0 to 65535"},
           Case{"h", -1, "endpoint 'h': expected HOST:PORT"},
           Case{"::1", -1, "endpoint '::1': expected HOST:PORT"},
       }) {
    auto hp = parseHostPort(c.text, "endpoint", c.default_port);
    ASSERT_FALSE(hp.ok()) << c.text;
    EXPECT_EQ(hp.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(hp.status().message(), c.message);
  }
}

TEST(HostPortTest, FormatBracketsIpv6AndRoundTrips) {
  EXPECT_EQ(formatHostPort("10.0.0.7", 29500), "10.0.0.7:29500");
  EXPECT_EQ(formatHostPort("fd00::7", 0), "[fd00::7]:0");
  for (const char* text : {"10.0.0.7:1", "[fd00::7]:29400", "name:65535"}) {
    auto hp = parseHostPort(text, "endpoint", -1);
    ASSERT_TRUE(hp.ok()) << hp.status();
    EXPECT_EQ(formatHostPort(*hp), text);
  }
}

TEST(HostPortTest, HostsAreAddressLiteralsOrHostNames) {
  for (const char* ok : {"127.0.0.1", "::1", "fe80::1", "10.0.0.7", "node-7", "node7.rack3.example",
                         "a", "0.pool"}) {
    EXPECT_TRUE(isHostOrAddress(ok)) << ok;
  }
  for (const char* bad : {"", ".", "a..b", "-a", "a-", "a.-b", "[::1]", "a b", "a/b",
                          "a:b:c:", "host\n", "x_y", "1.2.3.4:5"}) {
    EXPECT_FALSE(isHostOrAddress(bad)) << bad;
  }
  EXPECT_FALSE(isHostOrAddress(std::string(64, 'a')));
  EXPECT_TRUE(isHostOrAddress(std::string(63, 'a')));
  EXPECT_FALSE(isHostOrAddress(std::string(254, 'a')));
}

}  // namespace
}  // namespace gangway
