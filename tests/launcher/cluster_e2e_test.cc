// The cluster scheduler end to end: `gangway scheduler --data-dir`, pool agents (`gangway agent`)
// that run the jobs as `gangway run`, and the client commands, all as real processes on loopback.
// State is read over the Cluster gRPC service (or `gangway jobs --json`); every wait has a
// deadline and wakes on the processes' output, or polls the scheduler's state between its log
// lines.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/time/clock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "gangway/scheduler/client/channel.h"
#include "gangway/scheduler/server.h"
#include "gangway/v1/cluster.grpc.pb.h"

#include "agent_harness.h"

namespace gangway::testing {
namespace {

using Clock = std::chrono::steady_clock;
using JobMap = std::map<std::string, v1::JobStatus>;

constexpr auto npos = std::string::npos;

// Whether `pid`, a child of this process, has exited. Does not reap it.
bool hasExited(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
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

std::unique_ptr<grpc::ClientContext> callContext(const std::string& token = "") {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) ctx->AddMetadata(scheduler::kTokenMetadata, token);
  return ctx;
}

std::unique_ptr<v1::Cluster::Stub> clusterStub(const std::string& address) {
  auto channel = scheduler::makeChannel({.address = address});
  EXPECT_TRUE(channel.ok()) << channel.status();
  return channel.ok() ? v1::Cluster::NewStub(*channel) : nullptr;
}

std::string describe(const JobMap& jobs) {
  std::vector<std::string> parts;
  for (const auto& [id, j] : jobs) {
    parts.push_back(absl::StrCat(id, ": ", v1::JobState_Name(j.state()), " on [",
                                 absl::StrJoin(j.nodes(), ","), "] round ", j.round(), " (",
                                 j.reason(), ")"));
  }
  return parts.empty() ? "no jobs" : absl::StrJoin(parts, "; ");
}

// A `gangway scheduler --data-dir` process; up() once it printed its address.
class SchedulerProcess {
 public:
  SchedulerProcess(const std::string& listen, const std::string& data_dir,
                   const std::vector<std::string>& extra = {}) {
    // A long heartbeat timeout: a loaded machine must not lose agents to scheduling delays (a
    // killed agent is noticed at once anyway, through its streams).
    std::vector<std::string> args = {
        "scheduler", "--listen", listen, "--data-dir", data_dir, "--heartbeat-timeout", "10"};
    args.insert(args.end(), extra.begin(), extra.end());
    for (size_t i = 0; i + 1 < extra.size(); ++i) {
      // The listings need the admin token when the scheduler has one.
      if (extra[i] == "--admin-token-file") admin_token_ = splitLines(readFile(extra[i + 1])).at(0);
    }
    proc_ = AgentProcess::start(args);
    const bool line =
        proc_->waitForStdout([](const std::string& out) { return out.find('\n') != npos; }, 30s);
    const std::string prefix = "gangway scheduler listening on ";
    if (line && proc_->out().rfind(prefix, 0) == 0) {
      const std::string rest = proc_->out().substr(prefix.size());
      address_ = rest.substr(0, rest.find_first_of(" \n"));
      stub_ = clusterStub(address_);
    }
  }
  // Stops it with SIGTERM, which must end it cleanly, unless the test stopped it already.
  ~SchedulerProcess() {
    stub_.reset();  // closes the connection: the scheduler's shutdown waits for open ones
    if (stopped_ || !up()) return;
    const bool exited = hasExited(proc_->pid());
    if (!exited) proc_->signal(SIGTERM);
    const AgentResult r = proc_->wait();
    EXPECT_FALSE(exited) << "the scheduler exited on its own:\n" << r.err;
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }

  bool up() const { return !address_.empty(); }
  const std::string& address() const { return address_; }
  AgentProcess& proc() { return *proc_; }
  v1::Cluster::Stub& stub() { return *stub_; }

  void kill9() {
    proc_->signal(SIGKILL);
    EXPECT_EQ(proc_->wait().exit_code, 128 + SIGKILL);
    stopped_ = true;
  }
  AgentResult stop() {
    proc_->signal(SIGTERM);
    return finish();
  }
  // Waits for it to exit (it failed to start, or was told to stop).
  AgentResult finish() {
    stopped_ = true;
    return proc_->wait(30s);
  }

  // Every job (ended ones too), by id; empty if the call failed.
  JobMap jobs() {
    v1::ListJobsRequest req;
    req.set_all(true);
    v1::ListJobsResponse resp;
    auto ctx = callContext(admin_token_);
    if (!stub_->ListJobs(ctx.get(), req, &resp).ok()) return {};
    JobMap out;
    for (const v1::JobStatus& j : resp.jobs()) out[j.job_id()] = j;
    return out;
  }
  std::map<std::string, v1::NodeStatus> nodes() {
    v1::ListNodesResponse resp;
    auto ctx = callContext();
    if (!stub_->ListNodes(ctx.get(), {}, &resp).ok()) return {};
    std::map<std::string, v1::NodeStatus> out;
    for (const v1::NodeStatus& n : resp.nodes()) out[n.node_id()] = n;
    return out;
  }

  // Polls the scheduler until pred(jobs) holds: between two polls it waits for its next log line,
  // at most 200 ms. False at the deadline, or at once if the scheduler has exited.
  bool waitForJobs(const std::function<bool(const JobMap&)>& pred,
                   std::chrono::milliseconds timeout = 60s) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      last_ = jobs();
      if (pred(last_)) return true;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0 || hasExited(proc_->pid())) return false;
      const size_t seen = proc_->err().size();
      proc_->waitForStderr([seen](const std::string& err) { return err.size() > seen; },
                           std::min<std::chrono::milliseconds>(left, 200ms));
    }
  }
  // The jobs as the last waitForJobs() saw them, for failure messages.
  std::string lastSeen() const { return describe(last_); }
  const JobMap& last() const { return last_; }

 private:
  std::unique_ptr<AgentProcess> proc_;
  std::string address_;
  std::unique_ptr<v1::Cluster::Stub> stub_;
  std::string admin_token_;
  JobMap last_;
  bool stopped_ = false;
};

