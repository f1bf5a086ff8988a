#include "rendezvous_place.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "gangway/common/fd.h"

namespace gangway::launcher {
namespace {

// A TCP port on loopback that this test holds (listening), so nobody else can serve it.
struct HeldPort {
  HeldPort() {
    fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd.get(), 1), 0);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port = ntohs(addr.sin_port);
  }
  Fd fd;
  int port = 0;
};

// A port on loopback reserved for the test: bound (so that no other socket gets it from port 0)
// but not listening, with SO_REUSEADDR, so that a server that also sets it may still serve it.
struct ReservedPort {
  ReservedPort() {
    fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const int one = 1;
    EXPECT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port = ntohs(addr.sin_port);
  }
  Fd fd;
  int port = 0;
};

RunOptions endpointOptions(int port) {
  RunOptions o;
  o.rdzv_mode = RdzvMode::kEndpoint;
  o.run_id = "place-test";
  o.rdzv_address = {.host = "127.0.0.1", .port = port};
  return o;
}

TEST(RendezvousPlaceTest, StandaloneServesOnLoopbackAtAFreePort) {
  RunOptions o;
  o.rdzv_mode = RdzvMode::kStandalone;
  auto place = placeRendezvous(o);
  ASSERT_TRUE(place.ok()) << place.status();
  ASSERT_NE(place->hosted, nullptr);
  EXPECT_EQ(place->endpoint, place->hosted->address());
  EXPECT_EQ(place->endpoint.rfind("127.0.0.1:", 0), 0u) << place->endpoint;
  EXPECT_NE(place->endpoint, "127.0.0.1:0");
  EXPECT_EQ(place->address, "127.0.0.1");
  EXPECT_EQ(place->socket_ifname, "");
  // A secret of its own, so that not even a local user can join: every job draws another.
  EXPECT_GE(place->token.size(), 32u);
  auto other = placeRendezvous(o);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_NE(other->token, place->token);
}

TEST(RendezvousPlaceTest, AnOwnAddressWithAFreePortIsHostedHere) {
  ReservedPort reserved;
  const int port = reserved.port;
  auto place = placeRendezvous(endpointOptions(port));
  ASSERT_TRUE(place.ok()) << place.status();
  ASSERT_NE(place->hosted, nullptr);
  EXPECT_EQ(place->endpoint, "127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(place->hosted->address(), place->endpoint);
  EXPECT_EQ(place->address, "127.0.0.1");  // the address that routes to the endpoint
}

TEST(RendezvousPlaceTest, ATakenPortIsSomeoneElsesControlPlane) {
  HeldPort taken;
  auto place = placeRendezvous(endpointOptions(taken.port));
  ASSERT_TRUE(place.ok()) << place.status();
  EXPECT_EQ(place->hosted, nullptr);
  EXPECT_EQ(place->endpoint, "127.0.0.1:" + std::to_string(taken.port));
}

TEST(RendezvousPlaceTest, IsHostDecidesWhateverThePort) {
  ReservedPort reserved;
  RunOptions never = endpointOptions(reserved.port);
  never.is_host = false;
  auto place = placeRendezvous(never);
  ASSERT_TRUE(place.ok()) << place.status();
  EXPECT_EQ(place->hosted, nullptr);

  HeldPort taken;
  RunOptions must = endpointOptions(taken.port);
  must.is_host = true;
  auto refused = placeRendezvous(must);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_NE(refused.status().message().find(
                "cannot listen on '127.0.0.1:" + std::to_string(taken.port) + "'"),
            absl::string_view::npos)
      << refused.status();
}

TEST(RendezvousPlaceTest, LocalAddrIsAdvertisedAsGiven) {
  HeldPort taken;
  RunOptions o = endpointOptions(taken.port);
  o.local_addr = "127.0.0.1";
  auto place = placeRendezvous(o);
  ASSERT_TRUE(place.ok()) << place.status();
  EXPECT_EQ(place->address, "127.0.0.1");
}

TEST(RendezvousPlaceTest, HostingOffLoopbackNeedsASecretOrInsecure) {
  RunOptions o = endpointOptions(1);
  o.rdzv_address = {.host = "0.0.0.0", .port = 1};
  o.local_addr = "127.0.0.1";
  o.is_host = true;
  auto refused = placeRendezvous(o);  // refused before anything listens
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  for (const char* want :
       {"not a loopback address", "token_file=", "join_token_file=", "insecure=true"}) {
    EXPECT_NE(refused.status().message().find(want), absl::string_view::npos) << want;
  }
}

}  // namespace
}  // namespace gangway::launcher
