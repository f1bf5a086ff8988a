// StateStore: one conformance suite for every implementation (instantiated per backend below), and
// the embedded store's durability: reopening, snapshots, a torn tail, damage in the middle, the
// directory lock, and kill -9 of a writer at random points with every acknowledged write checked.
#include "gangway/scheduler/state_store.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <absl/strings/match.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "gangway/scheduler/leader_election.h"

namespace gangway::scheduler {
namespace {

using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/gw_state_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// --- the conformance suite ---

struct Backend {
  const char* name;
  // Opens a store on `dir` (the same dir again reopens it, where the backend persists).
  std::function<absl::StatusOr<std::unique_ptr<StateStore>>(const std::string& dir)> open;
};

// A real etcd (Debian's etcd-server) for this test process, started on first use on loopback ports
// and killed at exit. Unavailable when the binary is missing.
class EtcdServer {
 public:
  static EtcdServer& get() {
    static EtcdServer server;
    return server;
  }
  bool available() const { return pid_ > 0; }
  const std::string& endpoint() const { return endpoint_; }
  ~EtcdServer() {
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    std::filesystem::remove_all(dir_.path());
  }

 private:
  static int freePort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
  }

  EtcdServer() {
    if (::access("/usr/bin/etcd", X_OK) != 0) return;
    const std::string client = "http://127.0.0.1:" + std::to_string(freePort());
    const std::string peer = "http://127.0.0.1:" + std::to_string(freePort());
    endpoint_ = client.substr(7);
    const std::string log = dir_.path() + "/etcd.log";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      const std::string data = dir_.path() + "/data";
      ::execl("/usr/bin/etcd", "etcd", "--name", "t", "--data-dir", data.c_str(),
              "--listen-client-urls", client.c_str(), "--advertise-client-urls", client.c_str(),
              "--listen-peer-urls", peer.c_str(), "--initial-advertise-peer-urls", peer.c_str(),
              "--initial-cluster", ("t=" + peer).c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }

  TempDir dir_;
  pid_t pid_ = -1;
  std::string endpoint_;
};

absl::StatusOr<std::unique_ptr<StateStore>> openEtcd(const std::string& dir) {
  EtcdServer& etcd = EtcdServer::get();
  if (!etcd.available()) return absl::UnavailableError("no /usr/bin/etcd");
  // Each test's directory names its own key prefix; the first call waits for etcd to start.
  return openEtcdStateStore(
      {etcd.endpoint(), "/gangway-test/" + std::filesystem::path(dir).filename().string() + "/",
       20.0});
}

class StateStoreConformance : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (std::string(GetParam().name) == "etcd" && !EtcdServer::get().available()) {
      GTEST_SKIP() << "etcd-server is not installed (/usr/bin/etcd)";
    }
    auto s = GetParam().open(dir_.path());
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(s).value();
  }
  TempDir dir_;
  std::unique_ptr<StateStore> store_;
};

TEST_P(StateStoreConformance, PutGetRemoveWithRevisions) {
  // Revisions are relative: an etcd's revision counts every write it ever took.
  const int64_t r0 = store_->revision();
  EXPECT_FALSE(store_->get("a")->has_value());
  ASSERT_EQ(*store_->put("a", "1"), r0 + 1);
  ASSERT_EQ(*store_->put("b", "2"), r0 + 2);
  ASSERT_EQ(*store_->put("a", "3"), r0 + 3);
  const auto a = *store_->get("a");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->value, "3");
  EXPECT_EQ(a->mod_revision, r0 + 3);
  EXPECT_EQ(*store_->remove("a"), r0 + 4);
  EXPECT_FALSE(store_->get("a")->has_value());
  EXPECT_EQ(*store_->remove("a"), r0 + 4);  // absent: no new revision
  EXPECT_EQ(store_->revision(), r0 + 4);
  ASSERT_TRUE(store_->put("bin", std::string("\0\xff\n", 3)).ok());
  EXPECT_EQ((*store_->get("bin"))->value, std::string("\0\xff\n", 3));
}

