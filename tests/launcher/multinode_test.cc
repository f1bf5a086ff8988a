// Several `gangway run` agents on loopback forming one job through the control plane: a
// `gangway scheduler` daemon (remote mode) or an agent hosting it (host mode).
#include <filesystem>
#include <map>
#include <set>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "agent_harness.h"

namespace gangway::testing {
namespace {

// A `gangway scheduler --listen LISTEN` daemon; its address is read from its first line.
class Scheduler {
 public:
  explicit Scheduler(const std::string& listen = "127.0.0.1:0",
                     const std::vector<std::string>& extra = {}) {
    // A long heartbeat timeout: loaded CI machines must not lose agents to scheduling delays
    // (a killed agent is still noticed at once, through its stream).
    std::vector<std::string> args = {"scheduler", "--listen", listen, "--heartbeat-timeout", "15"};
    args.insert(args.end(), extra.begin(), extra.end());
    proc_ = AgentProcess::start(args);
    const bool up = proc_->waitForStdout(
        [](const std::string& out) { return out.find('\n') != std::string::npos; });
    EXPECT_TRUE(up) << proc_->err();
    const std::string line = proc_->out().substr(0, proc_->out().find('\n'));
    address_ = line.substr(line.rfind(' ') + 1);
  }
  ~Scheduler() {
    proc_->signal(SIGTERM);
    EXPECT_EQ(proc_->wait().exit_code, 0);
  }
  const std::string& address() const { return address_; }

 private:
  std::unique_ptr<AgentProcess> proc_;
  std::string address_;
};

std::vector<std::string> agentArgs(const std::string& endpoint, const std::string& nnodes,
                                   const std::string& script, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"run",    "--nnodes",       nnodes, "--nproc-per-node",
                                   "1",      "--rdzv-backend", "c10d", "--rdzv-endpoint",
                                   endpoint, "--rdzv-id",      "job"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.insert(args.end(), {"--no-python", "/bin/bash", "-c", script});
  return args;
}

int freePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool printed(const AgentProcess& agent, const std::string& text) {
  return agent.out().find(text) != std::string::npos;
}

TEST(MultiNodeTest, FourAgentsFormOneGang) {
  Scheduler sched;
  std::vector<std::unique_ptr<AgentProcess>> agents;
  for (int i = 0; i < 4; ++i) {
    agents.push_back(AgentProcess::start(
        agentArgs(sched.address(), "4",
                  "echo rank=$RANK world=$WORLD_SIZE node=$GROUP_RANK nodes=$GROUP_WORLD_SIZE "
                  "master=$MASTER_ADDR:$MASTER_PORT store=$GANGWAY_STORE")));
  }
  std::set<std::string> ranks, masters;
  for (auto& agent : agents) {
    const AgentResult r = agent->wait();
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto lines = splitLines(r.out);
    ASSERT_EQ(lines.size(), 1u) << r.out;
    const std::string& line = lines[0];
    ranks.insert(line.substr(line.find("rank=") + 5, 1));
    masters.insert(line.substr(line.find("master=")));
    EXPECT_NE(line.find("world=4 "), std::string::npos) << line;
    EXPECT_NE(line.find("nodes=4 "), std::string::npos) << line;
    EXPECT_NE(line.find("store=" + sched.address()), std::string::npos) << line;
  }
  EXPECT_EQ(ranks, (std::set<std::string>{"0", "1", "2", "3"}));
  EXPECT_EQ(masters.size(), 1u) << "every node must see the same MASTER_ADDR:MASTER_PORT";
}

// kill -9 of one agent: the survivors re-form with one node fewer.
TEST(MultiNodeTest, LostAgentScalesDown) {
  Scheduler sched;
  const std::string script =
      "echo round=$GANGWAY_ROUND world=$WORLD_SIZE; [ $WORLD_SIZE = 3 ] && exit 0; "
      "exec sleep 300";
  std::vector<std::unique_ptr<AgentProcess>> agents;
  for (int i = 0; i < 4; ++i)
    agents.push_back(AgentProcess::start(agentArgs(sched.address(), "3:4", script)));
  for (auto& a : agents) {
    ASSERT_TRUE(a->waitForStdout([](const std::string& o) {
      return o.find("world=4") != std::string::npos;
    })) << a->err();
  }
  agents[1]->signal(SIGKILL);
  EXPECT_EQ(agents[1]->wait().exit_code, 128 + SIGKILL);
  EXPECT_TRUE(waitForNoMarkedProcesses(agents[1]->marker(), 30s).empty());
  for (int i : {0, 2, 3}) {
    const AgentResult r = agents[i]->wait();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("world=3"), std::string::npos) << r.out;
  }
}

TEST(MultiNodeTest, NewAgentBelowMaxScalesUp) {
  Scheduler sched;
  const std::string script =
      "echo world=$WORLD_SIZE; [ $WORLD_SIZE = 3 ] && exit 0; exec sleep 300";
  std::vector<std::unique_ptr<AgentProcess>> agents;
  for (int i = 0; i < 2; ++i)
    agents.push_back(AgentProcess::start(agentArgs(sched.address(), "2:3", script)));
  for (auto& a : agents)
    ASSERT_TRUE(a->waitForStdout(
        [](const std::string& o) { return o.find("world=2") != std::string::npos; }));
  agents.push_back(AgentProcess::start(agentArgs(sched.address(), "2:3", script)));
  for (auto& a : agents) {
    const AgentResult r = a->wait();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("world=3"), std::string::npos);
  }
}

