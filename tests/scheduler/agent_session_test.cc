// The agent session that `gangway run` and `gangway agent` share: joining with backoff, and the
// watch / heartbeat / join-again cycle against a real control plane over loopback.
#include "gangway/scheduler/client/agent_session.h"

#include <deque>
#include <string>
#include <vector>

#include <absl/base/thread_annotations.h>
#include <absl/synchronization/mutex.h>
#include <gtest/gtest.h>

#include "gangway/common/status.h"
#include "gangway/scheduler/client/channel.h"
#include "gangway/scheduler/server.h"
#include "gangway/v1/rendezvous.grpc.pb.h"

namespace gangway::scheduler {
namespace {

// The session every call of these tests carries (credentials.h).
constexpr char kTestSession[] = "0123456789abcdef0123456789abcdef";

constexpr absl::Duration kWait = absl::Seconds(30);  // bounds every wait; never reached when green

// Join attempts answer what the test scripted (Unavailable once the script is spent); watch and
// heartbeat are never called (the session is not started).
class ScriptedJoins final : public AgentSession::Calls {
 public:
  explicit ScriptedJoins(std::deque<absl::StatusOr<absl::Duration>> script)
      : script_(std::move(script)) {}

  absl::StatusOr<absl::Duration> join(const std::string& endpoint,
                                      const std::shared_ptr<grpc::Channel>& /*channel*/,
                                      grpc::ClientContext& /*ctx*/) override {
    absl::MutexLock lock(&mu_);
    endpoints_.push_back(endpoint);
    if (script_.empty()) return absl::UnavailableError("connection refused");
    auto next = script_.front();
    script_.pop_front();
    return next;
  }
  absl::Status watch(const std::shared_ptr<grpc::Channel>&, grpc::ClientContext&, bool*) override {
    ADD_FAILURE() << "not started";
    return absl::OkStatus();
  }
  absl::Status heartbeat(const std::shared_ptr<grpc::Channel>&, grpc::ClientContext&) override {
    ADD_FAILURE() << "not started";
    return absl::OkStatus();
  }
  void lost(const std::string& why, const absl::Status&) override { ADD_FAILURE() << why; }

  std::vector<std::string> endpoints() {
    absl::MutexLock lock(&mu_);
    return endpoints_;
  }
  bool waitForAttempts(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n] { return endpoints_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kWait);
  }