TEST_P(StateStoreConformance, ListsByPrefixInKeyOrder) {
  for (const char* k : {"jobs/b", "jobs/a", "nodes/x", "jobs/c", "jobsx"}) {
    ASSERT_TRUE(store_->put(k, k).ok());
  }
  const auto jobs = *store_->list("jobs/");
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(jobs[0].key, "jobs/a");
  EXPECT_EQ(jobs[2].key, "jobs/c");
  EXPECT_EQ(store_->list("")->size(), 5u);
  EXPECT_TRUE(store_->list("zzz")->empty());
}

TEST_P(StateStoreConformance, TransactionsCompareThenApplyAtomically) {
  const int64_t r0 = store_->revision();
  StateTxn create;
  create.compares.push_back({"job/1", 0});  // must not exist
  create.ops.push_back({StateTxn::Op::Kind::kPut, "job/1", "queued"});
  create.ops.push_back({StateTxn::Op::Kind::kPut, "queue/default/1", ""});
  auto r = store_->commit(create);
  ASSERT_TRUE(r.ok() && r->succeeded) << r.status();
  EXPECT_EQ(r->revision, r0 + 1);
  EXPECT_EQ((*store_->get("queue/default/1"))->mod_revision, r0 + 1);  // one revision for both
  r = store_->commit(create);  // exists now: the compare fails, nothing is written
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->succeeded);
  EXPECT_EQ(store_->revision(), r0 + 1);
  StateTxn admit;
  admit.compares.push_back({"job/1", r0 + 1});
  admit.ops.push_back({StateTxn::Op::Kind::kPut, "job/1", "running"});
  admit.ops.push_back({StateTxn::Op::Kind::kDelete, "queue/default/1", ""});
  r = store_->commit(admit);
  ASSERT_TRUE(r.ok() && r->succeeded);
  EXPECT_EQ((*store_->get("job/1"))->value, "running");
  EXPECT_FALSE(store_->get("queue/default/1")->has_value());
  EXPECT_FALSE(store_->commit(admit)->succeeded);  // stale revision
}

TEST_P(StateStoreConformance, BadTransactionsAreRefused) {
  const int64_t r0 = store_->revision();
  EXPECT_EQ(store_->commit(StateTxn{}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->put("", "x").status().code(), absl::StatusCode::kInvalidArgument);
  StateTxn twice;
  twice.ops.push_back({StateTxn::Op::Kind::kPut, "k", "1"});
  twice.ops.push_back({StateTxn::Op::Kind::kDelete, "k", ""});
  EXPECT_EQ(store_->commit(twice).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->revision(), r0);
  EXPECT_FALSE(store_->get("k")->has_value());
}

TEST_P(StateStoreConformance, ReopenKeepsEveryAcknowledgedWrite) {
  for (int i = 0; i < 50; ++i)
    ASSERT_TRUE(store_->put("k" + std::to_string(i % 7), std::to_string(i)).ok());
  ASSERT_TRUE(store_->remove("k3").ok());
  const int64_t rev = store_->revision();
  store_.reset();
  auto again = GetParam().open(dir_.path());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->revision(), rev);
  EXPECT_EQ((*(*again)->get("k6"))->value, "48");
  EXPECT_FALSE((*again)->get("k3")->has_value());
  EXPECT_EQ((*again)->list("k")->size(), 6u);
}

INSTANTIATE_TEST_SUITE_P(Backends, StateStoreConformance,
                         ::testing::Values(Backend{"embedded",
                                                   [](const std::string& dir) {
                                                     return openEmbeddedStateStore({dir, 10000});
                                                   }},
                                           Backend{"embedded_snapshot_every_3",
                                                   [](const std::string& dir) {
                                                     return openEmbeddedStateStore({dir, 3});
                                                   }},
                                           Backend{"etcd", openEtcd}),
                         [](const ::testing::TestParamInfo<Backend>& i) {
                           return std::string(i.param.name);
                         });