TEST(MultiNodeTest, GracefulLeaveLetsTheOthersContinue) {
  Scheduler sched;
  const std::string script =
      "echo world=$WORLD_SIZE; [ $WORLD_SIZE = 2 ] && exit 0; exec sleep 300";
  std::vector<std::unique_ptr<AgentProcess>> agents;
  for (int i = 0; i < 3; ++i)
    agents.push_back(AgentProcess::start(agentArgs(sched.address(), "2:3", script)));
  for (auto& a : agents)
    ASSERT_TRUE(a->waitForStdout(
        [](const std::string& o) { return o.find("world=3") != std::string::npos; }));
  agents[0]->signal(SIGTERM);
  const AgentResult left = agents[0]->wait();
  EXPECT_EQ(left.exit_code, 128 + SIGTERM) << left.err;
  EXPECT_NE(left.err.find("leaving the job"), std::string::npos) << left.err;
  for (int i : {1, 2}) {
    const AgentResult r = agents[i]->wait();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("world=2"), std::string::npos);
  }
}

TEST(MultiNodeTest, ALeavingNodeCostsTheOthersNoRestart) {
  // A pod deletion: SIGTERM to one agent while its workers train with the others'. Its workers'
  // exit breaks the others' collectives (played here: they fail once a file appears, which the
  // leaving worker writes when it gets SIGTERM). The agent leaves the rendezvous before it
  // signals its workers, so those failures come after the round ended and cost no restart:
  // with --max-restarts 0 the two others still re-form and finish.
  Scheduler sched;
  char dir_template[] = "/tmp/gangway-leave-XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  const std::string gone = dir + "/gone";
  const std::string script =
      "echo world=$WORLD_SIZE; [ $WORLD_SIZE = 2 ] && exit 0; "
      "if [ \"$LEAVER\" = 1 ]; then trap 'touch " +
      gone +
      "; sleep 1; exit 143' TERM; "
      "while :; do sleep 0.05; done; fi; "
      "while [ ! -e " +
      gone + " ]; do sleep 0.02; done; echo peer lost; exit 1";
  std::vector<std::unique_ptr<AgentProcess>> agents;
  for (int i = 0; i < 3; ++i) {
    agents.push_back(AgentProcess::start(agentArgs(sched.address(), "2:3", script),
                                         {{"LEAVER", i == 0 ? "1" : "0"}}));
  }
  for (auto& a : agents)
    ASSERT_TRUE(a->waitForStdout(
        [](const std::string& o) { return o.find("world=3") != std::string::npos; }));
  agents[0]->signal(SIGTERM);
  const AgentResult left = agents[0]->wait();
  EXPECT_EQ(left.exit_code, 128 + SIGTERM) << left.err;
  for (int i : {1, 2}) {
    const AgentResult r = agents[i]->wait();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("world=2"), std::string::npos) << r.out;
  }
  std::filesystem::remove_all(dir);
}

