// Integration tests: the real `gangway run` binary supervising shell workers.
#include <filesystem>
#include <map>
#include <regex>
#include <set>

#include <signal.h>

#include <gtest/gtest.h>

#include "agent_harness.h"

namespace gangway::testing {
namespace {

std::vector<std::string> shellJob(std::vector<std::string> flags, const std::string& script) {
  flags.insert(flags.begin(), "run");
  flags.insert(flags.end(), {"--no-python", "/bin/bash", "-c", script});
  return flags;
}

std::map<std::string, std::string> parseEnvLines(const std::vector<std::string>& lines) {
  std::map<std::string, std::string> env;
  for (const auto& l : lines) {
    const auto eq = l.find('=');
    if (eq != std::string::npos) env[l.substr(0, eq)] = l.substr(eq + 1);
  }
  return env;
}

constexpr const char* kDumpContract =
    "for v in RANK LOCAL_RANK GROUP_RANK ROLE_RANK ROLE_NAME LOCAL_WORLD_SIZE WORLD_SIZE "
    "GROUP_WORLD_SIZE ROLE_WORLD_SIZE MASTER_ADDR MASTER_PORT TORCHELASTIC_RESTART_COUNT "
    "TORCHELASTIC_MAX_RESTARTS TORCHELASTIC_RUN_ID TORCHELASTIC_ERROR_FILE OMP_NUM_THREADS "
    "GANGWAY_JOB_ID GANGWAY_ROUND GANGWAY_STORE; do echo \"$v=${!v-<unset>}\"; done";

TEST(AgentTest, EveryContractVariableReachesEveryWorker) {
  const AgentResult r = runAgent(shellJob(
      {"--nproc-per-node", "3", "--rdzv-id", "job-42", "--role", "trainer", "--max-restarts", "2"},
      kDumpContract));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::set<std::string> ports, error_files;
  for (int rank = 0; rank < 3; ++rank) {
    auto env = parseEnvLines(rankLines(r.out, rank));
    const std::string rk = std::to_string(rank);
    EXPECT_EQ(env["RANK"], rk);
    EXPECT_EQ(env["LOCAL_RANK"], rk);
    EXPECT_EQ(env["GROUP_RANK"], "0");
    EXPECT_EQ(env["ROLE_RANK"], rk);
    EXPECT_EQ(env["ROLE_NAME"], "trainer");
    EXPECT_EQ(env["LOCAL_WORLD_SIZE"], "3");
    EXPECT_EQ(env["WORLD_SIZE"], "3");
    EXPECT_EQ(env["GROUP_WORLD_SIZE"], "1");
    EXPECT_EQ(env["ROLE_WORLD_SIZE"], "3");
    EXPECT_EQ(env["MASTER_ADDR"], "127.0.0.1");
    EXPECT_TRUE(std::regex_match(env["MASTER_PORT"], std::regex("[1-9][0-9]*")));
    EXPECT_EQ(env["TORCHELASTIC_RESTART_COUNT"], "0");
    EXPECT_EQ(env["TORCHELASTIC_MAX_RESTARTS"], "2");
    EXPECT_EQ(env["TORCHELASTIC_RUN_ID"], "job-42");
    EXPECT_TRUE(env["TORCHELASTIC_ERROR_FILE"].ends_with("/attempt_0/" + rk + "/error.json"));
    EXPECT_EQ(env["OMP_NUM_THREADS"], "1");
    EXPECT_EQ(env["GANGWAY_JOB_ID"], "job-42");
    EXPECT_EQ(env["GANGWAY_ROUND"], "0");
    EXPECT_EQ(env["GANGWAY_STORE"], "<unset>");  // no job store in a single-node job
    ports.insert(env["MASTER_PORT"]);
    error_files.insert(env["TORCHELASTIC_ERROR_FILE"]);
  }
  EXPECT_EQ(ports.size(), 1u) << "every worker must see the same MASTER_PORT";
  EXPECT_EQ(error_files.size(), 3u) << "every worker needs its own error file";
}

TEST(AgentTest, StackedJobsGetDifferentMasterPortsAndRunIds) {
  auto a = AgentProcess::start(
      shellJob({"--standalone", "--nproc-per-node", "1"},
               "echo port=$MASTER_PORT id=$TORCHELASTIC_RUN_ID; exec sleep 300"));
  auto b = AgentProcess::start(
      shellJob({"--standalone", "--nproc-per-node", "1"},
               "echo port=$MASTER_PORT id=$TORCHELASTIC_RUN_ID; exec sleep 300"));
  auto has_line = [](const std::string& out) { return out.find('\n') != std::string::npos; };
  ASSERT_TRUE(a->waitForStdout(has_line));
  ASSERT_TRUE(b->waitForStdout(has_line));
  EXPECT_NE(a->out(), b->out());
  EXPECT_EQ(a->out().find("port=29500"), std::string::npos);
  a->signal(SIGTERM);
  b->signal(SIGTERM);
  EXPECT_EQ(a->wait().exit_code, 128 + SIGTERM);
  EXPECT_EQ(b->wait().exit_code, 128 + SIGTERM);
}

TEST(AgentTest, UserOmpSettingIsKept) {
  const AgentResult r = runAgent(shellJob({"--nproc-per-node", "2"}, "echo omp=$OMP_NUM_THREADS"),
                                 {{"OMP_NUM_THREADS", "6"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(rankLines(r.out, 1), std::vector<std::string>{"omp=6"});
}

TEST(AgentTest, PetVariablesConfigureTheJob) {
  const AgentResult r =
      runAgent(shellJob({}, "echo world=$WORLD_SIZE restarts=$TORCHELASTIC_MAX_RESTARTS"),
               {{"PET_NPROC_PER_NODE", "3"}, {"PET_MAX_RESTARTS", "4"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(rankLines(r.out, 2), std::vector<std::string>{"world=3 restarts=4"});
}

TEST(AgentTest, FailedWorkerIsRestartedAndTheJobSucceeds) {
  TempDir tmp;
  const AgentResult r = runAgent(
      shellJob({"--nproc-per-node", "2", "--max-restarts", "2"},
               "echo attempt=$TORCHELASTIC_RESTART_COUNT round=$GANGWAY_ROUND port=$MASTER_PORT; "
               "if [ $RANK = 1 ] && [ $TORCHELASTIC_RESTART_COUNT = 0 ]; then exit 3; fi; "
               "if [ $TORCHELASTIC_RESTART_COUNT = 0 ]; then exec sleep 300; fi"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = rankLines(r.out, 1);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_TRUE(lines[0].starts_with("attempt=0 round=0 ")) << lines[0];
  EXPECT_TRUE(lines[1].starts_with("attempt=1 round=1 ")) << lines[1];
  EXPECT_NE(r.err.find("rank 1 failed with exit code 3 (restart 1 of 2)"), std::string::npos)
      << r.err;
}

TEST(AgentTest, NoRestartsLeftExitsWithTheWorkersCode) {
  const AgentResult r = runAgent(shellJob({"--nproc-per-node", "2", "--max-restarts", "0"},
                                          "if [ $RANK = 1 ]; then exit 7; fi; exec sleep 300"));
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_NE(r.err.find("Root Cause"), std::string::npos);
  EXPECT_NE(r.err.find("rank      : 1 (local_rank: 1)"), std::string::npos) << r.err;
}

TEST(AgentTest, RestartsAreBoundedByMaxRestarts) {
  const AgentResult r = runAgent(shellJob({"--nproc-per-node", "1", "--max-restarts", "2"},
                                          "echo attempt=$TORCHELASTIC_RESTART_COUNT; exit 5"));
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(rankLines(r.out, 0), (std::vector<std::string>{"attempt=0", "attempt=1", "attempt=2"}));
}

TEST(AgentTest, WorkerKilledBySignalGives128PlusSignal) {
  const AgentResult r = runAgent(shellJob({"--nproc-per-node", "1"}, "kill -SEGV $$"));
  EXPECT_EQ(r.exit_code, 128 + SIGSEGV);
  EXPECT_NE(r.err.find("signal 11 (SIGSEGV)"), std::string::npos) << r.err;
}

// Workers trap SIGTERM, take a while to clean up, then exit: the agent forwards the signal and
// waits for them within the grace period instead of killing them.
TEST(AgentTest, SigtermIsForwardedAndTheGracePeriodHonoured) {
  auto agent = AgentProcess::start(shellJob(
      {"--nproc-per-node", "3", "--grace-period", "60"},
      "trap 'echo got-term; for i in 1 2 3 4 5; do sleep 0.1; done; echo cleaned; exit 0' TERM; "
      "echo ready; sleep 300 & wait"));
  ASSERT_TRUE(agent->waitForStdout([](const std::string& out) {
    return workerLineCount(out) == 3;
  })) << agent->err();
  agent->signal(SIGTERM);
  const AgentResult r = agent->wait();
  EXPECT_EQ(r.exit_code, 128 + SIGTERM);
  for (int rank = 0; rank < 3; ++rank) {
    EXPECT_EQ(rankLines(r.out, rank), (std::vector<std::string>{"ready", "got-term", "cleaned"}))
        << r.out << r.err;
  }
  EXPECT_EQ(r.err.find("SIGKILL"), std::string::npos) << r.err;
}

TEST(AgentTest, OtherStopSignalsAreForwardedAsThemselves) {
  for (int sig : {SIGINT, SIGHUP, SIGQUIT}) {
    auto agent = AgentProcess::start(
        shellJob({"--nproc-per-node", "2"},
                 "for s in INT HUP QUIT; do trap \"echo got-$s; exit 0\" $s; done; echo ready; "
                 "sleep 300 & wait"));
    ASSERT_TRUE(
        agent->waitForStdout([](const std::string& out) { return workerLineCount(out) == 2; }));
    agent->signal(sig);
    const AgentResult r = agent->wait();
    EXPECT_EQ(r.exit_code, 128 + sig);
    const std::string expected = std::string("got-") + sigabbrev_np(sig);
    EXPECT_EQ(rankLines(r.out, 0).back(), expected);
    EXPECT_EQ(rankLines(r.out, 1).back(), expected);
  }
}

TEST(AgentTest, WorkersIgnoringSigtermAreKilledAfterTheGracePeriod) {
  auto agent = AgentProcess::start(shellJob({"--nproc-per-node", "2", "--grace-period", "0.5"},
                                            "trap '' TERM; echo ready; while :; do sleep 1; done"));
  ASSERT_TRUE(
      agent->waitForStdout([](const std::string& out) { return workerLineCount(out) == 2; }));
  agent->signal(SIGTERM);
  const AgentResult r = agent->wait();
  EXPECT_EQ(r.exit_code, 128 + SIGTERM);
  EXPECT_NE(r.err.find("sending SIGKILL"), std::string::npos) << r.err;
  EXPECT_TRUE(waitForNoMarkedProcesses(agent->marker(), 30s).empty());
}

// kill -9 of the agent: workers die through PR_SET_PDEATHSIG, their process groups (with the
// grandchildren) through the watchdog.
TEST(AgentTest, KillingTheAgentLeavesNoProcessBehind) {
  auto agent = AgentProcess::start(
      shellJob({"--nproc-per-node", "3"},
               "sleep 300 & echo pid=$!; bash -c 'sleep 300 & echo pid=$!; wait' & echo pid=$!; "
               "echo pid=$$; wait"));
  ASSERT_TRUE(agent->waitForStdout([](const std::string& out) {
    return workerLineCount(out) == 12;
  })) << agent->out();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 3; ++rank) {
    for (const auto& line : rankLines(agent->out(), rank))
      pids.push_back(std::stoi(line.substr(4)));
  }
  ASSERT_EQ(pids.size(), 12u);
  EXPECT_TRUE(waitForExit(pids, 0ms).size() == pids.size()) << "all should be running";
  agent->signal(SIGKILL);
  (void)agent->wait();
  EXPECT_TRUE(waitForExit(pids, 30s).empty());
  EXPECT_TRUE(waitForNoMarkedProcesses(agent->marker(), 30s).empty());
}

TEST(AgentTest, DescendantsThatLeaveTheirGroupAreReapedAtTheEnd) {
  auto agent = AgentProcess::start(
      shellJob({"--nproc-per-node", "2"}, "setsid sleep 300 & echo pid=$!; exit 0"));
  const AgentResult r = agent->wait();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    for (const auto& line : rankLines(r.out, rank)) pids.push_back(std::stoi(line.substr(4)));
  }
  ASSERT_EQ(pids.size(), 2u);
  EXPECT_TRUE(waitForExit(pids, 30s).empty());
  EXPECT_TRUE(waitForNoMarkedProcesses(agent->marker(), 30s).empty());
}

// Many workers writing long lines as fast as they can, some in pieces: every console line must be
// one whole line of one worker.
TEST(AgentTest, PrefixedOutputIsNeverInterleavedMidLine) {
  constexpr int kLines = 3000;
  const AgentResult r = runAgent(
      shellJob({"--nproc-per-node", "4"},
               "body=$(printf \"r${RANK}-%.0s\" $(seq 200)); "
               "for i in $(seq " +
                   std::to_string(kLines) +
                   "); do "
                   "  if [ $((i % 3)) = 0 ]; then printf '%s' \"$body\"; printf ' %s\\n' $i; "
                   "  else echo \"$body $i\"; fi; "
                   "  echo \"$body $i\" >&2; "
                   "done"));
  ASSERT_EQ(r.exit_code, 0) << r.err.substr(0, 2000);
  for (const std::string* stream : {&r.out, &r.err}) {
    std::map<int, int> next;  // rank -> last line number seen
    for (const auto& line : splitLines(*stream)) {
      if (line.starts_with("[gangway ")) continue;  // the agent's own log lines
      // Expected: "[rankN]:" + 200 x "rN-" + " " + line number, and nothing else.
      ASSERT_TRUE(line.size() > 8 && line.starts_with("[rank") && line[6] == ']' && line[7] == ':')
          << "malformed line: " << line.substr(0, 200);
      const int rank = line[5] - '0';
      ASSERT_TRUE(rank >= 0 && rank < 4) << line.substr(0, 200);
      std::string body;
      for (int i = 0; i < 200; ++i) body += "r" + std::to_string(rank) + "-";
      ASSERT_EQ(line.substr(8, body.size()), body) << "line mixed with another: " << line;
      const std::string number = line.substr(8 + body.size());
      ASSERT_TRUE(number.size() > 1 && number[0] == ' ' &&
                  number.find_first_not_of("0123456789", 1) == std::string::npos)
          << "malformed line end: " << line.substr(0, 200);
      ASSERT_EQ(std::stoi(number.substr(1)), ++next[rank])
          << "lines lost or reordered for rank " << rank;
    }
    for (int rank = 0; rank < 4; ++rank) EXPECT_EQ(next[rank], kLines);
  }
}

TEST(AgentTest, ErrorFileSummaryNamesTheFailingRank) {
  const AgentResult r = runAgent(shellJob(
      {"--nproc-per-node", "3"},
      "if [ $RANK = 2 ]; then "
      "  printf '{\"message\": {\"message\": \"RuntimeError: boom from rank %s\", \"extraInfo\": "
      "{\"py_callstack\": \"Traceback: line 1\", \"timestamp\": \"1700000000\"}}}' $RANK "
      "    > $TORCHELASTIC_ERROR_FILE; exit 1; fi; exec sleep 300"));
  EXPECT_EQ(r.exit_code, 1);
  const auto root = r.err.find("Root Cause");
  ASSERT_NE(root, std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rank      : 2 (local_rank: 2)", root), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("RuntimeError: boom from rank 2", root), std::string::npos);
  EXPECT_NE(r.err.find("Traceback: line 1", root), std::string::npos);
  EXPECT_NE(r.err.find("/attempt_0/2/error.json", root), std::string::npos);
}

TEST(AgentTest, BadInputGetsOneLineAndStartsNothing) {
  TempDir tmp;
  const std::string marker = tmp.file("started");
  const std::string no_exec = tmp.file("no_exec.sh");
  writeFile(no_exec, "#!/bin/sh\ntouch " + marker + "\n", 0644);
  const std::string no_shebang = tmp.file("no_shebang");
  writeFile(no_shebang, "touch " + marker + "\n", 0755);
  const std::string touch = "touch " + marker;
  const std::vector<std::vector<std::string>> cases = {
      {"run", "--bogus", "--no-python", "/bin/sh", "-c", touch},
      {"run", "--nproc-per-node", "0", "--no-python", "/bin/sh", "-c", touch},
      {"run", "--nnodes", "3:1", "--no-python", "/bin/sh", "-c", touch},
      {"run", "--max-restarts", "-1", "--no-python", "/bin/sh", "-c", touch},
      {"run", "--nproc-per-node"},
      {"run", tmp.file("missing.py")},
      {"run", "--no-python", no_exec},
      {"run", "--no-python", no_shebang},
      {"run", "--no-python", "no-such-program-anywhere"},
      {"run", "--log-dir", "/proc/forbidden/logs", "--no-python", "/bin/sh", "-c", touch},
      {"run"},
      {"frobnicate"},
  };
  for (const auto& args : cases) {
    const AgentResult r = runAgent(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(r.exit_code, 2) << joined << "\n" << r.err;
    const auto lines = splitLines(r.err);
    ASSERT_EQ(lines.size(), 1u) << joined << "\n" << r.err;
    EXPECT_TRUE(lines[0].starts_with("gangway run: error: ") ||
                lines[0].starts_with("gangway: error: "))
        << lines[0];
    EXPECT_TRUE(r.out.empty()) << r.out;
    EXPECT_TRUE(readFile(marker).empty() && !std::filesystem::exists(marker)) << joined;
  }
}

TEST(AgentTest, LogDirRedirectsTeeAndFilter) {
  TempDir tmp;
  const AgentResult r =
      runAgent(shellJob({"--nproc-per-node", "2", "--log-dir", tmp.path(), "--redirects", "1",
                         "--tee", "2", "--local-ranks-filter", "1"},
                        "echo out-$RANK; echo err-$RANK >&2"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // stdout redirected: files only. stderr teed: files and console, rank 1 only on the console.
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("[rank1]:err-1\n"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("[rank0]:"), std::string::npos) << r.err;
  std::vector<std::filesystem::path> roots;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path())) roots.push_back(e.path());
  ASSERT_EQ(roots.size(), 1u);
  for (int rank = 0; rank < 2; ++rank) {
    const auto dir = roots[0] / "attempt_0" / std::to_string(rank);
    EXPECT_EQ(readFile((dir / "stdout.log").string()), "out-" + std::to_string(rank) + "\n");
    EXPECT_EQ(readFile((dir / "stderr.log").string()), "err-" + std::to_string(rank) + "\n");
  }
}

TEST(AgentTest, LogFilesArePerAttempt) {
  TempDir tmp;
  const AgentResult r = runAgent(
      shellJob({"--nproc-per-node", "1", "--max-restarts", "1", "--log-dir", tmp.path(), "-r", "3"},
               "echo attempt $TORCHELASTIC_RESTART_COUNT; [ $TORCHELASTIC_RESTART_COUNT = 1 ]"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::filesystem::path> roots;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path())) roots.push_back(e.path());
  ASSERT_EQ(roots.size(), 1u);
  EXPECT_EQ(readFile((roots[0] / "attempt_0/0/stdout.log").string()), "attempt 0\n");
  EXPECT_EQ(readFile((roots[0] / "attempt_1/0/stdout.log").string()), "attempt 1\n");
}

TEST(AgentTest, PythonModuleAndRunPathEntrypoints) {
  TempDir tmp;
  std::filesystem::create_directories(tmp.file("pkg"));
  writeFile(tmp.file("pkg/__init__.py"), "");
  writeFile(tmp.file("pkg/hello.py"),
            "import os, sys\nprint('module', os.environ['RANK'], sys.argv[1:], __name__)\n");
  writeFile(tmp.file("script.py"),
            "import os, sys\nprint('script', os.environ['RANK'], sys.argv, __name__)\n");
  const std::map<std::string, std::string> env = {{"PYTHONPATH", tmp.path()}};
  AgentResult r = runAgent({"run", "--nproc-per-node", "2", "-m", "pkg.hello", "--x", "1"}, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(rankLines(r.out, 1), std::vector<std::string>{"module 1 ['--x', '1'] __main__"});
  r = runAgent({"run", "--run-path", tmp.file("script.py"), "a"}, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(rankLines(r.out, 0),
            std::vector<std::string>{"script 0 ['" + tmp.file("script.py") + "', 'a'] __main__"});
  r = runAgent({"run", tmp.file("script.py"), "b"}, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(rankLines(r.out, 0),
            std::vector<std::string>{"script 0 ['" + tmp.file("script.py") + "', 'b'] __main__"});
}

TEST(AgentTest, HelpIsActionable) {
  const AgentResult r = runAgent({"run", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* needle : {"--nproc-per-node", "--nproc_per_node", "PET_NPROC_PER_NODE",
                             "--max-restarts", "--grace-period", "--redirects", "Examples:"}) {
    EXPECT_NE(r.out.find(needle), std::string::npos) << needle;
  }
}

}  // namespace
}  // namespace gangway::testing