// A scheduler on a port picked here (pool agents must find a restarted one at the same address):
// tries a few free ports, since another process may take one between its pick and the bind.
std::unique_ptr<SchedulerProcess> startOnFixedPort(const std::string& data_dir, int* port) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    *port = freePort();
    auto s = std::make_unique<SchedulerProcess>(absl::StrCat("127.0.0.1:", *port), data_dir);
    if (s->up()) return s;
    std::printf("no scheduler on port %d (taken?), trying another: %s", *port,
                s->finish().err.c_str());
  }
  return nullptr;
}

bool running(const JobMap& jobs, const std::string& id, int nodes) {
  auto it = jobs.find(id);
  return it != jobs.end() && it->second.state() == v1::RUNNING &&
         it->second.nodes_size() == nodes && it->second.round() > 0;
}

int64_t roundOf(const JobMap& jobs, const std::string& id) {
  auto it = jobs.find(id);
  return it == jobs.end() ? -1 : it->second.round();
}

bool inState(const JobMap& jobs, const std::string& id, v1::JobState state) {
  auto it = jobs.find(id);
  return it != jobs.end() && it->second.state() == state;
}

std::unique_ptr<AgentProcess> startPoolAgent(const std::string& scheduler, const std::string& node,
                                             const TempDir& dir) {
  return AgentProcess::start({"agent", "--scheduler", scheduler, "--node-id", node, "--address",
                              "127.0.0.1", "--work-dir", dir.file("work-" + node)});
}

// Waits for the agent's "registered" log line after byte `from` of its stderr.
bool registered(AgentProcess& agent, const std::string& node, size_t from = 0) {
  const std::string line = absl::StrCat("node ", node, " registered with the scheduler");
  return agent.waitForStderr([&](const std::string& err) { return err.find(line, from) != npos; },
                             30s);
}

// Waits until the agent printed `text` after byte `from` of its stdout.
bool printedAfter(AgentProcess& agent, size_t from, const std::string& text,
                  std::chrono::milliseconds timeout = 60s) {
  return agent.waitForStdout([&](const std::string& out) { return out.find(text, from) != npos; },
                             timeout);
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// Processes other than `except` that carry `marker` (AgentProcess's GANGWAY_TEST_MARKER).
std::vector<pid_t> markedProcesses(const std::string& marker, pid_t except) {
  const std::string needle = "GANGWAY_TEST_MARKER=" + marker + '\0';
  std::vector<pid_t> found;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != npos || std::stoi(name) == except) continue;
    const std::string env = readFile((e.path() / "environ").string());
    const std::string stat = readFile((e.path() / "stat").string());
    if (stat.find(") Z ") == npos && env.find(needle) != npos) found.push_back(std::stoi(name));
  }
  return found;
}

// Waits (on pidfds) until the agent is the only process left with its marker: the runs it
// started and their workers have all exited. Returns those still alive at the deadline.
std::vector<pid_t> waitForOnlyAgent(const AgentProcess& agent, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const std::vector<pid_t> found = markedProcesses(agent.marker(), agent.pid());
    if (found.empty()) return {};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || !waitForExit(found, left).empty()) return found;
  }
}

// The worker script: prints its place in the job once, then runs until `stop` exists.
std::string loopUntil(const std::string& stop, const std::string& first = "") {
  return absl::StrCat(first,
                      "echo $GANGWAY_JOB_ID start rank=$RANK world=$WORLD_SIZE; "
                      "while [ ! -e ",
                      stop, " ]; do sleep 0.1; done; echo $GANGWAY_JOB_ID done rank=$RANK");
}