TEST(MultiNodeTest, WorkerFailureRestartsEveryAgentsWorkers) {
  Scheduler sched;
  const std::string script =
      "echo attempt=$TORCHELASTIC_RESTART_COUNT rank=$RANK; "
      "if [ $RANK = 1 ] && [ $TORCHELASTIC_RESTART_COUNT = 0 ]; then exit 3; fi; "
      "[ $TORCHELASTIC_RESTART_COUNT = 1 ] && exit 0; exec sleep 300";
  auto a = AgentProcess::start(agentArgs(sched.address(), "2", script, {"--max-restarts", "1"}));
  auto b = AgentProcess::start(agentArgs(sched.address(), "2", script, {"--max-restarts", "1"}));
  for (auto* agent : {a.get(), b.get()}) {
    const AgentResult r = agent->wait();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("attempt=1"), std::string::npos) << r.out;
  }
}

TEST(MultiNodeTest, SpentRestartsFailEveryAgent) {
  Scheduler sched;
  const std::string script = "if [ $RANK = 1 ]; then exit 3; fi; exec sleep 300";
  auto a = AgentProcess::start(agentArgs(sched.address(), "2", script));
  auto b = AgentProcess::start(agentArgs(sched.address(), "2", script));
  const AgentResult ra = a->wait();
  const AgentResult rb = b->wait();
  // The agent whose worker failed exits with the worker's code; the other with 1.
  EXPECT_EQ(std::set<int>({ra.exit_code, rb.exit_code}), (std::set<int>{1, 3}));
  for (const auto* r : {&ra, &rb}) {
    EXPECT_NE(r->err.find("failed: workers failed on agent"), std::string::npos) << r->err;
  }
}

TEST(MultiNodeTest, BelowMinTheJobFailsAtJoinTimeout) {
  const std::string endpoint = "127.0.0.1:" + std::to_string(freePort());
  const AgentResult r =
      runAgent(agentArgs(endpoint, "2", "exit 0", {"--rdzv-conf", "join_timeout=1"}));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("only 1 of the 2 nodes that --nnodes 2 needs joined job 'job' within "
                       "join_timeout (1s)"),
            std::string::npos)
      << r.err;
}

TEST(MultiNodeTest, UnreachableEndpointFailsWithOneLine) {
  const std::string endpoint = "127.0.0.1:" + std::to_string(freePort());
  const AgentResult r =
      runAgent(agentArgs(endpoint, "2", "exit 0", {"--rdzv-conf", "is_host=false,join_timeout=1"}));
  EXPECT_EQ(r.exit_code, 2);
  const auto lines = splitLines(r.err);
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines.back().find("gangway run: error: cannot reach the rendezvous at " + endpoint),
            std::string::npos)
      << r.err;
}

TEST(MultiNodeTest, DisagreeingAgentsAreRefused) {
  Scheduler sched;
  TempDir tmp;
  writeFile(tmp.file("token-a"), "alpha\n", 0600);
  writeFile(tmp.file("token-b"), "bravo\n", 0600);
  auto first = AgentProcess::start(agentArgs(sched.address(), "2", "exit 0",
                                             {"--rdzv-conf", "token_file=" + tmp.file("token-a")}));
  ASSERT_TRUE(first->waitForStderr([](const std::string& err) {
    return err.find("joined job job") != std::string::npos;
  })) << first->err();
  const AgentResult wrong_token = runAgent(agentArgs(
      sched.address(), "2", "exit 0", {"--rdzv-conf", "token_file=" + tmp.file("token-b")}));
  EXPECT_EQ(wrong_token.exit_code, 2);
  EXPECT_NE(wrong_token.err.find("wrong or missing token for job 'job'"), std::string::npos)
      << wrong_token.err;
  EXPECT_EQ(wrong_token.err.find("bravo"), std::string::npos) << "secrets are never printed";
  EXPECT_EQ(wrong_token.err.find("alpha"), std::string::npos);
  const AgentResult wrong_nnodes = runAgent(agentArgs(
      sched.address(), "3", "exit 0", {"--rdzv-conf", "token_file=" + tmp.file("token-a")}));
  EXPECT_EQ(wrong_nnodes.exit_code, 2);
  EXPECT_NE(wrong_nnodes.err.find("--nnodes 3 disagrees with job 'job', which has --nnodes 2"),
            std::string::npos)
      << wrong_nnodes.err;
  first->signal(SIGTERM);
  EXPECT_EQ(first->wait().exit_code, 128 + SIGTERM);
}

