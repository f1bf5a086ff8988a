#include "gangway/launcher/worker_env.h"

#include <absl/strings/str_cat.h>

#include "gangway/common/worker_env.h"
#include "gangway/scheduler/client/credentials.h"

extern char** environ;  // NOLINT(readability-identifier-naming): POSIX name

namespace gangway::launcher {

EnvMap buildWorkerEnv(const RunOptions& options, const RoundInfo& round, int local_rank,
                      const std::string& error_file, const EnvMap& base) {
  EnvMap worker = base;
  const int rank = round.rank_offset + local_rank;
  auto set = [&worker](const char* key, const auto& value) { worker[key] = absl::StrCat(value); };
  set(env::kRank, rank);
  set(env::kLocalRank, local_rank);
  set(env::kGroupRank, round.group_rank);
  set(env::kRoleRank, rank);  // one role per job: role ranks are global ranks
  set(env::kRoleName, options.role);
  set(env::kLocalWorldSize, options.nproc_per_node);
  set(env::kWorldSize, round.world_size);
  set(env::kGroupWorldSize, round.group_world_size);
  set(env::kRoleWorldSize, round.world_size);
  set(env::kMasterAddr, round.master_addr);
  set(env::kMasterPort, round.master_port);
  set(env::kRestartCount, round.restart_count);
  set(env::kMaxRestarts, options.max_restarts);
  set(env::kRunId, options.run_id);
  set(env::kErrorFile, error_file);
  // Workers host their own c10d store (rank 0 listens on MASTER_PORT), as with torchrun's
  // static and c10d backends for the worker store.
  set(env::kUseAgentStore, "False");
  if (worker.find(env::kNcclAsyncErrorHandling) == worker.end())
    set(env::kNcclAsyncErrorHandling, 1);
  if (options.nproc_per_node > 1 && worker.find(env::kOmpNumThreads) == worker.end()) {
    set(env::kOmpNumThreads, 1);
  }
  if (!round.socket_ifname.empty()) {
    for (const char* key : {env::kGlooSocketIfname, env::kNcclSocketIfname}) {
      if (worker.find(key) == worker.end()) set(key, round.socket_ifname);
    }
  }
  set(env::kJobId, options.run_id);
  set(env::kRound, round.round);
  if (!round.store.empty()) {
    set(env::kStore, round.store);
  } else {
    worker.erase(env::kStore);  // never hand a worker another job's store
  }
  // What a worker needs to use the store like its agent does (libgangway_comm's bootstrap): the
  // job's secret and the control plane's CA. Never inherited from another job.
  worker.erase(env::kStoreToken);
  worker.erase(env::kStoreTlsCa);
  // The store token, not the job's secret: it opens the job's Store and nothing else.
  const std::string store_token = scheduler::storeTokenFor(
      options.token.empty() ? options.join_token : options.token, options.run_id);
  if (!round.store.empty() && !store_token.empty()) set(env::kStoreToken, store_token);
  if (!round.store.empty() && !options.tls_ca_file.empty()) {
    set(env::kStoreTlsCa, options.tls_ca_file);
  }
  return worker;
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