std::vector<std::string> submitArgs(const std::string& scheduler, const std::string& name,
                                    const std::string& nnodes, const std::string& script,
                                    const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {"submit",   "--scheduler", scheduler,          "--name", name,
                                   "--nnodes", nnodes,        "--nproc-per-node", "1"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.insert(args.end(), {"--no-python", "/bin/sh", "-c", script});
  return args;
}

// Index of node "nK" in the agents' vector.
size_t agentIndex(const std::string& node) { return std::stoul(node.substr(1)) - 1; }

// 1. An elastic job on three pool agents: one is killed (the job shrinks), comes back (it grows),
// and a higher-priority job arrives (it shrinks to make room). Then both succeed, and nothing any
// agent started is left behind.
TEST(ClusterE2eTest, ElasticJobShrinksGrowsAndMakesRoom) {
  TempDir dir;
  SchedulerProcess sched("127.0.0.1:0", dir.file("state"), {"--min-resize-interval", "0"});
  ASSERT_TRUE(sched.up()) << sched.proc().err();
  std::vector<std::unique_ptr<AgentProcess>> agents;
  for (const char* node : {"n1", "n2", "n3"}) {
    agents.push_back(startPoolAgent(sched.address(), node, dir));
  }
  for (size_t i = 0; i < agents.size(); ++i) {
    ASSERT_TRUE(registered(*agents[i], absl::StrCat("n", i + 1))) << agents[i]->err();
  }

  const std::string stop = dir.file("stop");
  const AgentResult submitted = runAgent(submitArgs(sched.address(), "el", "1:3", loopUntil(stop)));
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  EXPECT_NE(submitted.out.find("submitted job el"), npos) << submitted.out;

  // All three nodes: one round of three workers with distinct ranks.
  ASSERT_TRUE(sched.waitForJobs([](const JobMap& j) { return running(j, "el", 3); }))
      << sched.lastSeen();
  std::set<std::string> ranks;
  for (auto& a : agents) {
    ASSERT_TRUE(printedAfter(*a, 0, "world=3")) << a->out() << a->err();
    for (const std::string& line : splitLines(a->out())) {
      const size_t at = line.find("el start rank=");
      if (at != npos && line.ends_with(" world=3")) ranks.insert(line.substr(at + 14, 1));
    }
  }
  EXPECT_EQ(ranks, (std::set<std::string>{"0", "1", "2"}));
  const int64_t round3 = roundOf(sched.last(), "el");

  // n3 is killed: its gangway run and workers die with it, the job goes on with two nodes.
  std::vector<size_t> from;
  for (auto& a : agents) from.push_back(a->out().size());
  agents[2]->signal(SIGKILL);
  EXPECT_EQ(agents[2]->wait().exit_code, 128 + SIGKILL);
  EXPECT_TRUE(waitForNoMarkedProcesses(agents[2]->marker(), 30s).empty())
      << "the killed agent's run or workers are still alive";
  ASSERT_TRUE(sched.waitForJobs([&](const JobMap& j) {
    return running(j, "el", 2) && roundOf(j, "el") > round3;
  })) << sched.lastSeen();
  for (const std::string& n : sched.last().at("el").nodes()) EXPECT_NE(n, "n3");
  for (size_t i : {0, 1}) {
    EXPECT_TRUE(printedAfter(*agents[i], from[i], "world=2")) << agents[i]->out();
  }
  const int64_t round2 = roundOf(sched.last(), "el");

  // n3 comes back under the same id: the job grows onto it again.
  for (size_t i = 0; i < agents.size(); ++i) from[i] = agents[i]->out().size();
  agents[2] = startPoolAgent(sched.address(), "n3", dir);
  from[2] = 0;
  ASSERT_TRUE(registered(*agents[2], "n3")) << agents[2]->err();
  ASSERT_TRUE(sched.waitForJobs([&](const JobMap& j) {
    return running(j, "el", 3) && roundOf(j, "el") > round2;
  })) << sched.lastSeen();
  for (size_t i = 0; i < agents.size(); ++i) {
    EXPECT_TRUE(printedAfter(*agents[i], from[i], "world=3")) << agents[i]->out();
  }
  const int64_t round3b = roundOf(sched.last(), "el");

  // A higher-priority job for two nodes: the elastic job shrinks to one to make room.
  for (size_t i = 0; i < agents.size(); ++i) from[i] = agents[i]->out().size();
  const AgentResult hi =
      runAgent(submitArgs(sched.address(), "hi", "2", loopUntil(stop), {"--priority", "10"}));
  ASSERT_EQ(hi.exit_code, 0) << hi.err;
  ASSERT_TRUE(sched.waitForJobs([&](const JobMap& j) {
    return running(j, "hi", 2) && running(j, "el", 1) && roundOf(j, "el") > round3b;
  })) << sched.lastSeen();
  const v1::JobStatus el = sched.last().at("el");
  const v1::JobStatus high = sched.last().at("hi");
  std::set<std::string> used(high.nodes().begin(), high.nodes().end());
  used.insert(el.nodes(0));
  EXPECT_EQ(used, (std::set<std::string>{"n1", "n2", "n3"})) << sched.lastSeen();
  for (const std::string& n : high.nodes()) {
    EXPECT_TRUE(printedAfter(*agents[agentIndex(n)], from[agentIndex(n)], "hi start"))
        << agents[agentIndex(n)]->out();
  }
  EXPECT_TRUE(
      printedAfter(*agents[agentIndex(el.nodes(0))], from[agentIndex(el.nodes(0))], "world=1"))
      << agents[agentIndex(el.nodes(0))]->out();

  // The workers finish: both jobs succeed.
  writeFile(stop, "");
  ASSERT_TRUE(sched.waitForJobs([](const JobMap& j) {
    return inState(j, "el", v1::SUCCEEDED) && inState(j, "hi", v1::SUCCEEDED);
  })) << sched.lastSeen();
  EXPECT_GE(sched.last().at("el").resizes(), 3) << sched.lastSeen();
  const AgentResult listed = runAgent({"jobs", "--scheduler", sched.address(), "--all", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  v1::ListJobsResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(listed.out, &parsed).ok()) << listed.out;
  ASSERT_EQ(parsed.jobs_size(), 2) << listed.out;
  for (const v1::JobStatus& j : parsed.jobs()) EXPECT_EQ(j.state(), v1::SUCCEEDED) << listed.out;

  // Every run and worker exited on its own; then the agents stop cleanly.
  for (auto& a : agents) {
    EXPECT_TRUE(printedAfter(*a, 0, "done rank=")) << a->out();
    EXPECT_TRUE(waitForOnlyAgent(*a, 30s).empty()) << "left behind by " << a->pid();
  }
  for (auto& a : agents) {
    a->signal(SIGTERM);
    const AgentResult r = a->wait();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(waitForNoMarkedProcesses(a->marker(), 30s).empty());
  }
}

// 2. The scheduler is killed and started again on its data directory and address: the job's
// agents and workers go on in the same round, without a restart, and the job then succeeds.
TEST(ClusterE2eTest, SchedulerRestartKeepsTheWorkersRunning) {
  TempDir dir;
  const std::string data = dir.file("state");
  int port = 0;
  auto sched = startOnFixedPort(data, &port);
  ASSERT_NE(sched, nullptr);
  std::vector<std::unique_ptr<AgentProcess>> agents;
  for (const char* node : {"n1", "n2"})
    agents.push_back(startPoolAgent(sched->address(), node, dir));
  for (size_t i = 0; i < agents.size(); ++i) {
    ASSERT_TRUE(registered(*agents[i], absl::StrCat("n", i + 1))) << agents[i]->err();
  }

  const std::string stop = dir.file("stop");
  v1::SubmitRequest req;
  req.mutable_spec()->set_name("keep");
  req.mutable_spec()->set_min_nodes(2);
  req.mutable_spec()->set_max_nodes(2);
  req.mutable_spec()->set_nproc_per_node(1);
  req.mutable_spec()->set_no_python(true);
  for (const std::string& a :
       {std::string("/bin/sh"), std::string("-c"),
        loopUntil(stop, absl::StrCat("echo $$ >> ", dir.path(), "/pid.$RANK; "))}) {
    req.mutable_spec()->add_command(a);
  }
  v1::SubmitResponse resp;
  auto ctx = callContext();
  const grpc::Status submitted = sched->stub().Submit(ctx.get(), req, &resp);
  ASSERT_TRUE(submitted.ok()) << submitted.error_message();
  EXPECT_EQ(resp.job_id(), "keep");
  EXPECT_FALSE(resp.token().empty());

  ASSERT_TRUE(sched->waitForJobs([](const JobMap& j) { return running(j, "keep", 2); }))
      << sched->lastSeen();
  for (auto& a : agents) ASSERT_TRUE(printedAfter(*a, 0, "keep start")) << a->out() << a->err();
  const int64_t round = roundOf(sched->last(), "keep");
  std::vector<std::string> pids;
  for (int rank : {0, 1}) {
    pids.push_back(readFile(dir.file(absl::StrCat("pid.", rank))));
    ASSERT_EQ(splitLines(pids.back()).size(), 1u) << pids.back();
  }

  std::vector<size_t> from;
  for (auto& a : agents) from.push_back(a->err().size());
  sched->kill9();
  // The same address: the agents know no other. Another process may have taken the port in the
  // meantime; then the test cannot go on.
  sched = std::make_unique<SchedulerProcess>(absl::StrCat("127.0.0.1:", port), data);
  ASSERT_TRUE(sched->up()) << "restart on port " << port << ": " << sched->finish().err;

  // The pool agents register again, and each `gangway run` joins its job again.
  for (size_t i = 0; i < agents.size(); ++i) {
    EXPECT_TRUE(registered(*agents[i], absl::StrCat("n", i + 1), from[i])) << agents[i]->err();
    EXPECT_TRUE(agents[i]->waitForStderr(
        [&](const std::string& err) { return err.find("joined job keep again", from[i]) != npos; },
        60s))
        << agents[i]->err();
  }
  ASSERT_TRUE(sched->proc().waitForStderr(
      [](const std::string& err) { return err.find("job keep: restored") != npos; }, 60s))
      << sched->proc().err();
  EXPECT_NE(sched->proc().err().find(
                absl::StrCat("job keep: restored, its 2 nodes go on with round ", round, "\n")),
            npos)
      << sched->proc().err();
  ASSERT_TRUE(sched->waitForJobs([](const JobMap& j) { return running(j, "keep", 2); }))
      << sched->lastSeen();
  EXPECT_EQ(roundOf(sched->last(), "keep"), round) << sched->lastSeen();
  const auto nodes = sched->nodes();
  ASSERT_EQ(nodes.size(), 2u);
  for (const auto& [id, n] : nodes) {
    EXPECT_TRUE(n.healthy()) << id;
    EXPECT_EQ(n.job_id(), "keep") << id;
  }

  // The workers are the ones that started before the restart, still running.
  for (int rank : {0, 1}) {
    EXPECT_EQ(readFile(dir.file(absl::StrCat("pid.", rank))), pids[rank]) << "rank " << rank;
    const pid_t pid = std::stoi(pids[rank]);
    const std::string stat = readFile(absl::StrCat("/proc/", pid, "/stat"));
    EXPECT_TRUE(!stat.empty() && stat.find(") Z ") == npos) << "worker " << pid << " is gone";
  }
  for (auto& a : agents) EXPECT_EQ(count(a->out(), "keep start"), 1u) << a->out();

  writeFile(stop, "");
  ASSERT_TRUE(sched->waitForJobs([](const JobMap& j) { return inState(j, "keep", v1::SUCCEEDED); }))
      << sched->lastSeen();
  for (auto& a : agents) {
    EXPECT_TRUE(printedAfter(*a, 0, "keep done")) << a->out();
    EXPECT_EQ(count(a->out(), "keep done"), 1u) << a->out();
    EXPECT_TRUE(waitForOnlyAgent(*a, 30s).empty());
    a->signal(SIGTERM);
    EXPECT_EQ(a->wait().exit_code, 0) << a->err();
  }
}

// 3. kill -9 of the scheduler while a client submits, resizes and cancels jobs, at a random point
// of each cycle: after every restart, each acknowledged operation is there, and nothing else (the
// one operation in flight at the kill may or may not be).
struct Op {
  enum class Kind { kSubmit, kResize, kCancel } kind;
  std::string job;
  int min_nodes = 0;
  int nodes = 0;  // the max for a submit, the new max for a resize
};

struct JobModel {
  int min_nodes = 0;
  int max_nodes = 0;
  bool cancelled = false;
};

void apply(const Op& op, std::map<std::string, JobModel>& model) {
  switch (op.kind) {
    case Op::Kind::kSubmit:
      model[op.job] = {.min_nodes = op.min_nodes, .max_nodes = op.nodes};
      break;
    case Op::Kind::kResize:
      model[op.job].max_nodes = op.nodes;
      model[op.job].min_nodes = std::min(model[op.job].min_nodes, op.nodes);
      break;
    case Op::Kind::kCancel:
      model[op.job].cancelled = true;
      break;
  }
}

// Whether `job` as listed is what `model` says.
bool matches(const v1::JobStatus& job, const JobModel& model) {
  return job.state() == (model.cancelled ? v1::CANCELLED : v1::PENDING) &&
         job.spec().min_nodes() == model.min_nodes && job.spec().max_nodes() == model.max_nodes;
}

std::string describe(const JobModel& m) {
  return absl::StrCat(m.cancelled ? "CANCELLED" : "PENDING", " ", m.min_nodes, ":", m.max_nodes);
}

std::string describe(const v1::JobStatus& j) {
  return absl::StrCat(v1::JobState_Name(j.state()), " ", j.spec().min_nodes(), ":",
                      j.spec().max_nodes());
}

// Sends operations one after another until told to stop or one fails.
class CrashClient {
 public:
  CrashClient(const std::string& address, std::map<std::string, JobModel>& model, uint64_t seed,
              int cycle)
      : stub_(clusterStub(address)), model_(model), rng_(seed), cycle_(cycle) {
    thread_ = std::thread([this] { run(); });
  }
  ~CrashClient() { stopAndJoin(); }

  // Waits until `n` operations were acknowledged.
  bool waitForAcks(int n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return acked_ >= n || done_; }) && acked_ >= n;
  }
  // Called before the scheduler is killed: from now on a failed call is the one in flight.
  void killing() {
    std::lock_guard lock(mu_);
    killing_ = true;
  }
  void stopAndJoin() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }
  // After stopAndJoin():
  int acked() const { return acked_; }
  const std::optional<Op>& inFlight() const { return in_flight_; }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  Op next() {
    std::vector<std::string> live;
    for (const auto& [id, m] : model_) {
      if (!m.cancelled) live.push_back(id);
    }
    const int dice = std::uniform_int_distribution<int>(0, 9)(rng_);
    Op op{};
    if (live.size() < 2 || dice < 5) {
      op.kind = Op::Kind::kSubmit;
      op.job = absl::StrCat("c", cycle_, "-j", submitted_++);
      op.min_nodes = std::uniform_int_distribution<int>(1, 2)(rng_);
      op.nodes = op.min_nodes + std::uniform_int_distribution<int>(0, 2)(rng_);
      return op;
    }
    op.job = live[std::uniform_int_distribution<size_t>(0, live.size() - 1)(rng_)];
    op.kind = dice < 8 ? Op::Kind::kResize : Op::Kind::kCancel;
    op.nodes = std::uniform_int_distribution<int>(1, 4)(rng_);
    return op;
  }

  grpc::Status send(const Op& op) {
    auto ctx = callContext();
    switch (op.kind) {
      case Op::Kind::kSubmit: {
        v1::SubmitRequest req;
        v1::JobSpec* spec = req.mutable_spec();
        spec->set_name(op.job);
        spec->set_min_nodes(op.min_nodes);
        spec->set_max_nodes(op.nodes);
        spec->set_nproc_per_node(1);
        spec->set_no_python(true);
        spec->add_command("/bin/true");
        v1::SubmitResponse resp;
        return stub_->Submit(ctx.get(), req, &resp);
      }
      case Op::Kind::kResize: {
        v1::ResizeRequest req;
        req.set_job_id(op.job);
        req.set_nodes(op.nodes);
        v1::ResizeResponse resp;
        return stub_->Resize(ctx.get(), req, &resp);
      }
      case Op::Kind::kCancel: {
        v1::CancelRequest req;
        req.set_job_id(op.job);
        v1::CancelResponse resp;
        return stub_->Cancel(ctx.get(), req, &resp);
      }
    }
    return grpc::Status::CANCELLED;
  }

  void run() {
    for (;;) {
      const Op op = next();
      {
        std::lock_guard lock(mu_);
        if (stop_) break;
        in_flight_ = op;
      }
      const grpc::Status s = send(op);
      std::lock_guard lock(mu_);
      if (!s.ok()) {
        // After the kill: the operation was in flight. Before it: a refusal the model did not
        // expect.
        if (!killing_) {
          errors_.push_back(absl::StrCat(op.job, ": ", s.error_code(), " ", s.error_message()));
        }
        break;
      }
      apply(op, model_);
      in_flight_.reset();
      ++acked_;
      cv_.notify_all();
    }
    std::lock_guard lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

  std::unique_ptr<v1::Cluster::Stub> stub_;
  std::map<std::string, JobModel>& model_;  // written by the thread only while it runs
  std::mt19937_64 rng_;
  const int cycle_;
  int submitted_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool killing_ = false;
  bool done_ = false;
  int acked_ = 0;
  std::optional<Op> in_flight_;
  std::vector<std::string> errors_;
  std::thread thread_;
};