// torchrun's static rendezvous: node ranks come from --node-rank, node 0 hosts at --master-addr.
TEST(MultiNodeTest, StaticRendezvousHonoursNodeRanks) {
  const std::string port = std::to_string(freePort());
  auto agent = [&](const char* node_rank) {
    return AgentProcess::start({"run", "--nnodes", "2", "--nproc-per-node", "2", "--node-rank",
                                node_rank, "--master-addr", "127.0.0.1", "--master-port", port,
                                "--no-python", "/bin/bash", "-c",
                                "echo rank=$RANK group=$GROUP_RANK world=$WORLD_SIZE"});
  };
  auto second = agent("1");  // starts first, waits for node 0 (join retries with backoff)
  auto first = agent("0");
  const AgentResult r0 = first->wait();
  const AgentResult r1 = second->wait();
  ASSERT_EQ(r0.exit_code, 0) << r0.err;
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  EXPECT_EQ(rankLines(r0.out, 1), std::vector<std::string>{"rank=1 group=0 world=4"});
  EXPECT_EQ(rankLines(r1.out, 2), std::vector<std::string>{"rank=2 group=1 world=4"});
  EXPECT_EQ(rankLines(r1.out, 3), std::vector<std::string>{"rank=3 group=1 world=4"});
}

TEST(MultiNodeTest, TwoAgentsOverIpv6) {
  Scheduler sched("[::1]:0");
  const std::string& address = sched.address();
  ASSERT_EQ(address.rfind("[::1]:", 0), 0u) << address;
  const std::string script = "echo rank=$RANK master=$MASTER_ADDR";
  auto a = AgentProcess::start(agentArgs(address, "2", script));
  auto b = AgentProcess::start(agentArgs(address, "2", script));
  for (auto* agent : {a.get(), b.get()}) {
    const AgentResult r = agent->wait();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("master=::1"), std::string::npos) << r.out;
  }
}

TEST(MultiNodeTest, TlsControlPlane) {
  TempDir tmp;
  const std::string cert = tmp.file("cert.pem");
  const std::string key = tmp.file("key.pem");
  const std::string make_cert =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -addext "
      "subjectAltName=IP:127.0.0.1 -keyout " +
      key + " -out " + cert + " 2>/dev/null";
  ASSERT_EQ(std::system(make_cert.c_str()), 0) << "openssl is needed (scripts/deps.sh)";
  Scheduler sched("127.0.0.1:0", {"--tls-cert", cert, "--tls-key", key});
  const std::string& address = sched.address();
  // Without the CA, an agent cannot talk to the control plane.
  const AgentResult plain =
      runAgent(agentArgs(address, "1", "exit 0", {"--rdzv-conf", "is_host=false,join_timeout=1"}));
  EXPECT_EQ(plain.exit_code, 2) << plain.err;
  EXPECT_NE(plain.err.find("cannot reach the rendezvous"), std::string::npos) << plain.err;
  // With it, the job runs.
  const AgentResult tls =
      runAgent(agentArgs(address, "1", "echo rank=$RANK", {"--rdzv-conf", "tls_ca=" + cert}));
  EXPECT_EQ(tls.exit_code, 0) << tls.err;
  EXPECT_EQ(tls.out, "[rank0]:rank=0\n");
}

TEST(MultiNodeTest, NodeRanksFollowTheAgentsNetworkPaths) {
  // Four agents on two leaves, alternating: node ranks 0-1 share one leaf, 2-3 the other.
  Scheduler sched;
  const char* leaves[] = {"spine1/leaf2", "spine1/leaf1", "spine1/leaf2", "spine1/leaf1"};
  std::vector<std::unique_ptr<AgentProcess>> agents;
  for (int i = 0; i < 4; ++i) {
    agents.push_back(AgentProcess::start(
        agentArgs(sched.address(), "4", "echo node=$GROUP_RANK", {"--topology", "off"}),
        {{"GANGWAY_NETWORK_PATH", leaves[i]}}));
  }
  std::map<int, std::string> leaf_of_rank;
  for (int i = 0; i < 4; ++i) {
    const auto r = agents[static_cast<std::size_t>(i)]->wait();
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto at = r.out.find("node=");
    ASSERT_NE(at, std::string::npos) << r.out;
    leaf_of_rank[std::stoi(r.out.substr(at + 5))] = leaves[i];
  }
  ASSERT_EQ(leaf_of_rank.size(), 4U);
  EXPECT_EQ(leaf_of_rank[0], "spine1/leaf1");
  EXPECT_EQ(leaf_of_rank[1], "spine1/leaf1");
  EXPECT_EQ(leaf_of_rank[2], "spine1/leaf2");
  EXPECT_EQ(leaf_of_rank[3], "spine1/leaf2");
}

}  // namespace
}  // namespace gangway::testing
