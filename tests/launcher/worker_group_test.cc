#include "worker_group.h"

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "gangway/launcher/restart_policy.h"

namespace gangway::launcher {
namespace {

namespace fs = std::filesystem;

std::string readText(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

class WorkerGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "gangway_group_XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    auto loop = EventLoop::create({SIGCHLD});
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = *std::move(loop);
    loop_->onSignals([this](const std::vector<int>&) { group_->reap(stopping_, failures_); });
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Workers run `sh -c SCRIPT`; their output goes to log files only (--redirects 3).
  void makeGroup(int nproc, const std::string& script) {
    options_.nproc_per_node = nproc;
    options_.run_id = "group-test";
    options_.program = "/bin/sh";
    options_.argv = {"sh", "-c", script};
    options_.redirects.assign(nproc, Streams::kAll);
    options_.tee.assign(nproc, Streams::kNone);
    options_.console.assign(nproc, true);
    base_env_ = {{"PATH", "/usr/bin:/bin"}, {"DIR", dir_.string()}};
    auto group = WorkerGroup::create(options_, base_env_, mapping_, *loop_);
    ASSERT_TRUE(group.ok()) << group.status();
    group_ = *std::move(group);
  }
  void runToEnd() {
    while (group_->running() > 0) ASSERT_TRUE(loop_->runOnce().ok());
  }
  RoundInfo round() const {
    RoundInfo r;
    r.world_size = options_.nproc_per_node;
    r.master_addr = "127.0.0.1";
    r.master_port = 29500;
    return r;
  }

  fs::path dir_;
  RunOptions options_;
  EnvMap base_env_;
  topology::LocalMapping mapping_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<WorkerGroup> group_;
  std::vector<WorkerFailure> failures_;
  bool stopping_ = false;
};

TEST_F(WorkerGroupTest, WorkersGetTheirRanksAndTheirOutputReachesTheLogFiles) {
  makeGroup(2, "echo rank=$RANK world=$WORLD_SIZE; echo oops >&2");
  ASSERT_TRUE(group_->start(round(), dir_ / "attempt_0").ok());
  EXPECT_EQ(group_->running(), 2);
  runToEnd();
  group_->drain();
  EXPECT_TRUE(group_->allSucceeded());
  EXPECT_TRUE(failures_.empty());
  EXPECT_EQ(readText(dir_ / "attempt_0/0/stdout.log"), "rank=0 world=2\n");
  EXPECT_EQ(readText(dir_ / "attempt_0/1/stdout.log"), "rank=1 world=2\n");
  EXPECT_EQ(readText(dir_ / "attempt_0/1/stderr.log"), "oops\n");
}

TEST_F(WorkerGroupTest, AFailedWorkerIsReportedWithItsRankAndStatus) {
  makeGroup(2, "[ $RANK = 1 ] && exit 3; exit 0");
  ASSERT_TRUE(group_->start(round(), dir_ / "attempt_0").ok());
  runToEnd();
  EXPECT_FALSE(group_->allSucceeded());
  ASSERT_EQ(failures_.size(), 1u);
  EXPECT_EQ(failures_[0].rank, 1);
  EXPECT_EQ(exitCodeOf(failures_[0].wait_status), 3);
  EXPECT_EQ(failures_[0].error_file, (dir_ / "attempt_0/1/error.json").string());
}

TEST_F(WorkerGroupTest, WorkersStoppedByTheAgentAreNotFailures) {
  makeGroup(2, "exec sleep 300");
  ASSERT_TRUE(group_->start(round(), dir_ / "attempt_0").ok());
  stopping_ = true;
  group_->signal(SIGTERM);
  runToEnd();
  EXPECT_TRUE(failures_.empty());
  EXPECT_FALSE(group_->allSucceeded());
}

TEST_F(WorkerGroupTest, KillStopsEveryWorkerAndWaitsForThem) {
  makeGroup(3, "trap '' TERM; exec sleep 300");
  ASSERT_TRUE(group_->start(round(), dir_ / "attempt_0").ok());
  group_->signal(SIGTERM);  // ignored
  group_->kill();
  EXPECT_EQ(group_->running(), 0);
  // Reaped, not left as zombies: the only child left is the watchdog, still running.
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), 0);
}

TEST_F(WorkerGroupTest, AnUnstartableWorkerIsNamed) {
  makeGroup(1, "exit 0");
  options_.program = (dir_ / "missing").string();
  const absl::Status s = group_->start(round(), dir_ / "attempt_0");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("worker rank 0: cannot execute"), absl::string_view::npos) << s;
}

TEST_F(WorkerGroupTest, DescendantsThatLeftTheirGroupDieWithTheGroup) {
  makeGroup(1, "setsid sleep 300 & echo $! > $DIR/stray; exit 0");
  ASSERT_TRUE(group_->start(round(), dir_ / "attempt_0").ok());
  runToEnd();
  group_->drain();
  const pid_t stray = std::stoi(readText(dir_ / "stray"));
  ASSERT_TRUE(alive(stray)) << "a new session is out of the worker's process group";
  group_.reset();
  EXPECT_FALSE(alive(stray)) << "killed and reaped when the group ends";
}

}  // namespace
}  // namespace gangway::launcher