TEST(ClusterE2eTest, CrashLoopKeepsEveryAcknowledgedOperation) {
  int cycles = 15;
  if (const char* c = std::getenv("GANGWAY_CRASH_CYCLES"); c != nullptr && *c != '\0') {
    cycles = std::atoi(c);
  }
  uint64_t seed = std::random_device()();
  if (const char* s = std::getenv("GANGWAY_CRASH_SEED"); s != nullptr && *s != '\0') {
    seed = std::strtoull(s, nullptr, 10);
  }
  std::printf("crash loop: %d cycles, seed %llu (GANGWAY_CRASH_SEED=%llu repeats the choices)\n",
              cycles, static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  std::mt19937_64 rng(seed);
  TempDir dir;
  const std::string data = dir.file("state");
  std::map<std::string, JobModel> model;
  int acked_total = 0;
  int verified_cycles = 0;
  int in_flight = 0;
  int in_flight_applied = 0;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    SCOPED_TRACE(absl::StrCat("cycle ", cycle, ", seed ", seed));
    {
      SchedulerProcess sched("127.0.0.1:0", data);
      ASSERT_TRUE(sched.up()) << sched.proc().err();
      const int kill_after = std::uniform_int_distribution<int>(1, 12)(rng);
      const std::chrono::microseconds delay(std::uniform_int_distribution<int>(0, 3000)(rng));
      CrashClient client(sched.address(), model, rng(), cycle);
      EXPECT_TRUE(client.waitForAcks(kill_after, 30s)) << sched.proc().err();
      // A random delay, not a wait for anything: it moves the kill across the next operation's
      // receipt, write and reply, so that the operation in flight is sometimes durable.
      std::this_thread::sleep_for(delay);
      client.killing();
      sched.kill9();
      client.stopAndJoin();
      EXPECT_TRUE(client.errors().empty()) << absl::StrJoin(client.errors(), "\n");
      acked_total += client.acked();
      // Verify with a fresh scheduler on the same directory.
      SchedulerProcess again("127.0.0.1:0", data);
      ASSERT_TRUE(again.up()) << again.proc().err();
      v1::ListJobsRequest req;
      req.set_all(true);
      v1::ListJobsResponse resp;
      auto ctx = callContext();
      ctx->set_wait_for_ready(true);
      ASSERT_TRUE(again.stub().ListJobs(ctx.get(), req, &resp).ok());
      const std::optional<Op>& op = client.inFlight();
      std::map<std::string, JobModel> applied = model;  // the model with the in-flight op done
      if (op.has_value()) apply(*op, applied);
      std::set<std::string> listed;
      bool op_applied = false;
      for (const v1::JobStatus& j : resp.jobs()) {
        listed.insert(j.job_id());
        auto it = model.find(j.job_id());
        auto with_op = applied.find(j.job_id());
        if (it == model.end() && with_op == applied.end()) {
          ADD_FAILURE() << "job " << j.job_id() << " was never submitted";
          continue;
        }
        const bool as_acked = it != model.end() && matches(j, it->second);
        const bool as_in_flight = op.has_value() && op->job == j.job_id() &&
                                  with_op != applied.end() && matches(j, with_op->second);
        EXPECT_TRUE(as_acked || as_in_flight)
            << "job " << j.job_id() << " is " << describe(j) << ", acknowledged as "
            << (it == model.end() ? "never submitted" : describe(it->second));
        if (as_in_flight && !as_acked) op_applied = true;
      }
      for (const auto& [id, m] : model) {
        EXPECT_TRUE(listed.contains(id)) << "acknowledged job " << id << " is missing";
      }
      in_flight += op.has_value() ? 1 : 0;
      if (op_applied) {
        model = applied;
        ++in_flight_applied;
      }
    }
    if (::testing::Test::HasFailure()) break;
    ++verified_cycles;
  }
  std::printf(
      "crash loop: %d cycles, %d acknowledged operations and %zu jobs verified; of %d operations "
      "in flight at the kill, %d were found applied\n",
      verified_cycles, acked_total, model.size(), in_flight, in_flight_applied);
  EXPECT_EQ(verified_cycles, cycles);
  EXPECT_GT(acked_total, 0);
}

