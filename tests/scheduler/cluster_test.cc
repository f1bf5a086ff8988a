// The cluster scheduler's state machine (ClusterManager) over a real embedded StateStore and a
// real Rendezvous, with an injected clock: admission and Launch orders, node loss and return,
// preemption, operator calls, access, persistence across a restart, and bad input.
#include "gangway/scheduler/cluster.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <stdlib.h>

#include <gtest/gtest.h>

#include "gangway/scheduler/authz.h"
#include "gangway/scheduler/state_store.h"

namespace gangway::scheduler {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/gangway-cluster-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

v1::JobSpec spec(const std::string& name, int min, int max, int priority = 0) {
  v1::JobSpec s;
  s.set_name(name);
  s.set_min_nodes(min);
  s.set_max_nodes(max);
  s.set_nproc_per_node(2);
  s.set_priority(priority);
  s.add_command("train.py");
  return s;
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { open(); }

  void open(ClusterOptions options = {}) {
    manager_.reset();
    rdzv_ = std::make_unique<Rendezvous>(RendezvousSettings{});
    store_.reset();
    auto store = openEmbeddedStateStore({.data_dir = dir_.path()});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    options.policy.min_resize_interval = absl::Seconds(30);
    auto m = ClusterManager::create(options, *store_, *rdzv_, now_);
    ASSERT_TRUE(m.ok()) << m.status();
    manager_ = *std::move(m);
  }

  // Registers and attaches a node; its orders are collected in events_[id].
  void addNode(const std::string& id, int gpus = 8, const std::string& leaf = "leaf0") {
    v1::RegisterNodeRequest req;
    req.set_node_id(id);
    req.set_address("10.0.0.1");
    req.mutable_topology()->set_gpu_count(gpus);
    req.mutable_topology()->set_network_path(leaf);
    ASSERT_TRUE(manager_->registerNode(req, now_).ok());
    auto handle = manager_->watchNode(
        id, [this, id](const v1::NodeEvent& e) { events_[id].push_back(e); }, now_);
    ASSERT_TRUE(handle.ok()) << handle.status();
    handles_[id] = *handle;
  }

  // Advances the clock; every attached node not in silent_ heartbeats first.
  void tick(absl::Duration advance = absl::ZeroDuration()) {
    now_ += advance;
    for (const auto& [id, handle] : handles_) {
      if (!silent_.contains(id)) (void)manager_->nodeHeartbeat(id, now_);
    }
    manager_->tick(now_);
  }

  v1::JobStatus job(const std::string& id) {
    const v1::ListJobsResponse all = manager_->listJobs(true);
    for (const auto& j : all.jobs()) {
      if (j.job_id() == id) return j;
    }
    ADD_FAILURE() << "no job " << id;
    return {};
  }
  std::vector<std::string> nodesOf(const std::string& id) {
    const v1::JobStatus j = job(id);
    return {j.nodes().begin(), j.nodes().end()};
  }
  int count(const std::string& node, bool launch) {
    int n = 0;
    for (const auto& e : events_[node]) n += launch ? e.has_launch() : e.has_release();
    return n;
  }

  TempDir dir_;
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<Rendezvous> rdzv_;
  std::unique_ptr<ClusterManager> manager_;
  std::map<std::string, std::vector<v1::NodeEvent>> events_;
  std::map<std::string, uint64_t> handles_;
  std::set<std::string> silent_;
};

TEST_F(ClusterTest, AdmitsAGangAndLaunchesItOnEveryNode) {
  for (const char* n : {"a", "b", "c"}) addNode(n);
  auto r = manager_->submit(spec("train", 2, 2), now_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->job_id(), "train");
  EXPECT_EQ(r->token().size(), 32u);
  EXPECT_EQ(job("train").state(), v1::PENDING);
  tick();
  const v1::JobStatus st = job("train");
  EXPECT_EQ(st.state(), v1::RUNNING);
  ASSERT_EQ(st.nodes_size(), 2);
  for (const std::string& n : nodesOf("train")) {
    ASSERT_EQ(count(n, true), 1) << n;
    const v1::Launch& l = events_[n][0].launch();
    EXPECT_EQ(l.job_id(), "train");
    EXPECT_EQ(l.token(), r->token());
    EXPECT_EQ(l.generation(), 1);
    EXPECT_EQ(l.spec().command(0), "train.py");
  }
  // The rendezvous job is the scheduler's: it exists, and waits for exactly those nodes.
  auto view = rdzv_->view("train");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->round, 0);
  // Listing never shows a token; nodes show their job.
  int busy = 0;
  const v1::ListNodesResponse nodes = manager_->listNodes();
  for (const auto& n : nodes.nodes()) busy += n.job_id() == "train";
  EXPECT_EQ(busy, 2);
}

