// The control plane against a foreign client: a real `gangway scheduler` process on loopback,
// reached through stubs generated from the .proto files and plain gRPC channels (not gangway's
// client library), sending what an attacker would. Each case asserts the refusal code, that
// nothing was kept, and a generous ceiling on the scheduler's memory growth (VmRSS).
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "gangway/v1/rendezvous.grpc.pb.h"
#include "gangway/v1/store.grpc.pb.h"

#include "agent_harness.h"

namespace gangway::testing {
namespace {

// The session every call of these tests carries (credentials.h).
// The wire name of an agent's session credential, as a foreign client writes it.
constexpr char kSessionMetadata[] = "x-gangway-session";
constexpr char kTestSession[] = "0123456789abcdef0123456789abcdef";

using namespace std::chrono_literals;

constexpr int64_t kMiB = 1 << 20;

// The ceiling on the scheduler's growth under each attack (without the limits, the stream flood
// grew it by 1.8 GB). ASan's redzones and shadow memory about double what each allocation costs.
#if defined(__SANITIZE_ADDRESS__)
constexpr int64_t kCeiling = 200 * kMiB;
#else
constexpr int64_t kCeiling = 100 * kMiB;
#endif

// Resident memory of a process, in bytes (0 if it cannot be read).
int64_t rssOf(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

// `gangway scheduler` on a free loopback port, with long heartbeats (the attacker's agents do
// not heartbeat) and a short last call.
class Target {
 public:
  // `log_level`: the scheduler's GANGWAY_LOG_LEVEL (a case that makes it log a line per call
  // sets "error", since its output is read only when a case waits for it).
  explicit Target(std::vector<std::string> extra = {}, const std::string& log_level = "info") {
    std::vector<std::string> args = {
        "scheduler",           "--listen", "127.0.0.1:0", "--heartbeat-timeout", "600",
        "--last-call-timeout", "0.001"};
    args.insert(args.end(), extra.begin(), extra.end());
    // A small ASan quarantine, so that freed memory does not count as held (no effect otherwise).
    const char* asan = std::getenv("ASAN_OPTIONS");
    proc_ = AgentProcess::start(
        args, {{"GANGWAY_LOG_LEVEL", log_level},
               // RSS should measure what the scheduler holds, not how many per-thread malloc
               // arenas gRPC's threads happened to start.
               {"MALLOC_ARENA_MAX", "2"},
               {"ASAN_OPTIONS",
                absl::StrCat(asan != nullptr ? asan : "", asan != nullptr && *asan != 0 ? ":" : "",
                             "quarantine_size_mb=8")}});
    const bool up = proc_->waitForStdout(
        [](const std::string& out) { return out.find('\n') != std::string::npos; });
    EXPECT_TRUE(up) << proc_->err();
    const std::string line = proc_->out().substr(0, proc_->out().find('\n'));
    address_ = line.substr(line.rfind(' ') + 1);
    grpc::ChannelArguments ch;
    ch.SetMaxSendMessageSize(64 * kMiB);
    channel_ = grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), ch);
    rdzv_ = v1::Rendezvous::NewStub(channel_);
    store_ = v1::Store::NewStub(channel_);
    baseline_ = rssOf(proc_->pid());
  }
  ~Target() {
    rdzv_.reset();
    store_.reset();
    channel_.reset();
    proc_->signal(SIGTERM);
    const AgentResult r = proc_->wait();
    EXPECT_EQ(r.exit_code, 0) << r.err.substr(0, 4000);
  }

  v1::Rendezvous::Stub& rdzv() { return *rdzv_; }
  v1::Store::Stub& store() { return *store_; }
  AgentProcess& proc() { return *proc_; }
  const std::string& address() const { return address_; }
  // How much the scheduler's resident memory grew since it started.
  int64_t growth() const { return rssOf(proc_->pid()) - baseline_; }

  grpc::Status join(const v1::JoinRequest& req) {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kSessionMetadata, kTestSession);
    ctx.set_deadline(std::chrono::system_clock::now() + 30s);
    v1::JoinResponse resp;
    return rdzv_->Join(&ctx, req, &resp);
  }