// --- the embedded store's recovery ---

std::unique_ptr<StateStore> openOrDie(const std::string& dir, int64_t snapshot_every = 10000) {
  auto s = openEmbeddedStateStore({dir, snapshot_every});
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(s).value() : nullptr;
}

void appendBytes(const std::string& file, const std::string& bytes) {
  std::ofstream(file, std::ios::binary | std::ios::app) << bytes;
}

TEST(EmbeddedStateStore, ATornLastRecordIsCutOff) {
  TempDir dir;
  {
    auto s = openOrDie(dir.path());
    ASSERT_TRUE(s->put("a", "1").ok());
    ASSERT_TRUE(s->put("b", "2").ok());
  }
  const std::string wal = dir.path() + "/wal";
  const auto good_size = std::filesystem::file_size(wal);
  appendBytes(wal, std::string("\x20\x00\x00\x00\x01\x02", 6));  // a header cut short
  {
    auto s = openOrDie(dir.path());
    EXPECT_EQ(s->revision(), 2);
    EXPECT_EQ(std::filesystem::file_size(wal), good_size);  // truncated back
    ASSERT_TRUE(s->put("c", "3").ok());                     // and appendable
  }
  // A whole-length last record with a bad checksum (a torn write of its payload).
  std::string rec("\x04\x00\x00\x00\xde\xad\xbe\xef\x01\x02\x03\x04", 12);
  appendBytes(wal, rec);
  auto s = openOrDie(dir.path());
  EXPECT_EQ(s->revision(), 3);
  EXPECT_EQ((*s->get("c"))->value, "3");
}

TEST(EmbeddedStateStore, DamageInTheMiddleIsAClearErrorNotAReset) {
  TempDir dir;
  {
    auto s = openOrDie(dir.path());
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(s->put("k", std::to_string(i)).ok());
  }
  const std::string wal = dir.path() + "/wal";
  {
    std::fstream f(wal, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);  // inside the first record's payload
    f.put('\x7f');
  }
  const auto before = std::filesystem::file_size(wal);
  auto s = openEmbeddedStateStore({dir.path(), 10000});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.status().message(), HasSubstr(wal + " at byte 8: checksum mismatch"));
  EXPECT_EQ(std::filesystem::file_size(wal), before);  // nothing cut or rewritten
}

TEST(EmbeddedStateStore, ADamagedLengthInTheMiddleIsNotMistakenForATornTail) {
  TempDir dir;
  {
    auto s = openOrDie(dir.path());
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(s->put("k" + std::to_string(i), "value").ok());
  }
  const std::string wal = dir.path() + "/wal";
  {
    std::fstream f(wal, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8 + 3);  // the first record's length: now far past the end of the file
    f.put('\x7f');
  }
  const auto before = std::filesystem::file_size(wal);
  auto s = openEmbeddedStateStore({dir.path(), 10000});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.status().message(), HasSubstr(wal + " at byte 8: a record length"));
  EXPECT_EQ(std::filesystem::file_size(wal), before);  // the later records were not cut off
}

TEST(EmbeddedStateStore, BadMagicAndBadSnapshotAreErrors) {
  TempDir dir;
  {
    auto s = openOrDie(dir.path(), 2);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(s->put("k" + std::to_string(i), "v").ok());
  }
  ASSERT_TRUE(std::filesystem::exists(dir.path() + "/snapshot"));
  {
    std::fstream f(dir.path() + "/snapshot", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(30);
    f.put('\x01');
  }
  auto s = openEmbeddedStateStore({dir.path(), 2});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("snapshot checksum mismatch"));
  TempDir other;
  std::ofstream(other.path() + "/wal") << "not a log at all";
  EXPECT_THAT(openEmbeddedStateStore({other.path(), 2}).status().message(), HasSubstr("bad magic"));
}

