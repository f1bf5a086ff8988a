// Control-plane trust against a foreign client: a real `gangway scheduler` process on loopback,
// with a join token and an admin token, running a real two-agent job whose workers hold until
// the test releases them. The attacker speaks through stubs generated from the .proto files and
// plain gRPC channels (not gangway's client library), with each credential an outsider, a
// worker or another agent could hold. Every case asserts the refusal code; at the end the job's
// store is unchanged and the job finishes in the round it started in, its workers never
// restarted.
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <absl/strings/str_cat.h>
#include <absl/strings/strip.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "gangway/v1/cluster.grpc.pb.h"
#include "gangway/v1/rendezvous.grpc.pb.h"
#include "gangway/v1/store.grpc.pb.h"

#include "agent_harness.h"

namespace gangway::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kNpos = std::string::npos;

// The wire names of the credentials, as a foreign client writes them (credentials.h).
constexpr char kTokenMetadata[] = "x-gangway-token";
constexpr char kJoinTokenMetadata[] = "x-gangway-join-token";
constexpr char kSessionMetadata[] = "x-gangway-session";
constexpr char kAttackerSession[] = "a77ac4e7a77ac4e7a77ac4e7a77ac4e7";
constexpr char kOtherSession[] = "0e7e70e70e7e70e70e7e70e70e7e70e7";

constexpr char kJob[] = "realjob";

// What a call carries; empty fields are left out.
struct Creds {
  std::string token;
  std::string join_token;
  std::string session = kAttackerSession;
};

void prepare(grpc::ClientContext& ctx, const Creds& c) {
  if (!c.token.empty()) ctx.AddMetadata(kTokenMetadata, c.token);
  if (!c.join_token.empty()) ctx.AddMetadata(kJoinTokenMetadata, c.join_token);
  if (!c.session.empty()) ctx.AddMetadata(kSessionMetadata, c.session);
  ctx.set_deadline(std::chrono::system_clock::now() + 30s);
}

v1::JoinRequest joinRequest(const std::string& job, const std::string& agent, int nodes = 2) {
  v1::JoinRequest r;
  r.set_job_id(job);
  r.set_agent_id(agent);
  r.set_address("127.0.0.1");
  r.set_local_world_size(1);
  r.set_min_nodes(nodes);
  r.set_max_nodes(nodes);
  r.set_max_restarts(3);  // gangway run's default
  return r;
}

// The scheduler under attack: cluster mode (a data directory), an admin token and a join token,
// on a free loopback port.
class Scheduler {
 public:
  explicit Scheduler(const TempDir& dir) {
    admin_token_ = "admin-" + std::string(32, 'a');
    join_token_ = "join-" + std::string(32, 'j');
    writeFile(dir.file("admin.tok"), admin_token_ + "\n", 0600);
    writeFile(dir.file("join.tok"), join_token_ + "\n", 0600);
    proc_ = AgentProcess::start(
        {"scheduler", "--listen", "127.0.0.1:0", "--heartbeat-timeout", "600",
         "--last-call-timeout", "0.001", "--data-dir", dir.file("state"), "--admin-token-file",
         dir.file("admin.tok"), "--join-token-file", dir.file("join.tok")},
        {{"GANGWAY_LOG_LEVEL", "warning"}});
    const bool up =
        proc_->waitForStdout([](const std::string& out) { return out.find('\n') != kNpos; });
    EXPECT_TRUE(up) << proc_->err();
    const std::string line = proc_->out().substr(0, proc_->out().find('\n'));
    address_ = line.substr(line.rfind(' ') + 1);
    channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    rdzv_ = v1::Rendezvous::NewStub(channel_);
    store_ = v1::Store::NewStub(channel_);
    cluster_ = v1::Cluster::NewStub(channel_);
  }
  ~Scheduler() {
    proc_->signal(SIGTERM);
    const AgentResult r = proc_->wait();
    EXPECT_EQ(r.exit_code, 0) << r.err.substr(0, 4000);
  }
  const std::string& address() const { return address_; }
  const std::string& adminToken() const { return admin_token_; }
  const std::string& joinToken() const { return join_token_; }
  v1::Rendezvous::Stub& rdzv() { return *rdzv_; }
  v1::Store::Stub& store() { return *store_; }
  v1::Cluster::Stub& cluster() { return *cluster_; }