 private:
  std::unique_ptr<AgentProcess> proc_;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Rendezvous::Stub> rdzv_;
  std::unique_ptr<v1::Store::Stub> store_;
  int64_t baseline_ = 0;
};

v1::JoinRequest joinRequest(const std::string& job, const std::string& agent, int max_nodes = 64) {
  v1::JoinRequest r;
  r.set_job_id(job);
  r.set_agent_id(agent);
  r.set_address("127.0.0.1");
  r.set_local_world_size(1);
  r.set_min_nodes(1);
  r.set_max_nodes(max_nodes);
  r.set_max_restarts(100'000);
  return r;
}

TEST(AttackTest, OversizedIdsAddressesAndMessagesAreRefusedAndKeptNowhere) {
  Target t;
  // 2,000 Joins with 100 KB job ids.
  for (int i = 0; i < 2000; ++i) {
    const grpc::Status s = t.join(joinRequest(std::string(100'000, 'a' + i % 26), "agent"));
    ASSERT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  }
  // 32 agents with 256 KB addresses.
  for (int i = 0; i < 32; ++i) {
    auto req = joinRequest("job", absl::StrCat("agent", i));
    req.set_address(std::string(256 * 1024, '7'));
    EXPECT_EQ(t.join(req).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // A job named "..", and ids that would forge a log line.
  EXPECT_EQ(t.join(joinRequest("..", "agent")).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(t.join(joinRequest("job", "x\n[gangway scheduler] I forged")).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // None of them made a job: a Store call on "job" finds none.
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kSessionMetadata, kTestSession);
    v1::NumKeysRequest req;
    req.set_job_id("job");
    v1::NumKeysResponse resp;
    EXPECT_EQ(t.store().NumKeys(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  // A 3.9 MB failure message is refused by size; a 60 KB one full of newlines is logged as one
  // escaped line, cut to 1 KiB.
  ASSERT_TRUE(t.join(joinRequest("real", "agent", 1)).ok());
  v1::WorkerReport report;
  report.set_job_id("real");
  report.set_agent_id("agent");
  report.set_round(1);
  report.set_failure(std::string(3'900'000, 'f'));
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kSessionMetadata, kTestSession);
    v1::WorkerReportResponse resp;
    EXPECT_EQ(t.rdzv().ReportWorkers(&ctx, report, &resp).error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  std::string forged;
  for (int i = 0; i < 1000; ++i) forged += "\n[gangway rendezvous] E 00:00:00 job real: forged";
  report.set_failure(forged);
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kSessionMetadata, kTestSession);
    v1::WorkerReportResponse resp;
    EXPECT_TRUE(t.rdzv().ReportWorkers(&ctx, report, &resp).ok());
  }
  ASSERT_TRUE(t.proc().waitForStderr(
      [](const std::string& err) {
        return err.find("workers failed on agent") != std::string::npos;
      },
      30s))
      << t.proc().err();
  EXPECT_EQ(t.proc().err().find("\n[gangway rendezvous] E 00:00:00 job real: forged"),
            std::string::npos);
  EXPECT_NE(t.proc().err().find("\\n[gangway rendezvous] E 00:00:00 job real: forged"),
            std::string::npos);
  EXPECT_LT(t.growth(), kCeiling);
}

TEST(AttackTest, StoreValuesKeysAndBytesHaveQuotas) {
  Target t({"--max-store-bytes-per-job", std::to_string(16 * kMiB)});
  ASSERT_TRUE(t.join(joinRequest("job", "agent")).ok());
  auto set = [&](const std::string& key, std::size_t bytes) {
    grpc::ClientContext ctx;
    ctx.AddMetadata(kSessionMetadata, kTestSession);
    v1::SetRequest req;
    req.set_job_id("job");
    req.set_key(key);
    req.set_value(std::string(bytes, 'v'));
    v1::SetResponse resp;
    return t.store().Set(&ctx, req, &resp).error_code();
  };
  // 200 values of 4 MB: refused by the request size limit.
  int refused = 0;
  for (int i = 0; i < 200; ++i) {
    if (set(absl::StrCat("big", i), 4'000'000) == grpc::StatusCode::RESOURCE_EXHAUSTED) ++refused;
  }
  EXPECT_EQ(refused, 200);
  // Values of 1,000,000 bytes are allowed until the job's store holds its 16 MiB.
  int stored = 0;
  grpc::StatusCode last = grpc::StatusCode::OK;
  for (int i = 0; i < 40; ++i) {
    last = set(absl::StrCat("v", i), 1'000'000);
    if (last == grpc::StatusCode::OK) ++stored;
  }
  EXPECT_EQ(stored, 16);
  EXPECT_EQ(last, grpc::StatusCode::RESOURCE_EXHAUSTED);
  grpc::ClientContext ctx;
  ctx.AddMetadata(kSessionMetadata, kTestSession);
  v1::NumKeysRequest req;
  req.set_job_id("job");
  v1::NumKeysResponse resp;
  ASSERT_TRUE(t.store().NumKeys(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.num_keys(), 16 + 1);  // and the layout of the round the agent's Join formed
  EXPECT_LT(t.growth(), kCeiling);
}

TEST(AttackTest, PendingStoreWaitsAreBounded) {
  Target t;
  ASSERT_TRUE(t.join(joinRequest("job", "agent")).ok());
  constexpr int kGets = 20'000;
  struct Call {
    grpc::ClientContext ctx;
    v1::GetResponse resp;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::mutex mu;
  std::condition_variable cv;
  int finished = 0;
  int exhausted = 0;
  for (int i = 0; i < kGets; ++i) {
    auto call = std::make_unique<Call>();
    v1::GetRequest req;
    req.set_job_id("job");
    req.set_key(absl::StrCat("never-set-", i));
    req.set_timeout_ms(600'000);
    Call* c = call.get();
    t.store().async()->Get(&c->ctx, &req, &c->resp, [&, c](grpc::Status s) {
      std::lock_guard<std::mutex> lock(mu);
      c->status = std::move(s);
      if (c->status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++exhausted;
      ++finished;
      cv.notify_all();
    });
    calls.push_back(std::move(call));
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 120s, [&] { return finished >= kGets - 1024; }))
        << finished << " of " << kGets << " calls ended";
    EXPECT_EQ(exhausted, kGets - 1024);
  }
  std::printf("the scheduler grew by %lld MiB with %d Gets\n",
              static_cast<long long>(t.growth() / kMiB), kGets);
  EXPECT_LT(t.growth(), kCeiling);
  for (auto& c : calls) c->ctx.TryCancel();
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 120s, [&] { return finished == kGets; }));
}

// A Watch stream that reads every event until the server ends it.
class WatchReader final : public grpc::ClientReadReactor<v1::RoundEvent> {
 public:
  struct Ends {
    std::mutex mu;
    std::condition_variable cv;
    int ended = 0;
    int aborted = 0;
  };
  WatchReader(v1::Rendezvous::Stub& stub, const v1::WatchRequest& req, Ends& ends) : ends_(ends) {
    ctx_.AddMetadata(kSessionMetadata, kTestSession);
    stub.async()->Watch(&ctx_, &req, this);
    StartRead(&event_);
    StartCall();
  }
  void cancel() { ctx_.TryCancel(); }
  void OnReadDone(bool ok) override {
    if (ok) StartRead(&event_);
  }
  void OnDone(const grpc::Status& s) override {
    std::lock_guard<std::mutex> lock(ends_.mu);
    ++ends_.ended;
    if (s.error_code() == grpc::StatusCode::ABORTED) ++ends_.aborted;
    ends_.cv.notify_all();
  }

 private:
  Ends& ends_;
  grpc::ClientContext ctx_;
  v1::RoundEvent event_;
};

TEST(AttackTest, AnAgentHasOneWatchStream) {
  Target t;
  ASSERT_TRUE(t.join(joinRequest("job", "agent", 2)).ok());
  constexpr int kStreams = 5000;
  v1::WatchRequest req;
  req.set_job_id("job");
  req.set_agent_id("agent");
  WatchReader::Ends ends;
  std::vector<std::unique_ptr<WatchReader>> streams;
  for (int i = 0; i < kStreams; ++i) {
    streams.push_back(std::make_unique<WatchReader>(t.rdzv(), req, ends));
  }
  {
    // Every stream but one ends with ABORTED, replaced by a later one.
    std::unique_lock<std::mutex> lock(ends.mu);
    ASSERT_TRUE(ends.cv.wait_for(lock, 120s, [&] { return ends.ended >= kStreams - 1; }))
        << ends.ended << " of " << kStreams << " streams ended";
    EXPECT_EQ(ends.aborted, kStreams - 1);
  }
  std::printf("the scheduler grew by %lld MiB with %d streams\n",
              static_cast<long long>(t.growth() / kMiB), kStreams);
  EXPECT_LT(t.growth(), kCeiling);
  for (auto& s : streams) s->cancel();
  std::unique_lock<std::mutex> lock(ends.mu);
  ASSERT_TRUE(ends.cv.wait_for(lock, 120s, [&] { return ends.ended == kStreams; }));
}

// The helper of UnreadStreamsCannotAmplifyMemory, run by it in a process of its own
// (GANGWAY_ATTACK_ADDRESS set): opens a Watch stream for each agent of GANGWAY_ATTACK_AGENTS, a
// connection each, says "ready" and waits for its stdin to close; the test stops it with
// SIGSTOP meanwhile, so that it reads nothing.
TEST(AttackHelper, DISABLED_HoldWatchStreams) {
  const char* address = std::getenv("GANGWAY_ATTACK_ADDRESS");
  const char* agents = std::getenv("GANGWAY_ATTACK_AGENTS");
  if (address == nullptr || agents == nullptr) GTEST_SKIP() << "run by UnreadStreams...";
  grpc::CompletionQueue cq;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::Rendezvous::Stub>> stubs;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientAsyncReader<v1::RoundEvent>>> readers;
  for (absl::string_view agent : absl::StrSplit(agents, ',')) {
    grpc::ChannelArguments ch;
    ch.SetInt("gangway.attack.unique", static_cast<int>(channels.size()));
    channels.push_back(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), ch));
    stubs.push_back(v1::Rendezvous::NewStub(channels.back()));
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    contexts.back()->AddMetadata(kSessionMetadata, kTestSession);
    v1::WatchRequest w;
    w.set_job_id("job");
    w.set_agent_id(std::string(agent));
    readers.push_back(stubs.back()->PrepareAsyncWatch(contexts.back().get(), w, &cq));
    readers.back()->StartCall(nullptr);
    void* tag = nullptr;
    bool ok = false;
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  }
  std::printf("ready\n");
  std::fflush(stdout);
  char c;
  while (::read(0, &c, 1) > 0) {
  }
  std::_Exit(0);  // the streams end with the process
}

// A process of this test binary running the helper above; killed and reaped on destruction.
class HelperProcess {
 public:
  HelperProcess(const std::string& address, const std::vector<std::string>& agents) {
    int in[2], out[2];
    EXPECT_EQ(::pipe2(in, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    const std::string env_address = "GANGWAY_ATTACK_ADDRESS=" + address;
    const std::string env_agents = "GANGWAY_ATTACK_AGENTS=" + absl::StrJoin(agents, ",");
    std::vector<std::string> env_strings = {env_address, env_agents};
    for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string exe = "/proc/self/exe", also = "--gtest_also_run_disabled_tests",
                filter = "--gtest_filter=AttackHelper.DISABLED_HoldWatchStreams";
    char* argv[] = {exe.data(), also.data(), filter.data(), nullptr};
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::execve(argv[0], argv, envp.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
  }
  ~HelperProcess() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    ::close(stdin_);
    ::close(stdout_);
  }
  // Reads its output until "ready" (or its end).
  bool ready() {
    std::string got;
    char buf[256];
    for (ssize_t n; (n = ::read(stdout_, buf, sizeof buf)) > 0;) {
      got.append(buf, static_cast<size_t>(n));
      if (got.find("ready\n") != std::string::npos) return true;
    }
    return false;
  }
  void signal(int sig) { ::kill(pid_, sig); }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
};

// 32 agents with the longest names and addresses allowed watch from a process that reads
// nothing (stopped), while node rank 0's agent restarts the round over and over: each round sends
// every agent an assignment with the whole layout (about 15 KB), 45 MB per stream in all. Once
// the kernel's socket buffers are full, the scheduler queues at most 1 MiB per stream, then drops
// the stream's events and ends it: its memory stays bounded.
TEST(AttackTest, UnreadStreamsCannotAmplifyMemory) {
  Target t({}, "error");
  const std::string long_host = std::string(63, 'h') + "." + std::string(63, 'o') + "." +
                                std::string(63, 's') + "." + std::string(61, 't');
  constexpr int kAgents = 32;
  std::vector<std::string> agents;
  for (int i = 0; i < kAgents; ++i) {
    agents.push_back(absl::StrCat(std::string(200, 'a'), i));
    auto req = joinRequest("job", agents.back(), 64);
    req.set_address(long_host);
    req.mutable_topology()->set_hostname(long_host);
    ASSERT_TRUE(t.join(req).ok());
  }
  // Node rank 0's agent is the attacker's own, on this process's connection.
  std::vector<std::string> held(agents.begin() + 1, agents.end());
  HelperProcess helper(t.address(), held);
  ASSERT_TRUE(helper.ready());
  helper.signal(SIGSTOP);
  int rounds = 0;
  for (int i = 0; i < 3000; ++i) {
    grpc::ClientContext hb_ctx;
    hb_ctx.AddMetadata(kSessionMetadata, kTestSession);
    v1::HeartbeatRequest hb;
    hb.set_job_id("job");
    hb.set_agent_id(agents[0]);
    v1::HeartbeatResponse hb_resp;
    if (!t.rdzv().Heartbeat(&hb_ctx, hb, &hb_resp).ok()) break;
    grpc::ClientContext port_ctx;
    port_ctx.AddMetadata(kSessionMetadata, kTestSession);
    v1::MasterPortRequest port;
    port.set_job_id("job");
    port.set_agent_id(agents[0]);
    port.set_round(hb_resp.round());
    port.set_port(29500);
    v1::MasterPortResponse port_resp;
    (void)t.rdzv().PublishMasterPort(&port_ctx, port, &port_resp);
    grpc::ClientContext report_ctx;
    report_ctx.AddMetadata(kSessionMetadata, kTestSession);
    v1::WorkerReport report;
    report.set_job_id("job");
    report.set_agent_id(agents[0]);
    report.set_round(hb_resp.round());
    report.set_failure("again");
    v1::WorkerReportResponse report_resp;
    (void)t.rdzv().ReportWorkers(&report_ctx, report, &report_resp);
    rounds = static_cast<int>(hb_resp.round());
  }
  EXPECT_GT(rounds, 1000);
  std::printf("the scheduler grew by %lld MiB in %d rounds\n",
              static_cast<long long>(t.growth() / kMiB), rounds);
  EXPECT_LT(t.growth(), kCeiling) << "after " << rounds << " rounds";
}

TEST(AttackTest, BadLimitFlagsGetOneLine) {
  for (const std::vector<std::string>& flags : {std::vector<std::string>{"--max-jobs", "0"},
                                                {"--max-store-value-bytes", "lots"},
                                                {"--max-request-bytes", "-5"},
                                                {"--max-store-value-bytes", "2000000"}}) {
    std::vector<std::string> args = {"scheduler", "--listen", "127.0.0.1:0"};
    args.insert(args.end(), flags.begin(), flags.end());
    auto proc = AgentProcess::start(args);
    const AgentResult r = proc->wait(30s);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(r.err.rfind("gangway scheduler: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(flags[0]), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

}  // namespace
}  // namespace gangway::testing