TEST(EmbeddedStateStore, SnapshotsAndLogTogetherRecoverEverything) {
  TempDir dir;
  {
    auto s = openOrDie(dir.path(), 4);
    for (int i = 0; i < 23; ++i)
      ASSERT_TRUE(s->put("k" + std::to_string(i % 5), std::to_string(i)).ok());
    ASSERT_TRUE(s->remove("k0").ok());
  }
  // A snapshot.tmp left by a crash is ignored.
  std::ofstream(dir.path() + "/snapshot.tmp") << "garbage";
  auto s = openOrDie(dir.path(), 4);
  EXPECT_EQ(s->revision(), 24);
  EXPECT_EQ((*s->get("k2"))->value, "22");
  EXPECT_FALSE(s->get("k0")->has_value());
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/snapshot.tmp"));
}

TEST(EmbeddedStateStore, OneProcessPerDirectory) {
  TempDir dir;
  auto first = openOrDie(dir.path());
  const pid_t pid = ::fork();
  if (pid == 0) {  // another process: the flock is per open file description, so fork to test it
    auto second = openEmbeddedStateStore({dir.path(), 10000});
    const bool refused = !second.ok() && absl::StrContains(second.status().message(), "in use");
    ::_exit(refused ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(openEmbeddedStateStore({"", 1}).status().code(), absl::StatusCode::kInvalidArgument);
}

// kill -9 a writer at random points; every write it acknowledged (reported through a pipe after
// put() returned) must be there after reopening, and nothing past the one write in flight.
TEST(EmbeddedStateStore, KillNineKeepsEveryAcknowledgedWrite) {
  TempDir dir;
  std::mt19937 rng(7);
  int64_t acked_total = 0;
  for (int cycle = 0; cycle < 20; ++cycle) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      auto s = openEmbeddedStateStore({dir.path(), 7});
      if (!s.ok()) ::_exit(3);
      for (;;) {
        const int64_t next = (*s)->revision() + 1;
        if (!(*s)->put("key/" + std::to_string(next % 13), std::to_string(next)).ok()) ::_exit(4);
        if (::write(fds[1], &next, sizeof(next)) != sizeof(next)) ::_exit(5);
      }
    }
    ::close(fds[1]);
    int64_t last_acked = 0;
    const int want = 1 + static_cast<int>(rng() % 40);
    for (int i = 0; i < want; ++i) {
      int64_t v = 0;
      ASSERT_EQ(::read(fds[0], &v, sizeof(v)), static_cast<ssize_t>(sizeof(v)));
      last_acked = v;
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    int64_t v = 0;
    while (::read(fds[0], &v, sizeof(v)) == static_cast<ssize_t>(sizeof(v))) last_acked = v;
    ::close(fds[0]);
    auto s = openOrDie(dir.path(), 7);
    ASSERT_NE(s, nullptr);
    const int64_t rev = s->revision();
    ASSERT_GE(rev, last_acked) << "cycle " << cycle << ": an acknowledged write was lost";
    ASSERT_LE(rev, last_acked + 1) << "cycle " << cycle << ": writes that were never made";
    for (int64_t r = std::max<int64_t>(1, rev - 12); r <= rev; ++r) {
      const auto e = *s->get("key/" + std::to_string(r % 13));
      ASSERT_TRUE(e.has_value());
      EXPECT_EQ(e->value, std::to_string(r));
      EXPECT_EQ(e->mod_revision, r);
    }
    acked_total = rev;
  }
  EXPECT_GT(acked_total, 20);
}

}  // namespace
}  // namespace gangway::scheduler