// 4. Bad input: one line naming the flag, exit code 2, and nothing created.
TEST(ClusterE2eTest, BadSubmitIsRefusedAndCreatesNothing) {
  TempDir dir;
  SchedulerProcess sched("127.0.0.1:0", dir.file("state"));
  ASSERT_TRUE(sched.up()) << sched.proc().err();
  const std::string addr = sched.address();
  const std::vector<std::string> tail = {"--no-python", "/bin/true"};
  struct Case {
    std::vector<std::string> flags;
    std::string names;
  };
  const std::vector<Case> cases = {
      {{"--nnodes", "3:2"}, "--nnodes"},
      {{"--nproc-per-node", "0"}, "--nproc-per-node"},
      {{"--queue", "nosuchqueue"}, "--queue 'nosuchqueue'"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"submit", "--scheduler", addr, "--name", "bad"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    args.insert(args.end(), tail.begin(), tail.end());
    const AgentResult r = runAgent(args);
    EXPECT_EQ(r.exit_code, 2) << c.names << ": " << r.err;
    EXPECT_EQ(splitLines(r.err).size(), 1u) << r.err;
    EXPECT_EQ(r.err.rfind("gangway submit: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.names), npos) << r.err;
  }
  const AgentResult no_command = runAgent({"submit", "--scheduler", addr, "--name", "bad"});
  EXPECT_EQ(no_command.exit_code, 2) << no_command.err;
  EXPECT_EQ(splitLines(no_command.err).size(), 1u) << no_command.err;
  EXPECT_NE(no_command.err.find("command is missing"), npos) << no_command.err;

  auto listed = [&] {
    const AgentResult r = runAgent({"jobs", "--scheduler", addr, "--all", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    v1::ListJobsResponse parsed;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok()) << r.out;
    return parsed;
  };
  EXPECT_EQ(listed().jobs_size(), 0) << listed().DebugString();
  EXPECT_TRUE(sched.jobs().empty()) << describe(sched.jobs());

  // The same listing shows a job that was created.
  const AgentResult good = runAgent({"submit", "--scheduler", addr, "--name", "good", "--nnodes",
                                     "1:2", "--no-python", "/bin/true"});
  ASSERT_EQ(good.exit_code, 0) << good.err;
  const v1::ListJobsResponse after = listed();
  ASSERT_EQ(after.jobs_size(), 1) << after.DebugString();
  EXPECT_EQ(after.jobs(0).job_id(), "good");
  EXPECT_EQ(after.jobs(0).state(), v1::PENDING);

  const AgentResult cancel = runAgent({"cancel", "--scheduler", addr, "nosuchjob"});
  EXPECT_NE(cancel.exit_code, 0);
  EXPECT_NE(cancel.err.find("'nosuchjob'"), npos) << cancel.err;
  EXPECT_EQ(splitLines(cancel.err).size(), 1u) << cancel.err;
}

std::map<std::string, std::string> directoryContents(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    files[e.path().filename().string()] = readFile(e.path().string());
  }
  return files;
}

TEST(ClusterE2eTest, CorruptDataDirIsRefusedAndLeftAsItIs) {
  TempDir dir;
  const std::string data = dir.file("state");
  {
    SchedulerProcess sched("127.0.0.1:0", data);
    ASSERT_TRUE(sched.up()) << sched.proc().err();
    for (const char* name : {"a", "b"}) {
      const AgentResult r = runAgent(
          {"submit", "--scheduler", sched.address(), "--name", name, "--no-python", "/bin/true"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    const AgentResult stopped = sched.stop();
    ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
  }
  // Garbage over the first record's payload (8-byte magic, 8-byte header), with records after it.
  const std::string wal = data + "/wal";
  std::string content = readFile(wal);
  ASSERT_GT(content.size(), 64u);
  content.replace(16, 8, "garbage!");
  writeFile(wal, content, 0600);
  const auto before = directoryContents(data);

  const AgentResult r =
      runAgent({"scheduler", "--listen", "127.0.0.1:0", "--data-dir", data}, {}, 30s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out.find("listening"), npos) << r.out;
  std::vector<std::string> errors;
  for (const std::string& line : splitLines(r.err)) {
    if (line.find("error") != npos) errors.push_back(line);
  }
  ASSERT_EQ(errors.size(), 1u) << r.err;
  EXPECT_EQ(errors[0].rfind("gangway scheduler: error: ", 0), 0u) << r.err;
  EXPECT_NE(errors[0].find(wal), npos) << r.err;
  EXPECT_EQ(directoryContents(data), before) << "the data directory was changed";
}

// GET PATH from 127.0.0.1:PORT; returns "STATUS BODY" (e.g. "200 ok\n"), or "" on failure.
std::string httpGet(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return "";
  }
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  (void)!::write(fd, req.data(), req.size());
  std::string resp;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) > 0;) resp.append(buf, static_cast<size_t>(n));
  ::close(fd);
  const size_t sp = resp.find(' ');
  const size_t body = resp.find("\r\n\r\n");
  if (sp == npos || body == npos) return "";
  return resp.substr(sp + 1, 3) + " " + resp.substr(body + 4);
}

TEST(ClusterE2eTest, ConfigFileAndHealthEndpoints) {
  // As deploy/scheduler runs it: settings from a TOML file, probes on the HTTP port.
  TempDir dir;
  writeFile(dir.file("scheduler.toml"),
            "listen = \"127.0.0.1:0\"\nmetrics-listen = \"127.0.0.1:0\"\n"
            "queue = [\"default=0\", \"prod=16\"]\nmin-resize-interval = 30\n",
            0644);
  auto sched = AgentProcess::start(
      {"scheduler", "--config", dir.file("scheduler.toml"), "--data-dir", dir.file("state")});
  ASSERT_TRUE(sched->waitForStdout(
      [](const std::string& out) { return out.find("listening on") != npos; }, 30s))
      << sched->err();
  const std::string first = sched->out().substr(0, sched->out().find('\n'));
  ASSERT_NE(first.find("HTTP (/metrics, /healthz, /readyz) on port "), npos) << first;
  const int port = std::stoi(first.substr(first.rfind(' ') + 1));
  EXPECT_NE(sched->out().find("listening on 127.0.0.1:"), npos) << sched->out();  // from the file
  EXPECT_EQ(httpGet(port, "/healthz"), "200 ok\n");
  EXPECT_EQ(httpGet(port, "/readyz"), "200 serving\n");
  const std::string metrics = httpGet(port, "/metrics");
  EXPECT_EQ(metrics.rfind("200 ", 0), 0u) << metrics;
  EXPECT_NE(metrics.find("queue=\"prod\""), npos) << metrics;  // the file's queue
  EXPECT_EQ(httpGet(port, "/nope").substr(0, 3), "404");
  sched->signal(SIGTERM);
  EXPECT_EQ(sched->wait().exit_code, 0);

  // A misspelt key is refused with one line, before anything is opened.
  writeFile(dir.file("bad.toml"), "queues = [\"prod=16\"]\n", 0644);
  const AgentResult bad = runAgent(
      {"scheduler", "--config", dir.file("bad.toml"), "--data-dir", dir.file("state2")}, {}, 30s);
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("gangway scheduler: error: "), npos) << bad.err;
  EXPECT_NE(bad.err.find("queues"), npos) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("state2")));
}