  grpc::StatusCode join(const v1::JoinRequest& req, const Creds& c) {
    grpc::ClientContext ctx;
    prepare(ctx, c);
    v1::JoinResponse resp;
    return rdzv_->Join(&ctx, req, &resp).error_code();
  }
  grpc::StatusCode heartbeat(const std::string& agent, const Creds& c) {
    grpc::ClientContext ctx;
    prepare(ctx, c);
    v1::HeartbeatRequest req;
    req.set_job_id(kJob);
    req.set_agent_id(agent);
    v1::HeartbeatResponse resp;
    return rdzv_->Heartbeat(&ctx, req, &resp).error_code();
  }
  grpc::StatusCode leave(const std::string& agent, const Creds& c) {
    grpc::ClientContext ctx;
    prepare(ctx, c);
    v1::LeaveRequest req;
    req.set_job_id(kJob);
    req.set_agent_id(agent);
    req.set_reason("spoofed");
    v1::LeaveResponse resp;
    return rdzv_->Leave(&ctx, req, &resp).error_code();
  }
  grpc::StatusCode report(const std::string& agent, bool succeeded, const Creds& c) {
    grpc::ClientContext ctx;
    prepare(ctx, c);
    v1::WorkerReport req;
    req.set_job_id(kJob);
    req.set_agent_id(agent);
    req.set_round(1);
    req.set_succeeded(succeeded);
    if (!succeeded) req.set_failure("spoofed failure");
    v1::WorkerReportResponse resp;
    return rdzv_->ReportWorkers(&ctx, req, &resp).error_code();
  }
  grpc::StatusCode publish(const std::string& agent, const Creds& c) {
    grpc::ClientContext ctx;
    prepare(ctx, c);
    v1::MasterPortRequest req;
    req.set_job_id(kJob);
    req.set_agent_id(agent);
    req.set_round(1);
    req.set_port(1);
    v1::MasterPortResponse resp;
    return rdzv_->PublishMasterPort(&ctx, req, &resp).error_code();
  }
  // A Watch stream for `agent`: the code it ends with (a refused one ends at once).
  grpc::StatusCode watch(const std::string& agent, const Creds& c) {
    grpc::ClientContext ctx;
    prepare(ctx, c);
    v1::WatchRequest req;
    req.set_job_id(kJob);
    req.set_agent_id(agent);
    auto reader = rdzv_->Watch(&ctx, req);
    v1::RoundEvent event;
    if (reader->Read(&event)) {
      ctx.TryCancel();  // an accepted stream: the attacker got the agent's assignment
      while (reader->Read(&event)) {
      }
      reader->Finish().IgnoreError();
      return grpc::StatusCode::OK;
    }
    return reader->Finish().error_code();
  }
  grpc::StatusCode set(const std::string& job, const std::string& key, const std::string& value,
                       const Creds& c) {
    grpc::ClientContext ctx;
    prepare(ctx, c);
    v1::SetRequest req;
    req.set_job_id(job);
    req.set_key(key);
    req.set_value(value);
    v1::SetResponse resp;
    return store_->Set(&ctx, req, &resp).error_code();
  }
  grpc::Status get(const std::string& key, const Creds& c, std::string* value) {
    grpc::ClientContext ctx;
    prepare(ctx, c);
    v1::GetRequest req;
    req.set_job_id(kJob);
    req.set_key(key);
    v1::GetResponse resp;
    grpc::Status s = store_->Get(&ctx, req, &resp);
    *value = resp.value();
    return s;
  }

 private:
  std::string admin_token_;
  std::string join_token_;
  std::unique_ptr<AgentProcess> proc_;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Rendezvous::Stub> rdzv_;
  std::unique_ptr<v1::Store::Stub> store_;
  std::unique_ptr<v1::Cluster::Stub> cluster_;
};