 private:
  absl::Mutex mu_;
  std::deque<absl::StatusOr<absl::Duration>> script_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> endpoints_ ABSL_GUARDED_BY(mu_);
};

AgentSessionOptions twoReplicas() {
  // Channels are made lazily and these are never dialled: the scripted calls ignore them.
  AgentSessionOptions options;
  options.endpoints = {"127.0.0.1:1", "127.0.0.1:2"};
  options.peer = "scheduler";
  return options;
}

TEST(AgentSessionTest, JoinRetriesAndTriesEachReplicaInTurn) {
  ScriptedJoins calls({absl::UnavailableError("refused"), absl::DeadlineExceededError("slow"),
                       absl::Milliseconds(250)});
  AgentSession session(twoReplicas(), calls);
  ASSERT_TRUE(session.join(kWait).ok());
  EXPECT_EQ(calls.endpoints(),
            (std::vector<std::string>{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:1"}));
  EXPECT_EQ(session.endpoint(), "127.0.0.1:1");
  EXPECT_NE(session.channel(), nullptr);
}

TEST(AgentSessionTest, JoinGivesUpAtItsTimeoutNamingEveryReplica) {
  ScriptedJoins calls({});
  AgentSession session(twoReplicas(), calls);
  const absl::Status s = session.join(absl::Milliseconds(300));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  const std::string attempts = std::to_string(calls.endpoints().size());
  EXPECT_EQ(s.message(), "cannot reach the scheduler at 127.0.0.1:1,127.0.0.1:2 within 300ms (" +
                             attempts + " attempts): connection refused");
  EXPECT_EQ(session.channel(), nullptr);
}

TEST(AgentSessionTest, ARefusalEndsTheJoinAtOnce) {
  ScriptedJoins calls({absl::PermissionDeniedError("wrong or missing token for job 'j'")});
  AgentSession session(twoReplicas(), calls);
  const absl::Status s = session.join(kWait);
  EXPECT_EQ(s, absl::PermissionDeniedError("wrong or missing token for job 'j'"));
  EXPECT_EQ(calls.endpoints().size(), 1u);
  EXPECT_EQ(session.endpoint(), "127.0.0.1:1") << "the replica that refused";
}

TEST(AgentSessionTest, CancelEndsAJoinThatIsWaitingToRetry) {
  ScriptedJoins calls({});
  AgentSession session(twoReplicas(), calls);
  absl::Status result;
  std::thread joiner([&] { result = session.join(absl::Hours(1)); });
  ASSERT_TRUE(calls.waitForAttempts(1));
  session.cancel();
  joiner.join();
  EXPECT_EQ(result.code(), absl::StatusCode::kCancelled) << result;
  EXPECT_TRUE(session.finished());
}

TEST(AgentSessionTest, AnUnreadableCaFileIsBadInput) {
  ScriptedJoins calls({});
  AgentSessionOptions options = twoReplicas();
  options.tls_ca_file = "/nonexistent/ca.pem";
  AgentSession session(options, calls);
  const absl::Status s = session.join(kWait);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("/nonexistent/ca.pem"), absl::string_view::npos) << s;
  EXPECT_TRUE(calls.endpoints().empty());
}

// --- Against a real control plane --------------------------------------------------------------

std::unique_ptr<ControlPlaneServer> startServer(const std::string& listen = "127.0.0.1:0") {
  ServerOptions options;
  options.listen = listen;
  options.rendezvous.last_call = absl::Milliseconds(10);
  options.rendezvous.heartbeat_interval = absl::Milliseconds(20);
  // The tests decide when heartbeats fail: the server never drops an agent by itself.
  options.rendezvous.heartbeat_timeout = absl::Hours(1);
  auto server = ControlPlaneServer::start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

v1::JoinRequest joinRequest(const std::string& agent) {
  v1::JoinRequest r;
  r.set_job_id("job");
  r.set_agent_id(agent);
  r.set_address("127.0.0.1");
  r.set_local_world_size(1);
  r.set_min_nodes(1);
  r.set_max_nodes(2);
  return r;
}

// The rendezvous' calls for agent "a". Heartbeats are scripted: each one waits until the test
// releases it with an answer (OK: a real heartbeat is sent).
class RendezvousCalls final : public AgentSession::Calls {
 public:
  absl::StatusOr<absl::Duration> join(const std::string& /*endpoint*/,
                                      const std::shared_ptr<grpc::Channel>& channel,
                                      grpc::ClientContext& ctx) override {
    v1::JoinResponse resp;
    GW_RETURN_IF_ERROR(
        fromGrpc(v1::Rendezvous::NewStub(channel)->Join(&ctx, joinRequest("a"), &resp)));
    absl::MutexLock lock(&mu_);
    ++joins_;
    return absl::Milliseconds(resp.heartbeat_interval_ms());
  }
  absl::Status watch(const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext& ctx,
                     bool* /*final_event*/) override {
    v1::WatchRequest req;
    req.set_job_id("job");
    req.set_agent_id("a");
    auto stub = v1::Rendezvous::NewStub(channel);
    auto reader = stub->Watch(&ctx, req);
    int stream = 0;
    {
      absl::MutexLock lock(&mu_);
      stream = ++watches_;
    }
    v1::RoundEvent event;
    while (reader->Read(&event)) {
      absl::MutexLock lock(&mu_);
      if (event.has_assignment()) rounds_.push_back({stream, event.assignment().num_nodes()});
    }
    return fromGrpc(reader->Finish());
  }
  absl::Status heartbeat(const std::shared_ptr<grpc::Channel>& channel,
                         grpc::ClientContext& ctx) override {
    absl::Status answer;
    {
      absl::MutexLock lock(&mu_);
      ++heartbeats_;
      auto released = [this] { return !answers_.empty() || quit_; };
      mu_.Await(absl::Condition(&released));
      if (quit_) return absl::CancelledError("test over");
      answer = answers_.front();
      answers_.pop_front();
    }
    if (!answer.ok()) return answer;
    v1::HeartbeatRequest req;
    req.set_job_id("job");
    req.set_agent_id("a");
    v1::HeartbeatResponse resp;
    return fromGrpc(v1::Rendezvous::NewStub(channel)->Heartbeat(&ctx, req, &resp));
  }
  void lost(const std::string& why, const absl::Status& rejoin) override {
    absl::MutexLock lock(&mu_);
    lost_.push_back(why + (rejoin.ok() ? "" : " / " + std::string(rejoin.message())));
  }

  void answerHeartbeat(absl::Status s) {
    absl::MutexLock lock(&mu_);
    answers_.push_back(std::move(s));
  }
  void quit() {
    absl::MutexLock lock(&mu_);
    quit_ = true;
  }
  // Waits until `pred` holds on the counters.
  bool waitFor(const std::function<bool()>& pred) {
    absl::MutexLock lock(&mu_);
    auto holds = [&pred] { return pred(); };
    return mu_.AwaitWithTimeout(absl::Condition(&holds), kWait);
  }

  absl::Mutex mu_;
  int joins_ ABSL_GUARDED_BY(mu_) = 0;
  int watches_ ABSL_GUARDED_BY(mu_) = 0;
  int heartbeats_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::pair<int, int>> rounds_ ABSL_GUARDED_BY(mu_);  // (stream, nodes)
  std::vector<std::string> lost_ ABSL_GUARDED_BY(mu_);

 private:
  std::deque<absl::Status> answers_ ABSL_GUARDED_BY(mu_);
  bool quit_ ABSL_GUARDED_BY(mu_) = false;
};

class AgentSessionServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = startServer();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    calls_.quit();  // releases a heartbeat the test holds, so that the session can stop
    session_.reset();
  }
  AgentSession& session(bool rejoin) {
    session_ = std::make_unique<AgentSession>(options(rejoin), calls_);
    return *session_;
  }
  AgentSessionOptions options(bool rejoin) const {
    AgentSessionOptions o;
    o.endpoints = {server_->address()};
    o.peer = "rendezvous";
    o.joined = "job job";
    o.rejoin = rejoin;
    o.rejoin_timeout = kWait;
    return o;
  }
  // A second agent joins: the job forms a new round of two nodes.
  void secondAgentJoins() {
    auto channel = makeChannel({.address = server_->address(), .tls_ca_file = ""});
    ASSERT_TRUE(channel.ok());
    grpc::ClientContext ctx;
    ctx.AddMetadata(kSessionMetadata, kTestSession);
    v1::JoinResponse resp;
    ASSERT_TRUE(v1::Rendezvous::NewStub(*channel)->Join(&ctx, joinRequest("b"), &resp).ok());
  }

  RendezvousCalls calls_;
  std::unique_ptr<ControlPlaneServer> server_;
  std::unique_ptr<AgentSession> session_;
};

TEST_F(AgentSessionServerTest, WatchDeliversTheRoundsAndHeartbeatsGoOut) {
  AgentSession& session = this->session(false);
  ASSERT_TRUE(session.join(kWait).ok());
  session.start();
  ASSERT_TRUE(calls_.waitFor([&] { return !calls_.rounds_.empty(); }));
  calls_.answerHeartbeat(absl::OkStatus());
  ASSERT_TRUE(calls_.waitFor([&] { return calls_.heartbeats_ >= 2; }));
  absl::MutexLock lock(&calls_.mu_);
  EXPECT_EQ(calls_.rounds_.front(), (std::pair<int, int>{1, 1}));
  EXPECT_TRUE(calls_.lost_.empty());
}

TEST_F(AgentSessionServerTest, WithoutRejoinTheEndOfTheStreamLosesTheSession) {
  AgentSession& session = this->session(false);
  ASSERT_TRUE(session.join(kWait).ok());
  session.start();
  ASSERT_TRUE(calls_.waitFor([&] { return calls_.watches_ == 1; }));
  const std::string address = server_->address();
  server_.reset();
  ASSERT_TRUE(calls_.waitFor([&] { return !calls_.lost_.empty(); }));
  absl::MutexLock lock(&calls_.mu_);
  EXPECT_EQ(calls_.lost_.front().rfind("the rendezvous stream from " + address + " ended: ", 0), 0u)
      << calls_.lost_.front();
  EXPECT_EQ(calls_.joins_, 1);
}

TEST_F(AgentSessionServerTest, WithRejoinAControlPlaneThatRestartsIsJoinedAgain) {
  AgentSession& session = this->session(true);
  ASSERT_TRUE(session.join(kWait).ok());
  session.start();
  ASSERT_TRUE(calls_.waitFor([&] { return !calls_.rounds_.empty(); }));
  const std::string address = server_->address();
  server_.reset();
  server_ = startServer(address);
  ASSERT_NE(server_, nullptr);
  // Joined again, watching again, and the new control plane's round arrives on the new stream.
  ASSERT_TRUE(calls_.waitFor([&] {
    return calls_.joins_ == 2 && !calls_.rounds_.empty() && calls_.rounds_.back().first == 2;
  }));
  absl::MutexLock lock(&calls_.mu_);
  EXPECT_TRUE(calls_.lost_.empty());
}

TEST_F(AgentSessionServerTest, WithoutRejoinAHeartbeatNotFoundLosesTheSession) {
  AgentSession& session = this->session(false);
  ASSERT_TRUE(session.join(kWait).ok());
  session.start();
  calls_.answerHeartbeat(absl::NotFoundError("no agent 'a' in job 'job'"));
  ASSERT_TRUE(calls_.waitFor([&] { return !calls_.lost_.empty(); }));
  absl::MutexLock lock(&calls_.mu_);
  EXPECT_EQ(calls_.lost_.front(), "the rendezvous dropped this agent: no agent 'a' in job 'job'");
}

TEST_F(AgentSessionServerTest, WithRejoinAHeartbeatNotFoundJoinsAgain) {
  AgentSession& session = this->session(true);
  ASSERT_TRUE(session.join(kWait).ok());
  session.start();
  ASSERT_TRUE(calls_.waitFor([&] { return calls_.watches_ == 1; }));
  calls_.answerHeartbeat(absl::NotFoundError("no agent 'a'"));
  // The server removes the agent when the cancelled stream ends, which may come after the
  // session's next Join: then that Join was a no-op, its Watch finds no agent, and the session
  // joins once more. Either way it goes on without being lost.
  ASSERT_TRUE(calls_.waitFor([&] { return calls_.joins_ >= 2 && calls_.watches_ >= 2; }));
  absl::MutexLock lock(&calls_.mu_);
  EXPECT_TRUE(calls_.lost_.empty());
}

TEST_F(AgentSessionServerTest, ALateNotFoundLeavesTheStreamOpenedAfterJoiningAgain) {
  AgentSession& session = this->session(true);
  ASSERT_TRUE(session.join(kWait).ok());
  session.start();
  // Heartbeat 1 is in flight (held by the test) under stream 1 when the control plane restarts.
  ASSERT_TRUE(calls_.waitFor([&] { return calls_.watches_ == 1 && calls_.heartbeats_ == 1; }));
  const std::string address = server_->address();
  server_.reset();
  server_ = startServer(address);
  ASSERT_NE(server_, nullptr);
  ASSERT_TRUE(calls_.waitFor([&] { return calls_.joins_ == 2 && calls_.watches_ == 2; }));
  // Its late NOT_FOUND belongs to stream 1: stream 2 must stay open.
  calls_.answerHeartbeat(absl::NotFoundError("no agent 'a'"));
  ASSERT_TRUE(calls_.waitFor([&] { return calls_.heartbeats_ == 2; }));
  // A cancel would have been issued before heartbeat 2 started; stream 2 still gets events.
  secondAgentJoins();
  ASSERT_TRUE(
      calls_.waitFor([&] { return !calls_.rounds_.empty() && calls_.rounds_.back().second == 2; }));
  absl::MutexLock lock(&calls_.mu_);
  EXPECT_EQ(calls_.rounds_.back().first, 2) << "the round of two arrived on stream 2";
  EXPECT_EQ(calls_.joins_, 2);
  EXPECT_TRUE(calls_.lost_.empty());
}

}  // namespace
}  // namespace gangway::scheduler
