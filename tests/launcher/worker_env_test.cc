#include "gangway/launcher/worker_env.h"

#include <gtest/gtest.h>

namespace gangway::launcher {
namespace {

RunOptions options(int nproc) {
  RunOptions o;
  o.nproc_per_node = nproc;
  o.max_restarts = 3;
  o.run_id = "job-1";
  o.role = "trainer";
  return o;
}

RoundInfo round() {
  RoundInfo r;
  r.round = 2;
  r.restart_count = 2;
  r.master_addr = "127.0.0.1";
  r.master_port = 41000;
  r.world_size = 4;
  return r;
}

TEST(WorkerEnvTest, SetsEveryContractVariable) {
  const EnvMap env = buildWorkerEnv(options(4), round(), 3, "/logs/3/error.json", {{"HOME", "/h"}});
  const EnvMap expected = {
      {"HOME", "/h"},
      {"RANK", "3"},
      {"LOCAL_RANK", "3"},
      {"GROUP_RANK", "0"},
      {"ROLE_RANK", "3"},
      {"ROLE_NAME", "trainer"},
      {"LOCAL_WORLD_SIZE", "4"},
      {"WORLD_SIZE", "4"},
      {"GROUP_WORLD_SIZE", "1"},
      {"ROLE_WORLD_SIZE", "4"},
      {"MASTER_ADDR", "127.0.0.1"},
      {"MASTER_PORT", "41000"},
      {"TORCHELASTIC_RESTART_COUNT", "2"},
      {"TORCHELASTIC_MAX_RESTARTS", "3"},
      {"TORCHELASTIC_RUN_ID", "job-1"},
      {"TORCHELASTIC_ERROR_FILE", "/logs/3/error.json"},
      {"TORCHELASTIC_USE_AGENT_STORE", "False"},
      {"NCCL_ASYNC_ERROR_HANDLING", "1"},
      {"OMP_NUM_THREADS", "1"},
      {"GANGWAY_JOB_ID", "job-1"},
      {"GANGWAY_ROUND", "2"},
  };
  EXPECT_EQ(env, expected);
}

TEST(WorkerEnvTest, GlobalRanksOffsetByNode) {
  RoundInfo r = round();
  r.group_rank = 1;
  r.group_world_size = 2;
  r.world_size = 8;
  r.rank_offset = 4;
  const EnvMap env = buildWorkerEnv(options(4), r, 1, "e", {});
  EXPECT_EQ(env.at("RANK"), "5");
  EXPECT_EQ(env.at("ROLE_RANK"), "5");
  EXPECT_EQ(env.at("LOCAL_RANK"), "1");
  EXPECT_EQ(env.at("GROUP_RANK"), "1");
  EXPECT_EQ(env.at("GROUP_WORLD_SIZE"), "2");
  EXPECT_EQ(env.at("WORLD_SIZE"), "8");
}

TEST(WorkerEnvTest, UserSettingsArePreserved) {
  const EnvMap env = buildWorkerEnv(options(4), round(), 0, "e",
                                    {{"OMP_NUM_THREADS", "8"}, {"NCCL_ASYNC_ERROR_HANDLING", "0"}});
  EXPECT_EQ(env.at("OMP_NUM_THREADS"), "8");
  EXPECT_EQ(env.at("NCCL_ASYNC_ERROR_HANDLING"), "0");
}

TEST(WorkerEnvTest, SingleWorkerKeepsOpenMpDefault) {
  const EnvMap env = buildWorkerEnv(options(1), round(), 0, "e", {});
  EXPECT_EQ(env.count("OMP_NUM_THREADS"), 0u);
}

TEST(WorkerEnvTest, StoreAddressOnlyWhenTheRoundHasOne) {
  EXPECT_EQ(buildWorkerEnv(options(2), round(), 0, "e", {{"GANGWAY_STORE", "stale:1"}})
                .count("GANGWAY_STORE"),
            0u);
  RoundInfo r = round();
  r.store = "10.0.0.1:7000";
  EXPECT_EQ(buildWorkerEnv(options(2), r, 0, "e", {}).at("GANGWAY_STORE"), "10.0.0.1:7000");
}

TEST(WorkerEnvTest, StoreSecretAndCaGoWithTheStoreOnly) {
  RunOptions o = options(2);
  o.token = "s3cret";
  o.tls_ca_file = "/etc/ca.pem";
  const EnvMap stale = {{"GANGWAY_STORE_TOKEN", "old"}, {"GANGWAY_STORE_TLS_CA", "/old.pem"}};
  EnvMap env = buildWorkerEnv(o, round(), 0, "e", stale);
  EXPECT_EQ(env.count("GANGWAY_STORE_TOKEN"), 0u);
  EXPECT_EQ(env.count("GANGWAY_STORE_TLS_CA"), 0u);
  RoundInfo r = round();
  r.store = "10.0.0.1:7000";
  env = buildWorkerEnv(o, r, 0, "e", stale);
  // The store token derived from the secret, never the secret itself.
  EXPECT_NE(env.at("GANGWAY_STORE_TOKEN"), "s3cret");
  EXPECT_EQ(env.at("GANGWAY_STORE_TOKEN").size(), 64u);  // HMAC-SHA256, hex
  EXPECT_EQ(env.at("GANGWAY_STORE_TLS_CA"), "/etc/ca.pem");
}

TEST(WorkerEnvTest, SocketInterfaceUnlessTheUserChoseOne) {
  RoundInfo r = round();
  r.socket_ifname = "eth1";
  EnvMap env = buildWorkerEnv(options(2), r, 0, "e", {});
  EXPECT_EQ(env.at("GLOO_SOCKET_IFNAME"), "eth1");
  EXPECT_EQ(env.at("NCCL_SOCKET_IFNAME"), "eth1");
  env = buildWorkerEnv(options(2), r, 0, "e", {{"NCCL_SOCKET_IFNAME", "ib0"}});
  EXPECT_EQ(env.at("NCCL_SOCKET_IFNAME"), "ib0");
  EXPECT_EQ(env.count("GLOO_SOCKET_IFNAME"), 1u);
  EXPECT_EQ(buildWorkerEnv(options(2), round(), 0, "e", {}).count("GLOO_SOCKET_IFNAME"), 0u);
}

TEST(WorkerEnvTest, EnvStringsRoundTrip) {
  EXPECT_EQ(toEnvStrings({{"A", "1"}, {"B", "x=y"}}), (std::vector<std::string>{"A=1", "B=x=y"}));
  EXPECT_FALSE(currentEnvironment().empty());
}

}  // namespace
}  // namespace gangway::launcher