namespace gangway::scheduler {
namespace {

TEST(EtcdStateStore, UnreachableEtcdIsAClearErrorWithinTheTimeout) {
  auto s = openEtcdStateStore({"127.0.0.1:1", "/x/", 0.3});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.status().message(), HasSubstr("etcd at 127.0.0.1:1"));
  EXPECT_EQ(openEtcdStateStore({"", "/x/", 1}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(openEtcdStateStore({"127.0.0.1:1", "/x/", 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace gangway::scheduler

// --- leader election between replicas on a real etcd ---

namespace gangway::scheduler {
namespace {

// Runs in a child process (this binary, re-executed with a filter): leads, says so on a pipe,
// then holds leadership until it is killed.
TEST(DISABLED_ElectionReplica, LeadUntilKilled) {
  const char* endpoint = std::getenv("GW_TEST_ETCD");
  const char* key = std::getenv("GW_TEST_ELECTION_KEY");
  const char* fd = std::getenv("GW_TEST_READY_FD");
  ASSERT_TRUE(endpoint != nullptr && key != nullptr && fd != nullptr);
  auto e = createLeaderElection({endpoint, key, "replica-a", 5, 5.0});
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE((*e)->campaign(absl::Now() + absl::Seconds(60)).ok());
  ASSERT_EQ(::write(std::atoi(fd), "L", 1), 1);
  char c = 0;
  (void)::read(0, &c, 1);  // the parent never writes: held until kill -9
}

// A replica in a child process: this binary re-executed to run DISABLED_ElectionReplica.NAME
// against `key`. It reads its stdin from `to_child` and answers on `from_child` (the pipes' other
// ends stay with the parent).
pid_t startReplica(const std::string& name, const std::string& endpoint, const std::string& key,
                   const int from_child[2], const int to_child[2]) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(to_child[0], 0);
    ::close(from_child[0]);
    ::close(to_child[1]);
    ::setenv("GW_TEST_ETCD", endpoint.c_str(), 1);
    ::setenv("GW_TEST_ELECTION_KEY", key.c_str(), 1);
    ::setenv("GW_TEST_READY_FD", std::to_string(from_child[1]).c_str(), 1);
    const std::string filter = "--gtest_filter=DISABLED_ElectionReplica." + name;
    ::execl("/proc/self/exe", "state_store_test", filter.c_str(), "--gtest_also_run_disabled_tests",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(from_child[1]);
  ::close(to_child[0]);
  return pid;
}

TEST(LeaderElection, OneLeaderAtATimeAndAStandbyTakesOverAfterKillNine) {
  EtcdServer& etcd = EtcdServer::get();
  if (!etcd.available()) GTEST_SKIP() << "etcd-server is not installed (/usr/bin/etcd)";
  const std::string key = "/gangway-test/leader-" + std::to_string(::getpid());
  int ready[2];
  int hold[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(hold), 0);
  const pid_t pid = startReplica("LeadUntilKilled", etcd.endpoint(), key, ready, hold);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1) << "the first replica never became leader";

  auto b = createLeaderElection({etcd.endpoint(), key, "replica-b", 2, 5.0});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*(*b)->leader(), "replica-a");
  // While the leader lives (and keeps its lease), the standby cannot lead: no split brain.
  const absl::Status blocked = (*b)->campaign(absl::Now() + absl::Seconds(3));
  EXPECT_EQ(blocked.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(blocked.message(), HasSubstr("leader is replica-a"));
  EXPECT_FALSE((*b)->isLeader());

  ::kill(pid, SIGKILL);
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  ::close(hold[1]);
  ::close(ready[0]);
  // The dead leader's lease expires; the standby's watch sees the key go and it takes over.
  ASSERT_TRUE((*b)->campaign(absl::Now() + absl::Seconds(60)).ok());
  EXPECT_TRUE((*b)->isLeader());
  EXPECT_EQ(*(*b)->leader(), "replica-b");
  ASSERT_TRUE((*b)->resign().ok());
  EXPECT_FALSE((*b)->isLeader());
  EXPECT_EQ(*(*b)->leader(), "");
  EXPECT_EQ((*b)->campaign(absl::Now() + absl::Seconds(1)).code(),
            absl::StatusCode::kFailedPrecondition);
}

// Runs in a child process: leads (a 2 s lease) and then, each time its stdin gets a byte, writes
// through a store fenced with its lease and answers on the pipe: 'O' (applied), 'F' (refused as
// no longer the leader) or 'E' (another error).
TEST(DISABLED_ElectionReplica, WriteWhenTold) {
  const char* endpoint = std::getenv("GW_TEST_ETCD");
  const char* key = std::getenv("GW_TEST_ELECTION_KEY");
  const char* fd = std::getenv("GW_TEST_READY_FD");
  ASSERT_TRUE(endpoint != nullptr && key != nullptr && fd != nullptr);
  auto e = createLeaderElection({endpoint, key, "replica-a", 2, 5.0});
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE((*e)->campaign(absl::Now() + absl::Seconds(60)).ok());
  auto store = openEtcdStateStore({.endpoints = endpoint,
                                   .prefix = std::string(key) + "-state/",
                                   .fence_key = (*e)->key(),
                                   .fence_lease = (*e)->lease()});
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_EQ(::write(std::atoi(fd), "L", 1), 1);
  char c = 0;
  while (::read(0, &c, 1) == 1) {
    const auto r = (*store)->put("k", "from-a");
    const char answer = r.ok()                                                       ? 'O'
                        : r.status().code() == absl::StatusCode::kFailedPrecondition ? 'F'
                                                                                     : 'E';
    ASSERT_EQ(::write(std::atoi(fd), &answer, 1), 1);
  }
}

TEST(LeaderElection, ALeaderPausedPastItsLeaseCannotWriteWhenItResumes) {
  EtcdServer& etcd = EtcdServer::get();
  if (!etcd.available()) GTEST_SKIP() << "etcd-server is not installed (/usr/bin/etcd)";
  const std::string key = "/gangway-test/fenced-" + std::to_string(::getpid());
  int ready[2];
  int tell[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(tell), 0);
  const pid_t pid = startReplica("WriteWhenTold", etcd.endpoint(), key, ready, tell);
  auto ask = [&] {
    char c = 0;
    if (::write(tell[1], "w", 1) != 1 || ::read(ready[0], &c, 1) != 1) return '?';
    return c;
  };
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1) << "the first replica never became leader";
  ASSERT_EQ(c, 'L');
  EXPECT_EQ(ask(), 'O') << "the leader writes";

  // Paused (SIGSTOP) past its lease: the key expires and the standby takes over and writes.
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  auto b = createLeaderElection({etcd.endpoint(), key, "replica-b", 2, 5.0});
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE((*b)->campaign(absl::Now() + absl::Seconds(60)).ok());
  auto store = openEtcdStateStore({.endpoints = etcd.endpoint(),
                                   .prefix = key + "-state/",
                                   .fence_key = (*b)->key(),
                                   .fence_lease = (*b)->lease()});
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->put("k", "from-b").ok());

  // Resumed, the old leader's write is refused and changes nothing.
  ASSERT_EQ(::kill(pid, SIGCONT), 0);
  EXPECT_EQ(ask(), 'F') << "a paused ex-leader wrote after another replica took over";
  auto k = (*store)->get("k");
  ASSERT_TRUE(k.ok() && k->has_value());
  EXPECT_EQ((*k)->value, "from-b");
  // The fenced store's other calls are refused the same way once the lease is gone.
  ASSERT_TRUE((*b)->resign().ok());
  EXPECT_EQ((*store)->remove("k").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*store)->commit({{}, {{StateTxn::Op::Kind::kPut, "k2", "v"}}}).status().code(),
            absl::StatusCode::kFailedPrecondition);

  ::close(tell[1]);
  ::kill(pid, SIGKILL);
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  ::close(ready[0]);
}

TEST(LeaderElection, BadOptionsAndUnreachableEtcd) {
  EXPECT_EQ(createLeaderElection({"", "/k", "a", 2, 1.0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(createLeaderElection({"127.0.0.1:1", "/k", "", 2, 1.0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  const auto s = createLeaderElection({"127.0.0.1:1", "/k", "a", 2, 0.3});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.status().message(), HasSubstr("etcd at 127.0.0.1:1"));
}

}  // namespace
}  // namespace gangway::scheduler
