// The rendezvous state machine, driven with an injected time: every rule, no waiting.
#include "gangway/scheduler/rendezvous.h"

#include <map>
#include <string>
#include <vector>

#include <absl/strings/str_cat.h>
#include <gtest/gtest.h>

namespace gangway::scheduler {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

class RendezvousTest : public ::testing::Test {
 protected:
  RendezvousTest() : rdzv_(settings()) {}

  static RendezvousSettings settings() {
    RendezvousSettings s;
    s.last_call = absl::Seconds(1);
    s.join_timeout = absl::Seconds(30);
    s.heartbeat_timeout = absl::Seconds(3);
    return s;
  }

  v1::JoinRequest joinRequest(const std::string& agent, int nproc = 2, int min = 2, int max = 4,
                              int max_restarts = 1) {
    v1::JoinRequest r;
    r.set_job_id("job");
    r.set_agent_id(agent);
    r.set_address("10.0.0." + agent.substr(1));
    r.set_local_world_size(nproc);
    r.set_min_nodes(min);
    r.set_max_nodes(max);
    r.set_max_restarts(max_restarts);
    return r;
  }

  // Joins and attaches a sink that records the agent's events.
  void add(const std::string& agent, int nproc = 2, int min = 2, int max = 4, int restarts = 1) {
    ASSERT_TRUE(rdzv_.join(joinRequest(agent, nproc, min, max, restarts), "", now_).ok());
    auto h = rdzv_.watch(
        "job", agent, [this, agent](const v1::RoundEvent& e) { events_[agent].push_back(e); },
        now_);
    ASSERT_TRUE(h.ok()) << h.status();
    handles_[agent] = *h;
    settle();
  }
  // Plays node rank 0's agent: publishes the MASTER_PORT of a round that waits for it.
  void settle() {
    auto v = rdzv_.view("job");
    if (!v.ok() || v->round == 0 || v->ended || v->members.empty()) return;
    v1::MasterPortRequest req;
    req.set_job_id("job");
    req.set_agent_id(v->members[0]);
    req.set_round(v->round);
    req.set_port(static_cast<int>(20000 + v->round));
    ASSERT_TRUE(rdzv_.publishMasterPort(req, now_).ok());
  }
  void advance(absl::Duration d) {
    now_ += d;
    // Everyone still present heartbeats except those marked silent.
    for (const auto& [agent, h] : handles_) {
      if (!silent_.contains(agent)) (void)rdzv_.heartbeat("job", agent, now_);
    }
    rdzv_.tick(now_);
    settle();
  }
  const v1::RoundEvent& last(const std::string& agent) { return events_[agent].back(); }
  Rendezvous::JobView view() { return *rdzv_.view("job"); }