// One agent of the real job: `gangway run` with the cluster's join token; its worker writes its
// store token (GANGWAY_STORE_TOKEN, all a worker holds) to a file, says "started" and holds until
// it reads a line from the fifo.
std::unique_ptr<AgentProcess> startAgent(const Scheduler& sched, const TempDir& dir,
                                         const std::string& agent_id) {
  const std::string script = absl::StrCat(
      "printf %s \"$GANGWAY_STORE_TOKEN\" >", dir.file("store.tok"), ".$RANK; echo started; ",
      "read -r line <>", dir.file("release"), "; echo released");
  return AgentProcess::start(
      {"run", "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "gangway",
       "--rdzv-endpoint", sched.address(), "--rdzv-id", kJob, "--rdzv-conf",
       absl::StrCat("join_token_file=", dir.file("join.tok"), ",agent_id=", agent_id),
       "--no-python", "/bin/bash", "-c", script});
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != kNpos; at = text.find(what, at + what.size())) ++n;
  return n;
}

TEST(TrustAttackTest, EveryForeignCallIsRefusedAndTheRealJobRunsOn) {
  TempDir dir;
  Scheduler sched(dir);
  ASSERT_EQ(::mkfifo(dir.file("release").c_str(), 0600), 0);
  // The test holds the fifo open for as long as the workers may read it, so that the lines it
  // writes wait there whatever the order in which the workers open it.
  const int release = ::open(dir.file("release").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(release, 0);

  // An outsider cannot create a job, even one no agent uses yet, and keeps nothing there.
  const Creds outsider;
  EXPECT_EQ(sched.join(joinRequest("squat", "evil"), outsider),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(sched.join(joinRequest("squat", "evil"), {.join_token = "not-the-join-token"}),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(sched.set("squat", "k", "v", {.token = sched.joinToken()}),
            grpc::StatusCode::NOT_FOUND);

  auto a = startAgent(sched, dir, "real-a");
  auto b = startAgent(sched, dir, "real-b");
  for (auto* agent : {a.get(), b.get()}) {
    ASSERT_TRUE(agent->waitForStdout(
        [](const std::string& out) { return out.find("started") != kNpos; }, 120s))
        << agent->err();
  }
  // Both agents have their assignment, so both Watch streams are open.
  const std::string store_token = readFile(dir.file("store.tok.0"));
  ASSERT_EQ(store_token.size(), 64u) << store_token;
  EXPECT_EQ(readFile(dir.file("store.tok.1")), store_token);
  const Creds worker{.token = store_token};
  ASSERT_EQ(sched.set(kJob, "canary", "before", worker), grpc::StatusCode::OK);

  // The first Join no longer owns a job: an outsider, a wrong token or a worker's store token
  // cannot join the real job, and one with other settings is refused without changing it.
  EXPECT_EQ(sched.join(joinRequest(kJob, "evil"), outsider), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(sched.join(joinRequest(kJob, "evil"), {.token = "wrong", .join_token = "wrong"}),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(sched.join(joinRequest(kJob, "evil"), worker), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(sched.join(joinRequest(kJob, "evil", 3), {.join_token = sched.joinToken()}),
            grpc::StatusCode::FAILED_PRECONDITION);

  // A worker's store token grants the Store and nothing else.
  for (const std::string agent : {"real-a", "real-b"}) {
    EXPECT_EQ(sched.leave(agent, worker), grpc::StatusCode::PERMISSION_DENIED) << agent;
    EXPECT_EQ(sched.heartbeat(agent, worker), grpc::StatusCode::PERMISSION_DENIED) << agent;
    EXPECT_EQ(sched.report(agent, false, worker), grpc::StatusCode::PERMISSION_DENIED) << agent;
    EXPECT_EQ(sched.publish(agent, worker), grpc::StatusCode::PERMISSION_DENIED) << agent;
    EXPECT_EQ(sched.watch(agent, worker), grpc::StatusCode::PERMISSION_DENIED) << agent;
    EXPECT_EQ(sched.join(joinRequest(kJob, agent), worker), grpc::StatusCode::PERMISSION_DENIED);
  }

  // Even the job's own credential (what its agents hold) acts for an agent only with that
  // agent's session: a second process cannot take over an agent id whose stream is open, nor
  // speak for it.
  const Creds other_agent{.join_token = sched.joinToken(), .session = kOtherSession};
  for (const std::string agent : {"real-a", "real-b"}) {
    EXPECT_EQ(sched.join(joinRequest(kJob, agent), other_agent), grpc::StatusCode::ALREADY_EXISTS);
    EXPECT_EQ(sched.leave(agent, other_agent), grpc::StatusCode::PERMISSION_DENIED) << agent;
    EXPECT_EQ(sched.heartbeat(agent, other_agent), grpc::StatusCode::PERMISSION_DENIED) << agent;
    EXPECT_EQ(sched.report(agent, false, other_agent), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(sched.report(agent, true, other_agent), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(sched.publish(agent, other_agent), grpc::StatusCode::PERMISSION_DENIED) << agent;
    EXPECT_EQ(sched.watch(agent, other_agent), grpc::StatusCode::PERMISSION_DENIED) << agent;
    // A call without a session is malformed.
    EXPECT_EQ(sched.leave(agent, {.join_token = sched.joinToken(), .session = ""}),
              grpc::StatusCode::INVALID_ARGUMENT);
  }

  // The store refuses what holds no token of the job's, and keeps its value.
  EXPECT_EQ(sched.set(kJob, "canary", "overwritten", outsider),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(sched.set(kJob, "canary", "overwritten", {.token = "wrong"}),
            grpc::StatusCode::PERMISSION_DENIED);

  // The cluster's operator calls need the admin token, and a submit cannot end the running
  // rendezvous job of the same name even with it.
  {
    v1::SubmitRequest req;
    req.mutable_spec()->set_name(kJob);
    req.mutable_spec()->set_min_nodes(1);
    req.mutable_spec()->set_max_nodes(1);
    req.mutable_spec()->set_nproc_per_node(1);
    req.mutable_spec()->add_command("/bin/true");
    for (const Creds& c : {outsider, Creds{.token = sched.joinToken()}, worker}) {
      grpc::ClientContext ctx;
      prepare(ctx, c);
      v1::SubmitResponse resp;
      EXPECT_EQ(sched.cluster().Submit(&ctx, req, &resp).error_code(),
                grpc::StatusCode::PERMISSION_DENIED);
    }
    grpc::ClientContext ctx;
    prepare(ctx, {.token = sched.adminToken()});
    v1::SubmitResponse resp;
    EXPECT_EQ(sched.cluster().Submit(&ctx, req, &resp).error_code(),
              grpc::StatusCode::ALREADY_EXISTS);
  }
  for (const Creds& c : {outsider, worker, Creds{.join_token = sched.joinToken()}}) {
    grpc::ClientContext ctx;
    prepare(ctx, c);
    v1::ListNodesResponse resp;
    EXPECT_EQ(sched.cluster().ListNodes(&ctx, v1::ListNodesRequest(), &resp).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    grpc::ClientContext jobs_ctx;
    prepare(jobs_ctx, c);
    v1::ListJobsRequest all;
    all.set_all(true);
    v1::ListJobsResponse jobs;
    const grpc::Status s = sched.cluster().ListJobs(&jobs_ctx, all, &jobs);
    // A token that is no job's lists nothing; none lists the rendezvous job's command.
    if (s.ok()) {
      EXPECT_EQ(jobs.jobs_size(), 0) << jobs.DebugString();
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    }
  }

  // Nothing changed: the value is the worker's, both agents are still in their first round
  // (no Stop reached them), and the job ends when its workers are released.
  std::string value;
  ASSERT_TRUE(sched.get("canary", worker, &value).ok());
  EXPECT_EQ(value, "before");
  ASSERT_EQ(::write(release, "go\ngo\n", 6), 6);
  for (auto* agent : {a.get(), b.get()}) {
    const AgentResult r = agent->wait();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(count(r.out, "started"), 1u) << r.out;  // never restarted
    EXPECT_EQ(count(r.out, "released"), 1u) << r.out;
  }
  ::close(release);
}

// NodeRestriction: a node is bound to the session that registered it; another caller, even one
// with the join token, cannot heartbeat it or report exits for it; registering needs the join
// token.
TEST(TrustAttackTest, ANodeActsOnlyForItself) {
  TempDir dir;
  Scheduler sched(dir);
  v1::RegisterNodeRequest reg;
  reg.set_node_id("node-1");
  reg.set_address("127.0.0.1");
  reg.mutable_topology()->set_hostname("node-1");
  auto register_node = [&](const Creds& c) {
    grpc::ClientContext ctx;
    prepare(ctx, c);
    v1::RegisterNodeResponse resp;
    return sched.cluster().RegisterNode(&ctx, reg, &resp).error_code();
  };
  EXPECT_EQ(register_node({}), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(register_node({.join_token = "not-the-join-token"}),
            grpc::StatusCode::PERMISSION_DENIED);
  const Creds node{.join_token = sched.joinToken(), .session = kAttackerSession};
  ASSERT_EQ(register_node(node), grpc::StatusCode::OK);

  const Creds other{.join_token = sched.joinToken(), .session = kOtherSession};
  auto heartbeat = [&](const Creds& c) {
    grpc::ClientContext ctx;
    prepare(ctx, c);
    v1::NodeHeartbeatRequest req;
    req.set_node_id("node-1");
    v1::NodeHeartbeatResponse resp;
    return sched.cluster().NodeHeartbeat(&ctx, req, &resp).error_code();
  };
  auto report_exit = [&](const Creds& c) {
    grpc::ClientContext ctx;
    prepare(ctx, c);
    v1::ReportExitRequest req;
    req.set_node_id("node-1");
    req.set_job_id("some-job");
    req.set_exit_code(1);
    req.set_message("spoofed");
    v1::ReportExitResponse resp;
    return sched.cluster().ReportExit(&ctx, req, &resp).error_code();
  };
  EXPECT_EQ(heartbeat(other), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(report_exit(other), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(heartbeat({}), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(heartbeat(node), grpc::StatusCode::OK);
  {
    grpc::ClientContext ctx;
    prepare(ctx, other);
    v1::WatchNodeRequest req;
    req.set_node_id("node-1");
    auto reader = sched.cluster().WatchNode(&ctx, req);
    v1::NodeEvent event;
    EXPECT_FALSE(reader->Read(&event));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  // The node shows in the admin's listing as the one that registered.
  grpc::ClientContext ctx;
  prepare(ctx, {.token = sched.adminToken()});
  v1::ListNodesResponse nodes;
  ASSERT_TRUE(sched.cluster().ListNodes(&ctx, v1::ListNodesRequest(), &nodes).ok());
  ASSERT_EQ(nodes.nodes_size(), 1);
}

// Off loopback, the scheduler needs its credentials, or --insecure and a warning.
TEST(TrustAttackTest, AnOpenSchedulerOffLoopbackNeedsInsecure) {
  TempDir dir;
  const AgentResult open = runAgent({"scheduler", "--listen", "0.0.0.0:0"}, {}, 30s);
  EXPECT_EQ(open.exit_code, 2) << open.err;
  EXPECT_EQ(splitLines(open.err).size(), 1u) << open.err;
  EXPECT_NE(open.err.find("--join-token-file"), kNpos) << open.err;
  EXPECT_NE(open.err.find("--insecure"), kNpos) << open.err;

  writeFile(dir.file("join.tok"), "join-token-join-token-join-token\n", 0600);
  const AgentResult no_admin =
      runAgent({"scheduler", "--listen", "0.0.0.0:0", "--data-dir", dir.file("state"),
                "--join-token-file", dir.file("join.tok")},
               {}, 30s);
  EXPECT_EQ(no_admin.exit_code, 2) << no_admin.err;
  EXPECT_NE(no_admin.err.find("--admin-token-file"), kNpos) << no_admin.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("state")));

  auto insecure = AgentProcess::start({"scheduler", "--listen", "0.0.0.0:0", "--insecure"});
  ASSERT_TRUE(insecure->waitForStdout(
      [](const std::string& out) { return out.find("listening on") != kNpos; }, 30s))
      << insecure->err();
  insecure->signal(SIGTERM);
  const AgentResult r = insecure->wait();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("--insecure"), kNpos) << r.err;
  EXPECT_NE(r.err.find("anyone"), kNpos) << r.err;
}

}  // namespace
}  // namespace gangway::testing
