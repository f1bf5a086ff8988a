// The control plane over real gRPC on loopback: the store conformance suite, secrets, and the
// rendezvous services end to end.
#include "gangway/scheduler/server.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <absl/synchronization/notification.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "gangway/scheduler/client/channel.h"
#include "gangway/scheduler/client/grpc_store.h"
#include "gangway/v1/rendezvous.grpc.pb.h"

#include "store_conformance.h"

namespace gangway::scheduler {
namespace {

// The session every call of these tests carries (credentials.h).
constexpr char kTestSession[] = "0123456789abcdef0123456789abcdef";

v1::JoinRequest joinRequest(const std::string& job, const std::string& agent, int min, int max) {
  v1::JoinRequest r;
  r.set_job_id(job);
  r.set_agent_id(agent);
  r.set_address("127.0.0.1");
  r.set_local_world_size(1);
  r.set_min_nodes(min);
  r.set_max_nodes(max);
  return r;
}

std::unique_ptr<ControlPlaneServer> startServer() {
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  auto server = ControlPlaneServer::start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

std::shared_ptr<grpc::Channel> channelTo(const ControlPlaneServer& server) {
  return *makeChannel({.address = server.address(), .tls_ca_file = ""});
}

// A server with one job (created by a Join carrying the job's secret); clients present it.
class GrpcBackend final : public testing::StoreBackend {
 public:
  GrpcBackend() : server_(startServer()), channel_(channelTo(*server_)) {
    auto stub = v1::Rendezvous::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.AddMetadata(kSessionMetadata, kTestSession);
    ctx.AddMetadata(kTokenMetadata, "secret");
    v1::JoinResponse resp;
    EXPECT_TRUE(stub->Join(&ctx, joinRequest("job", "creator", 1, 8), &resp).ok());
  }
  std::unique_ptr<Store> client() override { return makeGrpcStore(channel_, "job", "secret"); }

 private:
  std::unique_ptr<ControlPlaneServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

using testing::StoreConformanceTest;
INSTANTIATE_TEST_SUITE_P(Grpc, StoreConformanceTest,
                         ::testing::Values(testing::StoreFactory{
                             "grpc", [] { return std::make_unique<GrpcBackend>(); }}),
                         [](const auto& p) { return p.param.name; });

TEST(ServerTest, WrongTokenIsRefusedAndChangesNothing) {
  auto server = startServer();
  auto channel = channelTo(*server);
  auto stub = v1::Rendezvous::NewStub(channel);
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kSessionMetadata, kTestSession);
    ctx.AddMetadata(kTokenMetadata, "right");
    v1::JoinResponse resp;
    ASSERT_TRUE(stub->Join(&ctx, joinRequest("job", "a1", 2, 2), &resp).ok());
  }
  auto good = makeGrpcStore(channel, "job", "right");
  ASSERT_TRUE(good->set("k", "v").ok());
  for (const std::string token : {"wrong", ""}) {
    auto bad = makeGrpcStore(channel, "job", token);
    EXPECT_EQ(bad->set("k", "overwritten").code(), absl::StatusCode::kPermissionDenied);
    EXPECT_EQ(bad->get("k", absl::Seconds(1)).status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_EQ(bad->add("n", 1).status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_EQ(bad->deleteKey("k").status().code(), absl::StatusCode::kPermissionDenied);
    grpc::ClientContext ctx;
    ctx.AddMetadata(kSessionMetadata, kTestSession);
    ctx.AddMetadata(kTokenMetadata, token);
    v1::JoinResponse resp;
    EXPECT_EQ(stub->Join(&ctx, joinRequest("job", "intruder", 2, 2), &resp).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  EXPECT_EQ(*good->get("k", absl::Seconds(1)), "v");
  EXPECT_EQ(*good->numKeys(), 1);
  EXPECT_EQ(server->rendezvous().view("job")->agents, 1);
}

TEST(ServerTest, WatchDeliversAssignmentsAndABrokenStreamRemovesTheAgent) {
  auto server = startServer();
  auto channel = channelTo(*server);
  auto stub = v1::Rendezvous::NewStub(channel);
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::RoundEvent>>> streams;
  for (const char* agent : {"a1", "a2", "a3"}) {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kSessionMetadata, kTestSession);
    v1::JoinResponse resp;
    ASSERT_TRUE(stub->Join(&ctx, joinRequest("job", agent, 2, 3), &resp).ok());
    v1::WatchRequest w;
    w.set_job_id("job");
    w.set_agent_id(agent);
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    contexts.back()->AddMetadata(kSessionMetadata, kTestSession);
    streams.push_back(stub->Watch(contexts.back().get(), w));
  }
  auto publish = [&](int64_t round, const char* agent) {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kSessionMetadata, kTestSession);
    v1::MasterPortRequest req;
    req.set_job_id("job");
    req.set_agent_id(agent);
    req.set_round(round);
    req.set_port(40000 + static_cast<int>(round));
    v1::MasterPortResponse resp;
    ASSERT_TRUE(stub->PublishMasterPort(&ctx, req, &resp).ok());
  };
  for (int i = 0; i < 3; ++i) {
    v1::RoundEvent e;
    ASSERT_TRUE(streams[i]->Read(&e));
    ASSERT_TRUE(e.has_assignment());
    EXPECT_EQ(e.assignment().round(), 1);
    EXPECT_EQ(e.assignment().node_rank(), i);
    EXPECT_EQ(e.assignment().world_size(), 3);
    EXPECT_EQ(e.assignment().choose_master_port(), i == 0);
    if (i == 0) publish(1, "a1");
    if (i > 0) EXPECT_EQ(e.assignment().master_port(), 40001);
  }
  contexts[2]->TryCancel();  // a3's connection breaks
  for (int i = 0; i < 2; ++i) {
    v1::RoundEvent stop, next;
    ASSERT_TRUE(streams[i]->Read(&stop));
    EXPECT_TRUE(stop.has_stop()) << stop.DebugString();
    ASSERT_TRUE(streams[i]->Read(&next));  // after the 1 s last call
    ASSERT_TRUE(next.has_assignment()) << next.DebugString();
    if (i == 0) publish(2, "a1");
    EXPECT_EQ(next.assignment().round(), 2);
    EXPECT_EQ(next.assignment().world_size(), 2);
  }
  // Success of both ends the job and closes the streams.
  for (const char* agent : {"a1", "a2"}) {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kSessionMetadata, kTestSession);
    v1::WorkerReport r;
    r.set_job_id("job");
    r.set_agent_id(agent);
    r.set_round(2);
    r.set_succeeded(true);
    v1::WorkerReportResponse resp;
    ASSERT_TRUE(stub->ReportWorkers(&ctx, r, &resp).ok());
  }
  for (int i = 0; i < 2; ++i) {
    v1::RoundEvent end;
    ASSERT_TRUE(streams[i]->Read(&end));
    EXPECT_TRUE(end.has_job_end() && end.job_end().succeeded()) << end.DebugString();
    EXPECT_FALSE(streams[i]->Read(&end));
    EXPECT_TRUE(streams[i]->Finish().ok());
  }
  (void)streams[2]->Finish();
}

TEST(ServerTest, ASecondServerCannotShareTheAddress) {
  auto first = startServer();
  ServerOptions options;
  options.listen = first->address();
  EXPECT_EQ(ControlPlaneServer::start(options).status().code(), absl::StatusCode::kUnavailable);
}

// Garbage on the wire (not HTTP/2, a truncated frame) is dropped; the server goes on serving.
TEST(ServerTest, MalformedBytesDoNotHurtTheServer) {
  auto server = startServer();
  for (const std::string junk :
       {std::string("GET / HTTP/1.1\r\n\r\n"),
        std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff"), std::string(4096, '\0')}) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(server->port()));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ASSERT_EQ(::write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
    ::close(fd);
  }
  // A protobuf message that does not parse as the request type.
  auto channel = channelTo(*server);
  grpc::GenericStub generic(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata(kSessionMetadata, kTestSession);
  grpc::ByteBuffer request, response;
  const std::string bad("\xff\xff\xff\xff\x0f", 5);
  grpc::Slice slice(bad);
  request = grpc::ByteBuffer(&slice, 1);
  absl::Notification done;
  grpc::Status status;
  generic.UnaryCall(&ctx, "/gangway.v1.Rendezvous/Join", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      status = s;
                      done.Notify();
                    });
  done.WaitForNotification();
  EXPECT_FALSE(status.ok());
  // Still serving.
  auto stub = v1::Rendezvous::NewStub(channel);
  grpc::ClientContext join_ctx;
  join_ctx.AddMetadata(kSessionMetadata, kTestSession);
  v1::JoinResponse resp;
  EXPECT_TRUE(stub->Join(&join_ctx, joinRequest("job", "a1", 1, 1), &resp).ok());
}

TEST(ServerTest, BadListenAddressesAreRefused) {
  for (const std::string addr : {"nonsense", "127.0.0.1:", "203.0.113.1:0"}) {
    ServerOptions options;
    options.listen = addr;
    auto server = ControlPlaneServer::start(options);
    EXPECT_FALSE(server.ok()) << addr;
  }
  ServerOptions tls;
  tls.tls_cert_file = "/nonexistent/cert.pem";
  tls.tls_key_file = "/nonexistent/key.pem";
  EXPECT_EQ(ControlPlaneServer::start(tls).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace gangway::scheduler
