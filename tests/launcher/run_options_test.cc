#include "gangway/launcher/run_options.h"

#include <filesystem>
#include <fstream>

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace gangway::launcher {
namespace {

namespace fs = std::filesystem;

class RunOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("gangway_opts_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    script_ = (dir_ / "train.py").string();
    std::ofstream(script_) << "print('hi')\n";
    env_["PATH"] = "/usr/local/bin:/usr/bin:/bin";
  }
  void TearDown() override { fs::remove_all(dir_); }

  absl::StatusOr<RunOptions> parse(std::vector<std::string> args) {
    return parseRunArgs(args, env_, host_);
  }
  std::string error(std::vector<std::string> args) {
    auto r = parse(std::move(args));
    EXPECT_FALSE(r.ok());
    return r.ok() ? "" : std::string(r.status().message());
  }

  fs::path dir_;
  std::string script_;
  EnvMap env_;
  HostInfo host_{.cpu_count = 6, .gpu_count = 0};
};

TEST_F(RunOptionsTest, DefaultsMatchTorchrun) {
  auto o = parse({script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->nproc_per_node, 1);
  EXPECT_EQ(o->nnodes_min, 1);
  EXPECT_EQ(o->nnodes_max, 1);
  EXPECT_EQ(o->max_restarts, 0);
  EXPECT_EQ(o->role, "default");
  EXPECT_EQ(o->master_addr, "127.0.0.1");
  EXPECT_EQ(o->master_port, 0);  // picked per round, never a fixed 29500
  EXPECT_EQ(o->rdzv_backend, "static");
  EXPECT_EQ(o->entry, Entry::kPythonScript);
  EXPECT_FALSE(o->run_id.empty());
  EXPECT_NE(o->run_id, "none");
  EXPECT_EQ(o->argv, (std::vector<std::string>{"python3", "-u", script_}));
  EXPECT_EQ(o->program, "/usr/bin/python3");
}

TEST_F(RunOptionsTest, DashAndUnderscoreSpellingsAreEquivalent) {
  for (const auto& [flag, value] : std::vector<std::pair<std::string, std::string>>{
           {"--nproc-per-node", "3"}, {"--nproc_per_node", "3"}}) {
    auto o = parse({flag, value, "--max_restarts=2", "--rdzv-id", "job7", script_});
    ASSERT_TRUE(o.ok()) << o.status();
    EXPECT_EQ(o->nproc_per_node, 3);
    EXPECT_EQ(o->max_restarts, 2);
    EXPECT_EQ(o->run_id, "job7");
  }
  auto o = parse({"--no_python", "--log_dir", "/tmp/x", "--local_ranks_filter", "0", "true"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->entry, Entry::kExecutable);
  EXPECT_EQ(o->log_dir, "/tmp/x");
}

TEST_F(RunOptionsTest, ScriptArgumentsAreNotParsedAsFlags) {
  auto o = parse({"--standalone", script_, "--lr", "3e-4", "--nproc-per-node", "9", "-m"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->nproc_per_node, 1);
  EXPECT_EQ(o->argv, (std::vector<std::string>{"python3", "-u", script_, "--lr", "3e-4",
                                               "--nproc-per-node", "9", "-m"}));
}

TEST_F(RunOptionsTest, PetVariablesAreDefaultsAndFlagsWin) {
  env_["PET_NPROC_PER_NODE"] = "4";
  env_["PET_MAX_RESTARTS"] = "5";
  env_["PET_STANDALONE"] = "1";
  env_["PET_RDZV_ID"] = "from-env";
  auto o = parse({script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->nproc_per_node, 4);
  EXPECT_EQ(o->max_restarts, 5);
  EXPECT_TRUE(o->standalone);
  EXPECT_NE(o->run_id, "from-env");  // --standalone always gets a fresh id, as torchrun
  o = parse({"--nproc-per-node", "2", script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->nproc_per_node, 2);
}

TEST_F(RunOptionsTest, NprocPerNodeKeywords) {
  EXPECT_EQ(parse({"--nproc-per-node", "cpu", script_})->nproc_per_node, 6);
  EXPECT_EQ(parse({"--nproc-per-node", "auto", script_})->nproc_per_node, 6);
  EXPECT_NE(error({"--nproc-per-node", "gpu", script_}).find("(none found)"), std::string::npos);
  host_.gpu_count = 8;
  EXPECT_EQ(parse({"--nproc-per-node", "auto", script_})->nproc_per_node, 8);
  EXPECT_EQ(parse({"--nproc-per-node", "gpu", script_})->nproc_per_node, 8);
}

TEST_F(RunOptionsTest, BadValuesNameTheInputAndWhatWasExpected) {
  EXPECT_EQ(error({"--nproc-per-node", "0", script_}),
            "invalid --nproc-per-node '0': expected a positive integer, 'auto', 'cpu' or 'gpu'");
  EXPECT_EQ(error({"--nnodes", "3:1", script_}),
            "invalid --nnodes '3:1': expected N or MIN:MAX with 1 <= MIN <= MAX");
  EXPECT_EQ(error({"--max-restarts", "-1", script_}),
            "invalid --max-restarts '-1': expected an integer >= 0");
  EXPECT_EQ(error({"--bogus", "1", script_}), "unknown flag '--bogus' (see gangway run --help)");
  EXPECT_NE(error({}).find("missing the training script"), std::string::npos);
  EXPECT_NE(error({"--redirects", "5", script_}).find("invalid --redirects '5'"),
            std::string::npos);
  EXPECT_NE(error({"--nproc-per-node", "2", "--tee", "2:1", script_}).find("local ranks below"),
            std::string::npos);
  EXPECT_NE(error({"--local-ranks-filter", "0,x", script_}).find("--local-ranks-filter"),
            std::string::npos);
  EXPECT_NE(error({"--master-port", "70000", script_}).find("a TCP port"), std::string::npos);
  EXPECT_NE(error({"--rdzv-backend", "zookeeper", script_}).find("static, c10d or gangway"),
            std::string::npos);
  EXPECT_NE(error({"--rdzv-conf", "timeout", script_}).find("KEY=VALUE"), std::string::npos);
  EXPECT_NE(error({"--grace-period", "soon", script_}).find("--grace-period"), std::string::npos);
  EXPECT_NE(error({"--standalone", "--nnodes", "2", script_}).find("single node"),
            std::string::npos);
  EXPECT_NE(error({"--nnodes", "2:3", script_}).find("a fixed N with --rdzv-backend static"),
            std::string::npos);
  EXPECT_NE(error({"--nnodes", "2", "--rdzv-backend", "c10d", script_}).find("--rdzv-endpoint"),
            std::string::npos);
  EXPECT_NE(error({"--rdzv-conf", "tokenfile=/x", script_}).find("not 'tokenfile'"),
            std::string::npos);
  EXPECT_NE(error({"--rdzv-conf", "token_file=/nonexistent/token", script_}).find("cannot be read"),
            std::string::npos);
  EXPECT_NE(error({"--rdzv-conf", "join_timeout=0", script_}).find("join_timeout="),
            std::string::npos);
  for (const char* id : {"..", "a/b", "job 1", "-x"}) {
    EXPECT_NE(error({"--rdzv-endpoint", "127.0.0.1:1", "--rdzv-id", id, script_})
                  .find("invalid --rdzv-id '" + std::string(id) + "': expected 1 to 253 letters"),
              std::string::npos)
        << id;
  }
  EXPECT_NE(error({"--rdzv-conf", "agent_id=a/../b", script_}).find("agent_id= 1 to 253"),
            std::string::npos);
  env_["PET_NPROC_PER_NODE"] = "many";
  EXPECT_EQ(error({script_}),
            "invalid PET_NPROC_PER_NODE 'many': expected a positive integer, 'auto', 'cpu' or "
            "'gpu'");
}

TEST_F(RunOptionsTest, ConflictingEntrypointFlags) {
  EXPECT_NE(error({"-m", "--no-python", "x"}).find("cannot be used together"), std::string::npos);
  EXPECT_NE(error({"--run-path", "-m", "x"}).find("cannot be used together"), std::string::npos);
}

TEST_F(RunOptionsTest, Entrypoints) {
  auto m = parse({"-m", "pkg.train", "--epochs", "1"});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->entry, Entry::kPythonModule);
  EXPECT_EQ(m->argv,
            (std::vector<std::string>{"python3", "-u", "-m", "pkg.train", "--epochs", "1"}));

  auto rp = parse({"--run-path", script_, "a"});
  ASSERT_TRUE(rp.ok()) << rp.status();
  EXPECT_EQ(rp->entry, Entry::kRunPath);
  ASSERT_EQ(rp->argv.size(), 6u);
  EXPECT_EQ(rp->argv[2], "-c");
  EXPECT_EQ(rp->argv[4], script_);
  EXPECT_EQ(rp->argv[5], "a");

  auto np = parse({"--no-python", "sh", "-c", "true"});
  ASSERT_TRUE(np.ok()) << np.status();
  EXPECT_EQ(np->program, "/usr/bin/sh");
  EXPECT_EQ(np->argv, (std::vector<std::string>{"sh", "-c", "true"}));

  env_["PYTHON_EXEC"] = "/usr/bin/python3";
  EXPECT_EQ(parse({script_})->argv[0], "/usr/bin/python3");
  env_["PYTHON_EXEC"] = "/nonexistent/python";
  EXPECT_NE(error({script_}).find("Python interpreter"), std::string::npos);
}

TEST_F(RunOptionsTest, ScriptsThatCannotRunAreRejected) {
  EXPECT_EQ(error({(dir_ / "missing.py").string()}),
            "training script '" + (dir_ / "missing.py").string() + "': no such file");
  EXPECT_NE(error({dir_.string()}).find("not a readable file"), std::string::npos);
  EXPECT_NE(error({"--no-python", "no-such-program-xyz"}).find("not found on PATH"),
            std::string::npos);
  const std::string plain = (dir_ / "plain.txt").string();
  std::ofstream(plain) << "echo hi\n";
  EXPECT_NE(error({"--no-python", plain}).find("not an executable file"), std::string::npos);
  ::chmod(plain.c_str(), 0755);
  EXPECT_NE(error({"--no-python", plain}).find("no '#!' interpreter line"), std::string::npos);
}

TEST_F(RunOptionsTest, OutputRouting) {
  auto o = parse({"--nproc-per-node", "3", "-r", "0:1,2:3", "-t", "2", "--local-ranks-filter",
                  "0,2", script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->redirects, (std::vector<Streams>{Streams::kOut, Streams::kNone, Streams::kAll}));
  EXPECT_EQ(o->tee, std::vector<Streams>(3, Streams::kErr));
  EXPECT_EQ(o->console, (std::vector<bool>{true, false, true}));
}

TEST_F(RunOptionsTest, RendezvousModes) {
  EXPECT_EQ(parse({script_})->rdzv_mode, RdzvMode::kLocal);
  EXPECT_EQ(parse({"--standalone", script_})->rdzv_mode, RdzvMode::kStandalone);
  auto o = parse({"--nnodes", "2:4", "--rdzv-backend", "c10d", "--rdzv-endpoint", "10.0.0.1:29400",
                  "--rdzv-id", "job9", script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->rdzv_mode, RdzvMode::kEndpoint);
  EXPECT_EQ(o->nnodes_min, 2);
  EXPECT_EQ(o->nnodes_max, 4);
  EXPECT_EQ(o->run_id, "job9");
  // Kubeflow's single-node PyTorchJob: c10d with an endpoint from PET_*.
  env_["PET_RDZV_BACKEND"] = "c10d";
  env_["PET_RDZV_ENDPOINT"] = "master:29400";
  o = parse({script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->rdzv_mode, RdzvMode::kEndpoint);
  EXPECT_EQ(o->run_id, "none");  // as torchrun: every agent of the job must agree on it
}

TEST_F(RunOptionsTest, StaticMultiNode) {
  auto o = parse({"--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.7", script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->rdzv_mode, RdzvMode::kEndpoint);
  EXPECT_TRUE(o->static_node_rank);
  EXPECT_EQ(o->rdzv_endpoint, "10.0.0.7:29500");
  EXPECT_EQ(o->is_host, false);
  o = parse({"--nnodes", "2", "--node-rank", "0", "--master-port", "29777", script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->rdzv_endpoint, "127.0.0.1:29777");
  EXPECT_EQ(o->is_host, true);
  EXPECT_NE(error({"--nnodes", "2", "--node-rank", "2", script_}).find("--node-rank"),
            std::string::npos);
}

TEST_F(RunOptionsTest, RdzvConfAndAddresses) {
  const std::string token = (dir_ / "token").string();
  std::ofstream(token) << "s3cret\n";
  std::filesystem::permissions(
      token, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto o = parse({"--rdzv-conf",
                  "join_timeout=60,last_call_timeout=0.5,read_timeout=60,token_file=" + token,
                  "--local-addr", "10.1.2.3", "--master-port", "29600", script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->rdzv_conf.at("join_timeout"), "60");
  EXPECT_EQ(o->join_timeout_s, 60);
  EXPECT_EQ(o->last_call_timeout_s, 0.5);
  EXPECT_EQ(o->token, "s3cret");
  EXPECT_EQ(o->master_addr, "10.1.2.3");
  EXPECT_EQ(o->master_port, 29600);
}

TEST(ProbeHostTest, CountsGpusFromDriverDirectory) {
  const fs::path root = fs::temp_directory_path() / ("gangway_proc_" + std::to_string(::getpid()));
  fs::create_directories(root / "driver/nvidia/gpus/0000:07:00.0");
  fs::create_directories(root / "driver/nvidia/gpus/0000:0f:00.0");
  const HostInfo h = probeHost(root.string());
  EXPECT_EQ(h.gpu_count, 2);
  EXPECT_GE(h.cpu_count, 1);
  EXPECT_EQ(probeHost((root / "none").string()).gpu_count, 0);
  fs::remove_all(root);
}

TEST_F(RunOptionsTest, KubernetesEnvironment) {
  // An Indexed Job's pod index is the node-rank hint.
  env_["JOB_COMPLETION_INDEX"] = "3";
  auto o = parse({script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->rank_hint, 3);
  env_["JOB_COMPLETION_INDEX"] = "-1";
  EXPECT_EQ(error({script_}),
            "JOB_COMPLETION_INDEX '-1': expected an integer >= 0 (the Kubernetes Job's completion "
            "index)");
  env_.erase("JOB_COMPLETION_INDEX");
  EXPECT_FALSE(parse({script_})->rank_hint.has_value());

  // The node's switch path, looked up by node name in a map made from a node label.
  const std::string map = (dir_ / "paths").string();
  std::ofstream(map) << "# made from the node label\nnode-a spine0/leaf1\nnode-b spine1/leaf3\n";
  env_["GANGWAY_NODE_NAME"] = "node-b";
  o = parse({"--network-path-map", map, script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->network_path, "spine1/leaf3");
  EXPECT_TRUE(o->notes.empty());
  // --network-path wins over the map.
  o = parse({"--network-path-map", map, "--network-path", "s9/l9", script_});
  EXPECT_EQ(o->network_path, "s9/l9");
  // A node the map does not name, or no map at all (an optional ConfigMap not created): the job
  // runs without a location, and says why.
  env_["GANGWAY_NODE_NAME"] = "node-z";
  o = parse({"--network-path-map", map, script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->network_path.empty());
  ASSERT_EQ(o->notes.size(), 1u);
  EXPECT_NE(o->notes[0].find("does not name node 'node-z'"), std::string::npos) << o->notes[0];
  o = parse({"--network-path-map", (dir_ / "absent").string(), script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_NE(o->notes.at(0).find("does not exist"), std::string::npos);
  // A malformed map is an error naming the file and line.
  std::ofstream(map) << "node-a spine0/leaf1\nnode-b spine1//leaf3\n";
  EXPECT_EQ(error({"--network-path-map", map, script_})
                .rfind("--network-path-map: network-path map " + map + ":2: ", 0),
            0u);
}

}  // namespace
TEST_F(RunOptionsTest, TokenFileOthersCanReadIsRefused) {
  const std::string token = (dir_ / "open-token").string();
  std::ofstream(token) << "s3cret\n";
  fs::permissions(token, fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);
  const std::string message = error({"--rdzv-conf", "token_file=" + token, script_});
  EXPECT_EQ(message, "--rdzv-conf token_file '" + token +
                         "': permissions 0604 are too open for a secret: it must not be readable "
                         "by others (chmod 600 " +
                         token + ")");
}

TEST_F(RunOptionsTest, RdzvEndpointIsParsedOnceWithTheDefaultPort) {
  auto o = parse({"--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "sched", script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->rdzv_address.host, "sched");
  EXPECT_EQ(o->rdzv_address.port, 29400);
  o = parse({"--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "[fd00::1]:7", script_});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->rdzv_address.host, "fd00::1");
  EXPECT_EQ(o->rdzv_address.port, 7);
  EXPECT_EQ(
      error({"--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "h:99999", script_}),
      "invalid --rdzv-endpoint 'h:99999': expected HOST:PORT with a port 0 to 65535");
  env_["PET_RDZV_ENDPOINT"] = ":29400";
  EXPECT_EQ(error({"--nnodes", "2", "--rdzv-backend", "c10d", script_}),
            "invalid PET_RDZV_ENDPOINT ':29400': expected HOST[:PORT] with a host");
}

TEST_F(RunOptionsTest, ToRunArgsIsReadBackByTheParser) {
  auto args = toRunArgs({{"rdzv-backend", "c10d"},
                         {"rdzv-endpoint", "10.0.0.1:29400"},
                         {"rdzv-id", "job-7"},
                         {"nnodes", "1:4"},
                         {"nproc-per-node", "2"},
                         {"no-python", "1"},
                         {"module", "0"}},
                        {"/bin/echo", "--lr", "3e-4"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(*args,
            (std::vector<std::string>{"--rdzv-backend", "c10d", "--rdzv-endpoint", "10.0.0.1:29400",
                                      "--rdzv-id", "job-7", "--nnodes", "1:4", "--nproc-per-node",
                                      "2", "--no-python", "/bin/echo", "--lr", "3e-4"}));
  auto o = parse(*args);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->run_id, "job-7");
  EXPECT_EQ(o->nnodes_min, 1);
  EXPECT_EQ(o->nnodes_max, 4);
  EXPECT_EQ(o->nproc_per_node, 2);
  EXPECT_EQ(o->entry, Entry::kExecutable);
  EXPECT_EQ(o->argv, (std::vector<std::string>{"/bin/echo", "--lr", "3e-4"}));
  EXPECT_EQ(o->rdzv_mode, RdzvMode::kEndpoint);

  auto unknown = toRunArgs({{"nproc_per_node", "2"}}, {"train.py"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().message(),
            "gangway run has no flag --nproc_per_node (see gangway run --help)");
}

}  // namespace gangway::launcher