  Rendezvous rdzv_;
  absl::Time now_ = kT0;
  std::map<std::string, std::vector<v1::RoundEvent>> events_;
  std::map<std::string, uint64_t> handles_;
  absl::flat_hash_set<std::string> silent_;
};

TEST_F(RendezvousTest, RoundFormsAtMaxAtOnce) {
  for (const char* a : {"a1", "a2", "a3", "a4"}) add(a, 2, 2, 4);
  ASSERT_EQ(view().round, 1);
  for (int i = 0; i < 4; ++i) {
    const std::string agent = "a" + std::to_string(i + 1);
    ASSERT_EQ(events_[agent].size(), 1u);
    const v1::Assignment& a = last(agent).assignment();
    EXPECT_EQ(a.round(), 1);
    EXPECT_EQ(a.node_rank(), i);
    EXPECT_EQ(a.num_nodes(), 4);
    EXPECT_EQ(a.world_size(), 8);
    EXPECT_EQ(a.rank_offset(), 2 * i);
    EXPECT_EQ(a.master_addr(), "10.0.0.1");
    EXPECT_EQ(a.nodes_size(), 4);
    EXPECT_EQ(a.master_port_key(), masterPortKey(1));
    if (i > 0) {
      EXPECT_EQ(a.master_port(), 20001);
    }
  }
  // The full layout is in the store too.
  auto store = *rdzv_.store("job");
  v1::RoundLayout layout;
  ASSERT_TRUE(layout.ParseFromString(*store->get(layoutKey(1))));
  EXPECT_EQ(layout.nodes_size(), 4);
}

TEST_F(RendezvousTest, NodeRankZeroChoosesTheMasterPortBeforeTheOthersHearOfTheRound) {
  ASSERT_TRUE(rdzv_.join(joinRequest("a1", 2, 2, 2), "", now_).ok());
  ASSERT_TRUE(rdzv_.join(joinRequest("a2", 2, 2, 2), "", now_).ok());
  std::vector<v1::RoundEvent> e1, e2;
  ASSERT_TRUE(rdzv_
                  .watch(
                      "job", "a1", [&](const v1::RoundEvent& e) { e1.push_back(e); }, now_)
                  .ok());
  ASSERT_TRUE(rdzv_
                  .watch(
                      "job", "a2", [&](const v1::RoundEvent& e) { e2.push_back(e); }, now_)
                  .ok());
  ASSERT_EQ(e1.size(), 1u);
  EXPECT_TRUE(e1[0].assignment().choose_master_port());
  EXPECT_TRUE(e2.empty());
  v1::MasterPortRequest req;
  req.set_job_id("job");
  req.set_agent_id("a2");  // not node rank 0
  req.set_round(1);
  req.set_port(41000);
  EXPECT_EQ(rdzv_.publishMasterPort(req, now_).code(), absl::StatusCode::kPermissionDenied);
  req.set_agent_id("a1");
  req.set_port(0);
  EXPECT_EQ(rdzv_.publishMasterPort(req, now_).code(), absl::StatusCode::kInvalidArgument);
  req.set_port(41000);
  ASSERT_TRUE(rdzv_.publishMasterPort(req, now_).ok());
  ASSERT_EQ(e2.size(), 1u);
  EXPECT_EQ(e2[0].assignment().master_port(), 41000);
  EXPECT_FALSE(e2[0].assignment().choose_master_port());
  EXPECT_EQ(*(*rdzv_.store("job"))->get(masterPortKey(1)), "41000");
  req.set_round(0);  // stale: ignored
  EXPECT_TRUE(rdzv_.publishMasterPort(req, now_).ok());
  EXPECT_EQ(e2.size(), 1u);
}

TEST_F(RendezvousTest, BetweenMinAndMaxTheRoundWaitsForTheLastCall) {
  add("a1");
  add("a2");
  EXPECT_EQ(view().round, 0);  // MIN reached: last call open
  advance(absl::Milliseconds(500));
  add("a3");  // joins inside the window
  EXPECT_EQ(view().round, 0);
  advance(absl::Milliseconds(500));
  EXPECT_EQ(view().round, 1);
  EXPECT_EQ(view().members, (std::vector<std::string>{"a1", "a2", "a3"}));
  EXPECT_EQ(last("a3").assignment().world_size(), 6);
}

TEST_F(RendezvousTest, LocalWorldSizesMayDifferAndRanksFollowThem) {
  add("a1", 4, 2, 2);
  add("a2", 1, 2, 2);
  ASSERT_EQ(view().round, 1);
  EXPECT_EQ(last("a1").assignment().world_size(), 5);
  EXPECT_EQ(last("a2").assignment().rank_offset(), 4);
}

TEST_F(RendezvousTest, BelowMinTheJobWaitsThenFailsAtJoinTimeout) {
  add("a1", 2, 3, 4);
  add("a2", 2, 3, 4);
  advance(absl::Seconds(29));
  EXPECT_EQ(view().round, 0);
  EXPECT_FALSE(view().ended);
  advance(absl::Seconds(1));
  EXPECT_TRUE(view().ended);
  EXPECT_FALSE(view().succeeded);
  const v1::JobEnd& end = last("a1").job_end();
  EXPECT_FALSE(end.succeeded());
  EXPECT_NE(end.reason().find("only 2 of the 3 nodes"), std::string::npos) << end.reason();
  EXPECT_NE(end.reason().find("join_timeout"), std::string::npos);
  // A late agent is told the job is over.
  EXPECT_EQ(rdzv_.join(joinRequest("a3", 2, 3, 4), "", now_).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(RendezvousTest, LostAgentStopsTheOthersAndTheSurvivorsReform) {
  for (const char* a : {"a1", "a2", "a3", "a4"}) add(a);
  ASSERT_EQ(view().round, 1);
  rdzv_.unwatch("job", "a2", handles_["a2"], /*lost=*/true, now_);  // its stream broke (kill -9)
  handles_.erase("a2");
  // The others are stopped at once...
  for (const char* a : {"a1", "a3", "a4"}) {
    ASSERT_TRUE(last(a).has_stop()) << a;
    EXPECT_NE(last(a).stop().reason().find("a2"), std::string::npos);
  }
  // ...and re-form after the last call, with stable relative order.
  advance(absl::Seconds(1));
  ASSERT_EQ(view().round, 2);
  EXPECT_EQ(view().members, (std::vector<std::string>{"a1", "a3", "a4"}));
  EXPECT_EQ(last("a3").assignment().node_rank(), 1);
  EXPECT_EQ(last("a4").assignment().world_size(), 6);
  EXPECT_EQ(last("a4").assignment().restart_count(), 0);  // membership changes are not restarts
}

TEST_F(RendezvousTest, MissedHeartbeatsRemoveAnAgent) {
  for (const char* a : {"a1", "a2", "a3"}) add(a, 2, 2, 3);
  ASSERT_EQ(view().round, 1);
  silent_.insert("a3");
  advance(absl::Seconds(2));
  EXPECT_EQ(view().agents, 3);
  advance(absl::Seconds(1));  // 3 s since a3's last heartbeat
  EXPECT_EQ(view().agents, 2);
  EXPECT_TRUE(last("a1").has_stop());
  advance(absl::Seconds(1));
  EXPECT_EQ(view().round, 2);
  EXPECT_EQ(rdzv_.heartbeat("job", "a3", now_).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RendezvousTest, NewAgentBelowMaxScalesUp) {
  add("a1");
  add("a2");
  advance(absl::Seconds(1));
  ASSERT_EQ(view().round, 1);
  add("a3");
  EXPECT_EQ(view().round, 1);
  advance(absl::Seconds(1));
  ASSERT_EQ(view().round, 2);
  EXPECT_EQ(view().members, (std::vector<std::string>{"a1", "a2", "a3"}));
  EXPECT_EQ(last("a1").assignment().world_size(), 6);
}

TEST_F(RendezvousTest, AgentsBeyondMaxWaitAsStandbysAndReplaceALostOne) {
  add("a1", 2, 1, 2);
  add("a2", 2, 1, 2);
  ASSERT_EQ(view().round, 1);
  add("a3", 2, 1, 2);
  advance(absl::Seconds(5));
  EXPECT_EQ(view().round, 1);  // nothing would change
  EXPECT_TRUE(events_["a3"].empty());
  ASSERT_TRUE(rdzv_.leave("job", "a1", "SIGTERM", now_).ok());
  handles_.erase("a1");
  settle();
  EXPECT_EQ(view().round, 2);  // at MAX again: at once
  EXPECT_EQ(view().members, (std::vector<std::string>{"a2", "a3"}));
  EXPECT_EQ(last("a3").assignment().node_rank(), 1);
}

TEST_F(RendezvousTest, GracefulLeaveDoesNotCloseTheRendezvous) {
  for (const char* a : {"a1", "a2", "a3"}) add(a, 2, 2, 3);
  ASSERT_TRUE(rdzv_.leave("job", "a1", "SIGTERM", now_).ok());
  handles_.erase("a1");
  advance(absl::Seconds(1));
  EXPECT_FALSE(view().ended);
  ASSERT_EQ(view().round, 2);
  EXPECT_EQ(last("a2").assignment().node_rank(), 0);
  EXPECT_EQ(last("a2").assignment().master_addr(), "10.0.0.2");
  add("a4", 2, 2, 3);  // and others may still join
  advance(absl::Seconds(1));
  EXPECT_EQ(view().round, 3);
}

TEST_F(RendezvousTest, WorkerFailureRestartsEveryoneUntilRestartsAreSpent) {
  add("a1", 2, 2, 2, /*restarts=*/1);
  add("a2", 2, 2, 2, 1);
  ASSERT_EQ(view().round, 1);
  v1::WorkerReport failed;
  failed.set_job_id("job");
  failed.set_agent_id("a2");
  failed.set_round(1);
  failed.set_failure("rank 3 exited with code 1");
  ASSERT_TRUE(rdzv_.report(failed, now_).ok());
  settle();
  ASSERT_EQ(view().round, 2);  // at once, no last call
  EXPECT_EQ(last("a1").assignment().restart_count(), 1);
  ASSERT_TRUE(rdzv_.report(failed, now_).ok());  // a stale report (round 1) changes nothing
  EXPECT_EQ(view().round, 2);
  failed.set_round(2);
  ASSERT_TRUE(rdzv_.report(failed, now_).ok());
  EXPECT_TRUE(view().ended);
  EXPECT_FALSE(last("a1").job_end().succeeded());
  EXPECT_NE(last("a1").job_end().reason().find("rank 3 exited with code 1"), std::string::npos);
}

TEST_F(RendezvousTest, JobSucceedsWhenEveryMemberReportsSuccess) {
  add("a1", 2, 2, 2);
  add("a2", 2, 2, 2);
  v1::WorkerReport ok;
  ok.set_job_id("job");
  ok.set_agent_id("a1");
  ok.set_round(1);
  ok.set_succeeded(true);
  ASSERT_TRUE(rdzv_.report(ok, now_).ok());
  ASSERT_TRUE(rdzv_.report(ok, now_).ok());  // repeated: counted once
  EXPECT_FALSE(view().ended);
  ok.set_agent_id("a2");
  ASSERT_TRUE(rdzv_.report(ok, now_).ok());
  EXPECT_TRUE(view().succeeded);
  EXPECT_TRUE(last("a1").job_end().succeeded());
  EXPECT_TRUE(last("a2").job_end().succeeded());
}

TEST_F(RendezvousTest, DisagreeingAgentsAreRefusedWithoutChangingTheJob) {
  add("a1", 2, 2, 4);
  const absl::Status s = rdzv_.join(joinRequest("a2", 2, 3, 4), "", now_);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("--nnodes 3:4 disagrees"), absl::string_view::npos) << s;
  EXPECT_EQ(rdzv_.join(joinRequest("a2", 2, 2, 4, 5), "", now_).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(view().agents, 1);
  EXPECT_EQ(rdzv_.join(joinRequest("a2", 0), "", now_).code(), absl::StatusCode::kInvalidArgument);
  v1::JoinRequest empty;
  EXPECT_EQ(rdzv_.join(empty, "", now_).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RendezvousTest, RejoinIsIdempotentAndWatchReplaysTheLatestEvent) {
  add("a1", 2, 2, 2);
  add("a2", 2, 2, 2);
  ASSERT_TRUE(rdzv_.join(joinRequest("a1", 2, 2, 2), "", now_).ok());
  EXPECT_EQ(view().round, 1);
  // A new stream for a1 (e.g. after a reconnect) gets the current assignment at once.
  std::vector<v1::RoundEvent> replay;
  auto h = rdzv_.watch(
      "job", "a1", [&](const v1::RoundEvent& e) { replay.push_back(e); }, now_);
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(replay.size(), 1u);
  EXPECT_EQ(replay[0].assignment().round(), 1);
  // The old stream's end no longer removes the agent.
  rdzv_.unwatch("job", "a1", handles_["a1"], /*lost=*/true, now_);
  EXPECT_EQ(view().agents, 2);
}

TEST_F(RendezvousTest, TheFirstJoinSetsTheJobSecret) {
  ASSERT_TRUE(rdzv_.join(joinRequest("a1"), "s3cret", now_).ok());
  EXPECT_EQ(rdzv_.join(joinRequest("a2"), "guess", now_).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(rdzv_.join(joinRequest("a2"), "", now_).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(view().agents, 1);  // the refused joins changed nothing
  auto secrets = rdzv_.secrets("job");
  ASSERT_TRUE(secrets.ok());
  EXPECT_EQ(secrets->secret, "s3cret");
  EXPECT_TRUE(secrets->own_token);
  EXPECT_EQ(secrets->store_token, storeTokenFor("s3cret", "job"));
  EXPECT_NE(secrets->store_token, storeTokenFor("s3cret", "job2"));
  EXPECT_EQ(rdzv_.secrets("nojob").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(rdzv_.join(joinRequest("a2"), "s3cret", now_).ok());
  EXPECT_TRUE(constantTimeEquals("", ""));
  EXPECT_FALSE(constantTimeEquals("a", ""));
  EXPECT_FALSE(constantTimeEquals("ab", "abc"));
}

TEST_F(RendezvousTest, StaticNodeRanksAreHonouredAndUnique) {
  v1::JoinRequest second = joinRequest("a1", 2, 2, 2);
  second.set_node_rank(1);
  ASSERT_TRUE(rdzv_.join(second, "", now_).ok());
  v1::JoinRequest clash = joinRequest("a3", 2, 2, 2);
  clash.set_node_rank(1);
  EXPECT_EQ(rdzv_.join(clash, "", now_).code(), absl::StatusCode::kFailedPrecondition);
  clash.set_node_rank(2);
  EXPECT_EQ(rdzv_.join(clash, "", now_).code(), absl::StatusCode::kInvalidArgument);
  v1::JoinRequest first = joinRequest("a2", 2, 2, 2);
  first.set_node_rank(0);
  ASSERT_TRUE(rdzv_.join(first, "", now_).ok());
  // a1 joined first but asked for node rank 1.
  EXPECT_EQ(view().members, (std::vector<std::string>{"a2", "a1"}));
}

TEST_F(RendezvousTest, EndedJobsAreForgottenAfterRetention) {
  add("a1", 1, 1, 1);
  v1::WorkerReport ok;
  ok.set_job_id("job");
  ok.set_agent_id("a1");
  ok.set_round(1);
  ok.set_succeeded(true);
  ASSERT_TRUE(rdzv_.report(ok, now_).ok());
  handles_.clear();
  advance(absl::Minutes(10));
  EXPECT_EQ(rdzv_.view("job").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RendezvousTest, NodeRanksFollowTheNetworkPath) {
  // Four agents arrive alternating between two leaves; node ranks group each leaf.
  const char* leaves[] = {"spine1/leaf2", "spine1/leaf1", "spine1/leaf2", "spine1/leaf1"};
  for (int i = 0; i < 4; ++i) {
    v1::JoinRequest r = joinRequest("a" + std::to_string(i + 1), 2, 4, 4);
    r.mutable_topology()->set_hostname("host" + std::to_string(i + 1));
    r.mutable_topology()->set_network_path(leaves[i]);
    ASSERT_TRUE(rdzv_.join(r, "", now_).ok());
  }
  rdzv_.tick(now_);
  EXPECT_EQ(view().members, (std::vector<std::string>{"a2", "a4", "a1", "a3"}));
}

TEST_F(RendezvousTest, ParallelismIsFixedByTheFirstJoin) {
  v1::JoinRequest first = joinRequest("a1");
  first.set_parallelism("tp=2,pp=2");
  ASSERT_TRUE(rdzv_.join(first, "", now_).ok());
  v1::JoinRequest other = joinRequest("a2");
  other.set_parallelism("tp=2,pp=1");
  const absl::Status s = rdzv_.join(other, "", now_);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "--parallelism 'tp=2,pp=1' disagrees with job 'job', which has 'tp=2,pp=2'");
}

TEST_F(RendezvousTest, RankHintsOrderNewcomers) {
  // Kubernetes pods join in any order; their Job indexes decide the node ranks.
  for (const auto& [agent, hint] :
       std::vector<std::pair<std::string, int>>{{"a1", 2}, {"a2", 0}, {"a3", 1}}) {
    v1::JoinRequest r = joinRequest(agent, 2, 3, 3);
    r.set_rank_hint(hint);
    ASSERT_TRUE(rdzv_.join(r, "", now_).ok());
    auto h = rdzv_.watch(
        "job", agent, [this, agent](const v1::RoundEvent& e) { events_[agent].push_back(e); },
        now_);
    ASSERT_TRUE(h.ok());
    handles_[agent] = *h;
  }
  settle();
  ASSERT_EQ(view().round, 1);
  EXPECT_EQ(last("a2").assignment().node_rank(), 0);
  EXPECT_EQ(last("a3").assignment().node_rank(), 1);
  EXPECT_EQ(last("a1").assignment().node_rank(), 2);
}

// What an agent can make the rendezvous hold is bounded; a refused Join leaves nothing behind.
class RendezvousLimitsTest : public ::testing::Test {
 protected:
  static v1::JoinRequest request(const std::string& job, const std::string& agent) {
    v1::JoinRequest r;
    r.set_job_id(job);
    r.set_agent_id(agent);
    r.set_address("10.0.0.1");
    r.set_local_world_size(1);
    r.set_min_nodes(1);
    r.set_max_nodes(2);
    return r;
  }
  // Agent "a" of a one-node job "job": its round forms at once.
  static v1::JoinRequest alone(int max_restarts = 0) {
    v1::JoinRequest r = request("job", "a");
    r.set_max_nodes(1);
    r.set_max_restarts(max_restarts);
    return r;
  }
};

TEST_F(RendezvousLimitsTest, MalformedJoinsAreRefusedAndCreateNoJob) {
  Rendezvous rdzv({});
  std::vector<v1::JoinRequest> bad;
  bad.push_back(request("..", "a"));
  bad.push_back(request(std::string(100'000, 'j'), "a"));
  bad.push_back(request("job", "a\nI forged line"));
  bad.push_back(request("job", "a"));
  bad.back().set_address(std::string(256 * 1024, '1'));
  bad.push_back(request("job", "a"));
  bad.back().set_address("10.0.0.1; rm -rf /");
  bad.push_back(request("job", "a"));
  bad.back().set_max_nodes(1 << 30);
  bad.push_back(request("job", "a"));
  bad.back().set_local_world_size(1 << 20);
  bad.push_back(request("job", "a"));
  for (int i = 0; i < 40; ++i)
    (*bad.back().mutable_topology()->mutable_labels())[absl::StrCat("k", i)] = "v";
  bad.push_back(request("job", "a"));
  bad.back().mutable_topology()->set_network_path("spine1\nleaf2");
  bad.push_back(request("job", "a"));
  bad.back().set_parallelism(std::string(300, 'x'));
  for (const auto& req : bad) {
    const absl::Status s = rdzv.join(req, "", kT0);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_LT(s.message().size(), 400u) << s;  // the bad value is shown cut, not whole
    EXPECT_EQ(s.message().find('\n'), std::string::npos) << s;
  }
  EXPECT_EQ(rdzv.view("job").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(rdzv.stores().empty());
  // A Join refused after the checks of the request (a taken node rank) creates nothing either.
  auto first = request("ranked", "a");
  first.set_node_rank(5);
  EXPECT_EQ(rdzv.join(first, "", kT0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rdzv.view("ranked").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RendezvousLimitsTest, JobsAndAgentsPerJobAreBounded) {
  RendezvousSettings settings;
  settings.limits.max_jobs = 3;
  settings.limits.max_agents_per_job = 2;
  Rendezvous rdzv(settings);
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(rdzv.join(request(absl::StrCat("j", i), "a"), "", kT0).ok());
  const absl::Status s = rdzv.join(request("j3", "a"), "", kT0);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  // Jobs already there still take their agents, up to the limit; a retried Join still works.
  ASSERT_TRUE(rdzv.join(request("j0", "b"), "", kT0).ok());
  EXPECT_EQ(rdzv.join(request("j0", "c"), "", kT0).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(rdzv.join(request("j0", "b"), "", kT0).ok());
  EXPECT_EQ(rdzv.view("j0")->agents, 2);
}

TEST_F(RendezvousLimitsTest, ASecondWatchEndsTheFirst) {
  Rendezvous rdzv({});
  ASSERT_TRUE(rdzv.join(alone(), "", kT0).ok());
  std::vector<absl::Status> closed;
  int first_events = 0;
  auto h1 = rdzv.watch(
      "job", "a", [&](const v1::RoundEvent&) { ++first_events; }, kT0,
      [&](const absl::Status& s) { closed.push_back(s); });
  ASSERT_TRUE(h1.ok());
  EXPECT_TRUE(closed.empty());
  int second_events = 0;
  auto h2 = rdzv.watch(
      "job", "a", [&](const v1::RoundEvent&) { ++second_events; }, kT0,
      [&](const absl::Status& s) { closed.push_back(s); });
  ASSERT_TRUE(h2.ok());
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].code(), absl::StatusCode::kAborted);
  EXPECT_EQ(second_events, 1);  // the latest event is replayed on the new stream
  // The first stream's end changes nothing: it is no longer the agent's.
  rdzv.unwatch("job", "a", *h1, /*lost=*/true, kT0);
  EXPECT_EQ(rdzv.view("job")->agents, 1);
}

TEST_F(RendezvousLimitsTest, FailureMessagesAreEscapedAndCut) {
  Rendezvous rdzv({});
  ASSERT_TRUE(rdzv.join(alone(), "", kT0).ok());
  std::vector<v1::RoundEvent> events;
  ASSERT_TRUE(rdzv.watch(
                      "job", "a", [&](const v1::RoundEvent& e) { events.push_back(e); }, kT0)
                  .ok());
  v1::MasterPortRequest port;
  port.set_job_id("job");
  port.set_agent_id("a");
  port.set_round(1);
  port.set_port(29500);
  ASSERT_TRUE(rdzv.publishMasterPort(port, kT0).ok());
  v1::WorkerReport report;
  report.set_job_id("job");
  report.set_agent_id("a");
  report.set_round(1);
  report.set_failure("rank 0 failed\n[gangway scheduler] I 00:00:00 job succeeded" +
                     std::string(1 << 20, 'x'));
  ASSERT_TRUE(rdzv.report(report, kT0).ok());
  ASSERT_FALSE(events.empty());
  ASSERT_TRUE(events.back().has_job_end());
  const std::string& reason = events.back().job_end().reason();
  EXPECT_EQ(reason.find('\n'), std::string::npos) << reason;
  EXPECT_NE(reason.find("rank 0 failed\\n[gangway scheduler]"), std::string::npos) << reason;
  EXPECT_LT(reason.size(), 2048u);
}

TEST_F(RendezvousLimitsTest, OnlyTheLastTwoRoundsLayoutsAreKept) {
  Rendezvous rdzv({});
  ASSERT_TRUE(rdzv.join(alone(/*max_restarts=*/10), "", kT0).ok());
  for (int round = 1; round <= 5; ++round) {
    ASSERT_EQ(rdzv.view("job")->round, round);
    v1::WorkerReport report;
    report.set_job_id("job");
    report.set_agent_id("a");
    report.set_round(round);
    report.set_failure("restart");
    ASSERT_TRUE(rdzv.report(report, kT0).ok());
    rdzv.tick(kT0);
  }
  auto store = *rdzv.store("job");
  EXPECT_FALSE(store->get(layoutKey(4)).has_value());
  EXPECT_TRUE(store->get(layoutKey(5)).has_value());
  EXPECT_TRUE(store->get(layoutKey(6)).has_value());
  EXPECT_EQ(store->numKeys(), 2);
}

}  // namespace
}  // namespace gangway::scheduler
