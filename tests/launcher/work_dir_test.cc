// The pool agent's work root and job files, against what another local user can plant: links,
// directories of their own, open modes, job ids that are paths. The second-user cases run the
// planting as uid 65534 (setpriv) and need root; they skip otherwise.
#include "work_dir.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace gangway::launcher {
namespace {

namespace fs = std::filesystem;

class WorkDirTest : public ::testing::Test {
 protected:
  WorkDirTest() {
    std::string templ = (fs::temp_directory_path() / "gangway-work-test-XXXXXX").string();
    dir_ = ::mkdtemp(templ.data());
  }
  ~WorkDirTest() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  static std::string read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static unsigned mode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }
  // Runs `script` with sh as uid/gid 65534; false (and the test skips) when that is impossible.
  bool asOtherUser(const std::string& script) {
    if (::geteuid() != 0 || std::system("command -v setpriv >/dev/null") != 0) return false;
    const std::string cmd =
        "setpriv --reuid 65534 --regid 65534 --clear-groups sh -c '" + script + "'";
    return std::system(cmd.c_str()) == 0;
  }

  std::string dir_;
};

TEST_F(WorkDirTest, TheRootAndJobFilesAreMadePrivate) {
  const std::string root = dir_ + "/a/b/work";
  auto work = WorkRoot::open(root);
  ASSERT_TRUE(work.ok()) << work.status();
  EXPECT_EQ(mode(root), 0700u);
  auto file = work->writeJobFile("job-1", "token", "secret\n");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(*file, root + "/job-1/token");
  EXPECT_EQ(mode(root + "/job-1"), 0700u);
  EXPECT_EQ(mode(*file), 0600u);
  EXPECT_EQ(read(*file), "secret\n");
  // A relaunch of the job replaces its file.
  ASSERT_TRUE(work->writeJobFile("job-1", "token", "other\n").ok());
  EXPECT_EQ(read(*file), "other\n");
  // The root is accepted again as it is.
  EXPECT_TRUE(WorkRoot::open(root).ok());
}

TEST_F(WorkDirTest, JobIdsThatArePathsAreRefused) {
  auto work = WorkRoot::open(dir_ + "/work");
  ASSERT_TRUE(work.ok()) << work.status();
  for (const char* job : {"..", ".", "a/b", "../../etc", "", "a..b", "-x"}) {
    const auto written = work->writeJobFile(job, "token", "x");
    EXPECT_EQ(written.status().code(), absl::StatusCode::kInvalidArgument) << job;
  }
  EXPECT_TRUE(fs::is_empty(dir_ + "/work"));
}

TEST_F(WorkDirTest, AnOpenOrLinkedRootIsRefusedAndLeftAlone) {
  const std::string open = dir_ + "/open";
  fs::create_directory(open);
  ::chmod(open.c_str(), 0755);
  auto refused = WorkRoot::open(open);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("mode 0755"), std::string::npos) << refused.status();
  EXPECT_NE(refused.status().message().find("chmod 700"), std::string::npos) << refused.status();
  EXPECT_EQ(mode(open), 0755u);
  const std::string link = dir_ + "/link";
  fs::create_directory_symlink(open, link);
  refused = WorkRoot::open(link);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("is a link"), std::string::npos) << refused.status();
}

TEST_F(WorkDirTest, LinksPlantedInTheRootAreNeverFollowed) {
  const std::string root = dir_ + "/work";
  auto work = WorkRoot::open(root);
  ASSERT_TRUE(work.ok()) << work.status();
  const std::string victim = dir_ + "/victim";
  { std::ofstream(victim) << "precious"; }
  // A job directory that is a link, and a token file that is a link.
  fs::create_directory_symlink(dir_, root + "/linked");
  EXPECT_FALSE(work->writeJobFile("linked", "token", "secret").ok());
  fs::create_directory(root + "/job");
  ::chmod((root + "/job").c_str(), 0700);
  fs::create_symlink(victim, root + "/job/token");
  auto file = work->writeJobFile("job", "token", "secret");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(read(victim), "precious");
  EXPECT_FALSE(fs::is_symlink(*file));
  EXPECT_EQ(read(*file), "secret");
}

TEST_F(WorkDirTest, ADirectoryAnotherUserMadeIsRefused) {
  // Another local user prepares the work root the agent is told to use, with a link to a file
  // of root's inside: the agent must refuse it, not write through it.
  ::chmod(dir_.c_str(), 01777);
  const std::string root = dir_ + "/work";
  const std::string victim = dir_ + "/victim";
  { std::ofstream(victim) << "precious"; }
  if (!asOtherUser("mkdir -m 700 " + root + " && mkdir -m 700 " + root + "/job && ln -s " + victim +
                   " " + root + "/job/token")) {
    GTEST_SKIP() << "needs root and setpriv to act as a second user";
  }
  auto work = WorkRoot::open(root);
  ASSERT_FALSE(work.ok());
  EXPECT_NE(work.status().message().find("belongs to uid 65534"), std::string::npos)
      << work.status();
  EXPECT_EQ(read(victim), "precious");
  // Inside a root of the agent's own, a job directory another user made is refused the same way.
  const std::string own = dir_ + "/own";
  auto ok = WorkRoot::open(own);
  ASSERT_TRUE(ok.ok()) << ok.status();
  ::chmod(own.c_str(), 0777);  // for the planting only
  ASSERT_TRUE(
      asOtherUser("mkdir -m 700 " + own + "/job && ln -s " + victim + " " + own + "/job/token"));
  ::chmod(own.c_str(), 0700);
  const auto written = ok->writeJobFile("job", "token", "secret");
  ASSERT_FALSE(written.ok());
  EXPECT_NE(written.status().message().find("belongs to uid 65534"), std::string::npos)
      << written.status();
  EXPECT_EQ(read(victim), "precious");
}

}  // namespace
}  // namespace gangway::launcher
