#include "gangway/launcher/worker_env.h"

#include <absl/strings/str_cat.h>

extern char** environ;  // NOLINT(readability-identifier-naming): POSIX name

namespace gangway::launcher {

EnvMap buildWorkerEnv(const RunOptions& options, const RoundInfo& round, int local_rank,
                      const std::string& error_file, const EnvMap& base) {
  EnvMap env = base;
  const int rank = round.rank_offset + local_rank;
  auto set = [&env](const char* key, const auto& value) { env[key] = absl::StrCat(value); };
  set("RANK", rank);
  set("LOCAL_RANK", local_rank);
  set("GROUP_RANK", round.group_rank);
  set("ROLE_RANK", rank);  // one role per job: role ranks are global ranks
  set("ROLE_NAME", options.role);
  set("LOCAL_WORLD_SIZE", options.nproc_per_node);
  set("WORLD_SIZE", round.world_size);
  set("GROUP_WORLD_SIZE", round.group_world_size);
  set("ROLE_WORLD_SIZE", round.world_size);
  set("MASTER_ADDR", round.master_addr);
  set("MASTER_PORT", round.master_port);
  set("TORCHELASTIC_RESTART_COUNT", round.restart_count);
  set("TORCHELASTIC_MAX_RESTARTS", options.max_restarts);
  set("TORCHELASTIC_RUN_ID", options.run_id);
  set("TORCHELASTIC_ERROR_FILE", error_file);
  // Workers host their own c10d store (rank 0 listens on MASTER_PORT), as with torchrun's
  // static and c10d backends for the worker store.
  set("TORCHELASTIC_USE_AGENT_STORE", "False");
  if (env.find("NCCL_ASYNC_ERROR_HANDLING") == env.end()) set("NCCL_ASYNC_ERROR_HANDLING", 1);
  if (options.nproc_per_node > 1 && env.find("OMP_NUM_THREADS") == env.end()) {
    set("OMP_NUM_THREADS", 1);
  }
  if (!round.socket_ifname.empty()) {
    for (const char* key : {"GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"}) {
      if (env.find(key) == env.end()) set(key, round.socket_ifname);
    }
  }
  set("GANGWAY_JOB_ID", options.run_id);
  set("GANGWAY_ROUND", round.round);
  if (!round.store.empty()) {
    set("GANGWAY_STORE", round.store);
  } else {
    env.erase("GANGWAY_STORE");  // never hand a worker another job's store
  }
  // What a worker needs to use the store like its agent does (libgangway_comm's bootstrap): the
  // job's secret and the control plane's CA. Never inherited from another job.
  env.erase("GANGWAY_STORE_TOKEN");
  env.erase("GANGWAY_STORE_TLS_CA");
  if (!round.store.empty() && !options.token.empty()) set("GANGWAY_STORE_TOKEN", options.token);
  if (!round.store.empty() && !options.tls_ca_file.empty()) {
    set("GANGWAY_STORE_TLS_CA", options.tls_ca_file);
  }
  return env;
}

EnvMap currentEnvironment() {
  EnvMap env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    const auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

std::vector<std::string> toEnvStrings(const EnvMap& env) {
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) out.push_back(absl::StrCat(k, "=", v));
  return out;
}

}  // namespace gangway::launcher