TEST(ClusterE2eTest, TokensGuardSubmitAndCancel) {
  TempDir dir;
  writeFile(dir.file("admin.tok"), "s3cret-admin\n", 0600);
  SchedulerProcess sched("127.0.0.1:0", dir.file("state"),
                         {"--admin-token-file", dir.file("admin.tok")});
  ASSERT_TRUE(sched.up()) << sched.proc().err();
  const std::string addr = sched.address();

  const AgentResult anon =
      runAgent({"submit", "--scheduler", addr, "--name", "anon", "--no-python", "/bin/true"});
  EXPECT_EQ(anon.exit_code, 1) << anon.err;
  EXPECT_NE(anon.err.find("needs the admin token"), npos) << anon.err;
  v1::SubmitRequest req;
  req.mutable_spec()->set_name("anon");
  req.mutable_spec()->set_min_nodes(1);
  req.mutable_spec()->set_max_nodes(1);
  req.mutable_spec()->set_nproc_per_node(1);
  req.mutable_spec()->add_command("/bin/true");
  v1::SubmitResponse resp;
  auto ctx = callContext("not-the-token");
  EXPECT_EQ(sched.stub().Submit(ctx.get(), req, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(sched.jobs().empty()) << describe(sched.jobs());

  for (const char* name : {"a", "b"}) {
    const AgentResult r = runAgent(
        {"submit", "--scheduler", addr, "--token-file", dir.file("admin.tok"), "--name", name,
         "--token-out", dir.file(absl::StrCat(name, ".tok")), "--no-python", "/bin/true"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const std::string token_a = splitLines(readFile(dir.file("a.tok"))).at(0);
  EXPECT_FALSE(token_a.empty());

  // Job a's token cannot cancel job b...
  const AgentResult wrong =
      runAgent({"cancel", "--scheduler", addr, "--token-file", dir.file("a.tok"), "b"});
  EXPECT_EQ(wrong.exit_code, 1) << wrong.err;
  EXPECT_NE(wrong.err.find("job 'b'"), npos) << wrong.err;
  EXPECT_TRUE(inState(sched.jobs(), "b", v1::PENDING)) << describe(sched.jobs());
  // ...but cancels job a.
  const AgentResult right =
      runAgent({"cancel", "--scheduler", addr, "--token-file", dir.file("a.tok"), "a"});
  EXPECT_EQ(right.exit_code, 0) << right.err;
  const JobMap jobs = sched.jobs();
  EXPECT_TRUE(inState(jobs, "a", v1::CANCELLED)) << describe(jobs);
  EXPECT_TRUE(inState(jobs, "b", v1::PENDING)) << describe(jobs);

  // Listing needs the admin token or a job's token, and never shows a token.
  const AgentResult anon_list = runAgent({"jobs", "--scheduler", addr, "--all", "--json"});
  EXPECT_EQ(anon_list.exit_code, 1) << anon_list.err;
  EXPECT_NE(anon_list.err.find("needs the admin token or a job's token"), npos) << anon_list.err;
  const AgentResult listed = runAgent(
      {"jobs", "--scheduler", addr, "--all", "--json", "--token-file", dir.file("admin.tok")});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_NE(listed.out.find("\"b\""), npos) << listed.out;
  EXPECT_EQ(listed.out.find(token_a), npos) << listed.out;
  // Job a's token lists job a alone.
  const AgentResult own =
      runAgent({"jobs", "--scheduler", addr, "--all", "--json", "--token-file", dir.file("a.tok")});
  EXPECT_EQ(own.exit_code, 0) << own.err;
  EXPECT_NE(own.out.find("\"a\""), npos) << own.out;
  EXPECT_EQ(own.out.find("\"b\""), npos) << own.out;
}

TEST(ClusterE2eTest, TokenFilesOthersCanReadAreRefused) {
  TempDir dir;
  const std::string open_token = dir.file("open.tok");
  writeFile(open_token, "s3cret-admin\n", 0644);
  const std::string fix = "permissions 0644 are too open for a secret";

  const AgentResult sched = runAgent({"scheduler", "--listen", "127.0.0.1:0", "--data-dir",
                                      dir.file("state"), "--admin-token-file", open_token});
  EXPECT_EQ(sched.exit_code, 2) << sched.err;
  EXPECT_NE(
      sched.err.find("gangway scheduler: error: --admin-token-file '" + open_token + "': " + fix),
      npos)
      << sched.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("state"))) << "nothing is created";

  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"submit", "--scheduler", "127.0.0.1:1", "--token-file", open_token,
                                 "--name", "a", "/bin/true"},
        std::vector<std::string>{"agent", "--scheduler", "127.0.0.1:1", "--token-file",
                                 open_token}}) {
    const AgentResult r = runAgent(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("--token-file '" + open_token + "': " + fix), npos) << r.err;
    EXPECT_EQ(r.err.find("s3cret"), npos) << "secrets are never printed";
  }
}