TEST_F(ClusterTest, AnElasticJobStartsAtTheSizeFreeNodesAllowInOneDecision) {
  for (const char* n : {"a", "b", "c"}) addNode(n);
  ASSERT_TRUE(manager_->submit(spec("el", 1, 4), now_).ok());
  tick();
  EXPECT_EQ(nodesOf("el").size(), 3u);
  EXPECT_EQ(job("el").resizes(), 0);  // admitted at 3: no separate growth
}

TEST_F(ClusterTest, ALostNodeShrinksTheJobAndItsReturnGrowsItAgain) {
  for (const char* n : {"a", "b", "c"}) addNode(n);
  ASSERT_TRUE(manager_->submit(spec("el", 1, 3), now_).ok());
  tick();
  ASSERT_EQ(nodesOf("el").size(), 3u);
  // Node b's stream breaks (its agent died): lost at once, the job shrinks off it.
  manager_->unwatchNode("b", handles_["b"], /*lost=*/true, now_);
  tick();
  EXPECT_EQ(nodesOf("el"), (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(job("el").resizes(), 1);
  // Node b comes back: growth waits for the anti-thrash interval, then takes it in one decision.
  events_["b"].clear();
  addNode("b");
  tick(absl::Seconds(1));
  EXPECT_EQ(nodesOf("el").size(), 2u);
  tick(absl::Seconds(30));
  EXPECT_EQ(nodesOf("el").size(), 3u);
  EXPECT_EQ(count("b", true), 1);
}

TEST_F(ClusterTest, MissedHeartbeatsMakeANodeLost) {
  for (const char* n : {"a", "b"}) addNode(n);
  ASSERT_TRUE(manager_->submit(spec("el", 1, 2), now_).ok());
  tick();
  ASSERT_EQ(nodesOf("el").size(), 2u);
  silent_.insert("b");
  tick(absl::Seconds(2));
  tick(absl::Seconds(2));  // b: 4 s without a heartbeat (timeout 3 s)
  EXPECT_EQ(nodesOf("el"), std::vector<std::string>{"a"});
  EXPECT_EQ(manager_->nodeHeartbeat("b", now_).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(count("b", false), 1);  // told to stop, in case it is only cut off
}

TEST_F(ClusterTest, BelowItsMinimumAJobIsQueuedAgainWhole) {
  for (const char* n : {"a", "b"}) addNode(n);
  ASSERT_TRUE(manager_->submit(spec("fixed", 2, 2), now_).ok());
  tick();
  manager_->unwatchNode("a", handles_["a"], true, now_);
  tick();
  const v1::JobStatus st = job("fixed");
  EXPECT_EQ(st.state(), v1::PENDING);
  EXPECT_EQ(st.nodes_size(), 0);
  EXPECT_EQ(count("b", false), 1);
  EXPECT_FALSE(rdzv_->view("fixed").ok());  // its rendezvous job ended and was dropped
  // Node a returns: admitted again, generation 2.
  events_.clear();
  addNode("a");
  tick();
  EXPECT_EQ(job("fixed").state(), v1::RUNNING);
  ASSERT_EQ(count("a", true), 1);
  EXPECT_EQ(events_["a"][0].launch().generation(), 2);
}

TEST_F(ClusterTest, AHigherPriorityJobShrinksTheElasticOneToMakeRoom) {
  for (const char* n : {"a", "b", "c"}) addNode(n);
  ASSERT_TRUE(manager_->submit(spec("el", 1, 3), now_).ok());
  tick();
  ASSERT_EQ(nodesOf("el").size(), 3u);
  ASSERT_TRUE(manager_->submit(spec("hi", 2, 2, /*priority=*/10), now_).ok());
  tick();
  EXPECT_EQ(job("hi").state(), v1::RUNNING);
  EXPECT_EQ(nodesOf("hi").size(), 2u);
  EXPECT_EQ(job("el").state(), v1::RUNNING);  // shrunk, not evicted
  EXPECT_EQ(nodesOf("el").size(), 1u);
}

TEST_F(ClusterTest, CancelReleasesTheNodesAndIsFinal) {
  for (const char* n : {"a", "b"}) addNode(n);
  ASSERT_TRUE(manager_->submit(spec("j", 2, 2), now_).ok());
  tick();
  ASSERT_TRUE(manager_->cancel("j", now_).ok());
  EXPECT_EQ(job("j").state(), v1::CANCELLED);
  EXPECT_EQ(count("a", false), 1);
  EXPECT_EQ(count("b", false), 1);
  EXPECT_EQ(manager_->cancel("j", now_).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(manager_->cancel("nope", now_).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(manager_->listJobs(false).jobs().empty());
  EXPECT_EQ(manager_->listJobs(true).jobs_size(), 1);
  // The name can be used again once the job has ended.
  EXPECT_TRUE(manager_->submit(spec("j", 1, 1), now_).ok());
}

TEST_F(ClusterTest, ResizeShrinksAtOnceAndGrowsWithoutTheAntiThrashWait) {
  for (const char* n : {"a", "b", "c", "d"}) addNode(n);
  ASSERT_TRUE(manager_->submit(spec("el", 2, 4), now_).ok());
  tick();
  ASSERT_EQ(nodesOf("el").size(), 4u);
  ASSERT_TRUE(manager_->resize("el", 1, now_).ok());
  tick();
  EXPECT_EQ(nodesOf("el").size(), 1u);
  EXPECT_EQ(job("el").spec().min_nodes(), 1);  // lowered with the maximum
  ASSERT_TRUE(manager_->resize("el", 3, now_).ok());
  tick(absl::Seconds(1));
  EXPECT_EQ(nodesOf("el").size(), 3u);
  EXPECT_EQ(manager_->resize("el", 0, now_).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(manager_->resize("nope", 2, now_).code(), absl::StatusCode::kNotFound);
}

TEST_F(ClusterTest, DrainMovesTheJobOffTheNode) {
  for (const char* n : {"a", "b", "c"}) addNode(n);
  ASSERT_TRUE(manager_->submit(spec("el", 1, 2), now_).ok());
  tick();
  const std::string busy = nodesOf("el")[0];
  ASSERT_TRUE(manager_->drain(busy, false, now_).ok());
  tick();
  for (const std::string& n : nodesOf("el")) EXPECT_NE(n, busy);
  EXPECT_EQ(manager_->drain("nope", false, now_).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(manager_->drain(busy, true, now_).ok());
  const v1::ListNodesResponse nodes = manager_->listNodes();
  for (const auto& n : nodes.nodes()) EXPECT_FALSE(n.draining());
}

TEST_F(ClusterTest, AFailedRunFailsTheJobButAnOldGenerationIsIgnored) {
  for (const char* n : {"a", "b"}) addNode(n);
  ASSERT_TRUE(manager_->submit(spec("j", 2, 2), now_).ok());
  tick();
  v1::ReportExitRequest stale;
  stale.set_node_id("a");
  stale.set_job_id("j");
  stale.set_exit_code(1);
  stale.set_generation(0);
  ASSERT_TRUE(manager_->reportExit(stale, now_).ok());
  EXPECT_EQ(job("j").state(), v1::RUNNING);
  v1::ReportExitRequest failed = stale;
  failed.set_generation(1);
  failed.set_exit_code(2);
  failed.set_message("bad flag");
  ASSERT_TRUE(manager_->reportExit(failed, now_).ok());
  EXPECT_EQ(job("j").state(), v1::FAILED);
  EXPECT_NE(job("j").reason().find("bad flag"), std::string::npos);
  EXPECT_EQ(count("b", false), 1);
}

TEST_F(ClusterTest, InvalidSpecsAreRefusedAndCreateNothing) {
  struct Case {
    v1::JobSpec spec;
    std::string names;
  };
  std::vector<Case> cases;
  cases.push_back({spec("x", 3, 2), "--nnodes 3:2"});
  cases.push_back({spec("x", 0, 2), "--nnodes 0:2"});
  cases.push_back({spec("x", 1, 1), "--nproc-per-node 0"});
  cases.back().spec.set_nproc_per_node(0);
  cases.push_back({spec("x", 1, 1), "--queue 'gold'"});
  cases.back().spec.set_queue("gold");
  cases.push_back({spec("x", 1, 1), "command"});
  cases.back().spec.clear_command();
  cases.push_back({spec("a b", 1, 1), "--name 'a b'"});
  cases.push_back({spec("x", 1, 1), "--gpus-per-node -1"});
  cases.back().spec.set_gpus_per_node(-1);
  for (const Case& c : cases) {
    auto r = manager_->submit(c.spec, now_);
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.names;
    EXPECT_NE(r.status().message().find(c.names), absl::string_view::npos) << r.status();
  }
  EXPECT_TRUE(manager_->listJobs(true).jobs().empty());
  EXPECT_EQ(store_->revision(), 0);
  ASSERT_TRUE(manager_->submit(spec("x", 1, 1), now_).ok());
  EXPECT_EQ(manager_->submit(spec("x", 1, 1), now_).status().code(),
            absl::StatusCode::kAlreadyExists);
  v1::RegisterNodeRequest bad;
  bad.set_node_id("");
  bad.set_address("10.0.0.1");
  EXPECT_EQ(manager_->registerNode(bad, now_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(manager_
                ->watchNode(
                    "never", [](const v1::NodeEvent&) {}, now_)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ClusterTest, ASubmitNeverEndsARunningRendezvousJobOfTheSameName) {
  v1::JoinRequest join;
  join.set_job_id("train");
  join.set_agent_id("agent-1");
  join.set_address("10.0.0.9");
  join.set_local_world_size(1);
  join.set_min_nodes(2);
  join.set_max_nodes(2);
  ASSERT_TRUE(rdzv_->join(join, "secret", now_).ok());
  const auto r = manager_->submit(spec("train", 1, 1), now_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists) << r.status();
  EXPECT_NE(r.status().message().find("started by its agents"), absl::string_view::npos);
  auto view = rdzv_->view("train");
  ASSERT_TRUE(view.ok());
  EXPECT_FALSE(view->ended);
  EXPECT_EQ(view->agents, 1);
  EXPECT_TRUE(manager_->listJobs(true).jobs().empty());
  EXPECT_EQ(store_->revision(), 0);
}

TEST_F(ClusterTest, QueuesAndQuotas) {
  ClusterOptions o;
  o.queues["gold"] = 16;
  open(o);
  for (const char* n : {"a", "b", "c"}) addNode(n);
  v1::JobSpec big = spec("big", 3, 3);
  big.set_queue("gold");
  big.set_gpus_per_node(8);
  EXPECT_EQ(manager_->submit(big, now_).status().code(), absl::StatusCode::kInvalidArgument);
  v1::JobSpec two = spec("two", 1, 3);
  two.set_queue("gold");
  two.set_gpus_per_node(8);
  ASSERT_TRUE(manager_->submit(two, now_).ok());
  tick();
  EXPECT_EQ(nodesOf("two").size(), 2u);  // 16 GPUs of quota: two 8-GPU nodes
}

TEST_F(ClusterTest, TokensGiveAJobPowerOverItselfOnly) {
  ClusterOptions o;
  o.admin_token = "operator-secret";
  open(o);
  Authorizer authz(*rdzv_);
  authz.setCluster(manager_.get());
  auto as = [](const std::string& token) {
    return CallCredentials{.token = token, .join_token = {}, .session = {}};
  };
  EXPECT_EQ(authz.check(Rpc::kSubmit, as("")).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(authz.check(Rpc::kDrain, as("wrong")).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(authz.check(Rpc::kListNodes, as("")).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(authz.check(Rpc::kListJobs, as("")).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(authz.check(Rpc::kSubmit, as("operator-secret")).ok());
  auto a = manager_->submit(spec("a", 1, 1), now_);
  auto b = manager_->submit(spec("b", 1, 1), now_);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(authz.check(Rpc::kResize, as(a->token()), "a").ok());
  EXPECT_EQ(authz.check(Rpc::kCancel, as(a->token()), "b").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(authz.check(Rpc::kCancel, as(""), "b").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(authz.check(Rpc::kCancel, as("operator-secret"), "b").ok());
  EXPECT_EQ(authz.check(Rpc::kResize, as(a->token()), "nope").code(), absl::StatusCode::kNotFound);
  // A job's token lists that job alone.
  EXPECT_TRUE(authz.check(Rpc::kListJobs, as(a->token())).ok());
  const std::string token = a->token();
  const v1::ListJobsResponse mine = manager_->listJobs(true, &token);
  ASSERT_EQ(mine.jobs_size(), 1);
  EXPECT_EQ(mine.jobs(0).job_id(), "a");
  // A node needs the join token or the admin token, and a session.
  CallCredentials node = as("operator-secret");
  EXPECT_EQ(authz.check(Rpc::kRegisterNode, node).code(), absl::StatusCode::kInvalidArgument);
  node.session = randomSecret();
  EXPECT_TRUE(authz.check(Rpc::kRegisterNode, node).ok());
  // No join token configured here, but an admin token: the node needs that.
  node.token = "";
  EXPECT_EQ(authz.check(Rpc::kRegisterNode, node).code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(ClusterTest, EverythingAcknowledgedSurvivesARestart) {
  for (const char* n : {"a", "b", "c"}) addNode(n);
  auto r = manager_->submit(spec("run", 2, 2), now_);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(manager_->submit(spec("wait", 3, 3), now_).ok());
  ASSERT_TRUE(manager_->submit(spec("gone", 1, 1, -1), now_).ok());
  ASSERT_TRUE(manager_->cancel("gone", now_).ok());
  tick();
  ASSERT_TRUE(manager_->drain("c", false, now_).ok());
  const std::vector<std::string> running_on = nodesOf("run");
  ASSERT_EQ(running_on.size(), 2u);

  events_.clear();
  handles_.clear();
  open();  // a new process on the same data directory
  EXPECT_EQ(job("run").state(), v1::RUNNING);
  EXPECT_EQ(nodesOf("run"), running_on);
  EXPECT_EQ(job("wait").state(), v1::PENDING);
  EXPECT_EQ(job("gone").state(), v1::CANCELLED);
  EXPECT_TRUE(*manager_->holdsJobToken("run", r->token()));
  bool drained = false;
  const v1::ListNodesResponse nodes = manager_->listNodes();
  for (const auto& n : nodes.nodes()) drained |= n.node_id() == "c" && n.draining();
  EXPECT_TRUE(drained);
  // The restored rendezvous job waits for the same nodes.
  EXPECT_TRUE(rdzv_->view("run").ok());
  // Its nodes register again (saying what they run) and are told to go on: a Launch of the same
  // generation, which their agents ignore.
  for (const std::string& n : running_on) {
    v1::RegisterNodeRequest req;
    req.set_node_id(n);
    req.set_address("10.0.0.1");
    req.mutable_topology()->set_gpu_count(8);
    req.mutable_topology()->set_network_path("leaf0");
    req.add_running_jobs("run");
    ASSERT_TRUE(manager_->registerNode(req, now_).ok());
    auto handle = manager_->watchNode(
        n, [this, n](const v1::NodeEvent& e) { events_[n].push_back(e); }, now_);
    ASSERT_TRUE(handle.ok());
    handles_[n] = *handle;
    ASSERT_EQ(events_[n].size(), 1u) << events_[n][1].DebugString();
    EXPECT_EQ(events_[n][0].launch().generation(), 1);
  }
  tick(absl::Seconds(1));
  EXPECT_EQ(nodesOf("run"), running_on);
  tick(absl::Seconds(2));
  tick(absl::Seconds(2));
  EXPECT_EQ(job("run").state(), v1::RUNNING);  // its nodes came back and heartbeat
  // Node c (drained, idle) never registered again: lost after the heartbeat timeout.
  const v1::ListNodesResponse later = manager_->listNodes();
  for (const auto& n : later.nodes()) EXPECT_EQ(n.healthy(), n.node_id() != "c") << n.node_id();
}

TEST_F(ClusterTest, ACorruptRecordIsAClearErrorNotAReset) {
  ASSERT_TRUE(manager_->submit(spec("j", 1, 1), now_).ok());
  ASSERT_TRUE(store_->put("jobs/evil", "\xff\xff not a record").ok());
  manager_.reset();
  auto m = ClusterManager::create({}, *store_, *rdzv_, now_);
  ASSERT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(m.status().message().find("jobs/evil"), absl::string_view::npos) << m.status();
  auto entry = store_->get("jobs/j");
  ASSERT_TRUE(entry.ok() && entry->has_value());  // nothing was dropped
}

TEST_F(ClusterTest, MetricsAreInPrometheusTextFormat) {
  for (const char* n : {"a", "b"}) addNode(n);
  ASSERT_TRUE(manager_->submit(spec("j", 2, 2), now_).ok());
  ASSERT_TRUE(manager_->submit(spec("k", 1, 1), now_).ok());
  tick();
  const std::string m = manager_->metrics();
  for (const char* line :
       {"# TYPE gangway_queue_pending_jobs gauge\n",
        "gangway_queue_pending_jobs{queue=\"default\"} 1\n", "gangway_jobs{state=\"running\"} 1\n",
        "gangway_gpus_allocated 0\n", "gangway_jobs_admitted_total 1\n",
        "gangway_nodes{state=\"healthy\"} 2\n", "# TYPE gangway_time_to_admit_seconds summary\n",
        "gangway_time_to_admit_seconds_count 1\n", "gangway_rendezvous_rounds_total 0\n"}) {
    EXPECT_NE(m.find(line), std::string::npos) << line << "\n" << m;
  }
}

}  // namespace
}  // namespace gangway::scheduler