TEST(ClusterE2eTest, AnAgentTheSchedulerRefusesSaysWhoRefusedIt) {
  TempDir dir;
  writeFile(dir.file("admin.tok"), "s3cret-admin\n", 0600);
  writeFile(dir.file("wrong.tok"), "not-the-token\n", 0600);
  SchedulerProcess sched("127.0.0.1:0", dir.file("state"),
                         {"--admin-token-file", dir.file("admin.tok")});
  ASSERT_TRUE(sched.up()) << sched.proc().err();
  const AgentResult r = runAgent({"agent", "--scheduler", sched.address(), "--node-id", "n1",
                                  "--address", "127.0.0.1", "--work-dir", dir.file("work"),
                                  "--token-file", dir.file("wrong.tok")});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("gangway agent: error: the scheduler at " + sched.address() +
                       " refused node n1: "),
            npos)
      << r.err;
  EXPECT_EQ(r.err.find("not-the-token"), npos) << "secrets are never printed";

  const AgentResult no_ca =
      runAgent({"agent", "--scheduler", sched.address(), "--tls-ca", dir.file("missing-ca.pem")});
  EXPECT_EQ(no_ca.exit_code, 2) << no_ca.err;
  EXPECT_NE(no_ca.err.find("gangway agent: error: --tls-ca '" + dir.file("missing-ca.pem") +
                           "': cannot be read"),
            npos)
      << no_ca.err;
}

TEST(ClusterE2eTest, AnAgentRefusesAWorkDirOthersCanUseAndNamesThatArePaths) {
  TempDir dir;
  const std::string open_dir = dir.file("open");
  ASSERT_EQ(::mkdir(open_dir.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(open_dir.c_str(), 0755), 0);
  const AgentResult open = runAgent({"agent", "--scheduler", "127.0.0.1:1", "--node-id", "n1",
                                     "--address", "127.0.0.1", "--work-dir", open_dir});
  EXPECT_EQ(open.exit_code, 2) << open.err;
  EXPECT_EQ(open.err, "gangway agent: error: --work-dir '" + open_dir +
                          "' has mode 0755: others could read or replace the job files in it; "
                          "chmod 700 " +
                          open_dir + "\n");
  const AgentResult dots = runAgent({"agent", "--scheduler", "127.0.0.1:1", "--node-id", "..",
                                     "--address", "127.0.0.1", "--work-dir", dir.file("w")});
  EXPECT_EQ(dots.exit_code, 2) << dots.err;
  EXPECT_NE(dots.err.find("--node-id '..': expected 1 to 128 letters"), npos) << dots.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("w")));
}

}  // namespace
}  // namespace gangway::testing
