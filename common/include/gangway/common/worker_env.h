// The names of the worker-environment contract (DESIGN.md, "Worker environment"): written by
// `gangway run` (launcher/src/worker_env.cc), read by the workers' libraries (comm's bootstrap).
// Both sides use these constants, never string literals.
#pragma once

namespace gangway::env {

// torchrun's variables, exactly.
inline constexpr char kRank[] = "RANK";
inline constexpr char kLocalRank[] = "LOCAL_RANK";
inline constexpr char kGroupRank[] = "GROUP_RANK";
inline constexpr char kRoleRank[] = "ROLE_RANK";
inline constexpr char kRoleName[] = "ROLE_NAME";
inline constexpr char kLocalWorldSize[] = "LOCAL_WORLD_SIZE";
inline constexpr char kWorldSize[] = "WORLD_SIZE";
inline constexpr char kGroupWorldSize[] = "GROUP_WORLD_SIZE";
inline constexpr char kRoleWorldSize[] = "ROLE_WORLD_SIZE";
inline constexpr char kMasterAddr[] = "MASTER_ADDR";
inline constexpr char kMasterPort[] = "MASTER_PORT";
inline constexpr char kRestartCount[] = "TORCHELASTIC_RESTART_COUNT";
inline constexpr char kMaxRestarts[] = "TORCHELASTIC_MAX_RESTARTS";
inline constexpr char kRunId[] = "TORCHELASTIC_RUN_ID";
inline constexpr char kErrorFile[] = "TORCHELASTIC_ERROR_FILE";
inline constexpr char kUseAgentStore[] = "TORCHELASTIC_USE_AGENT_STORE";
inline constexpr char kOmpNumThreads[] = "OMP_NUM_THREADS";
inline constexpr char kNcclAsyncErrorHandling[] = "NCCL_ASYNC_ERROR_HANDLING";
inline constexpr char kGlooSocketIfname[] = "GLOO_SOCKET_IFNAME";
inline constexpr char kNcclSocketIfname[] = "NCCL_SOCKET_IFNAME";

// gangway's own.
inline constexpr char kJobId[] = "GANGWAY_JOB_ID";
inline constexpr char kRound[] = "GANGWAY_ROUND";
// HOST:PORT of the job's store (the control plane), for comm's bootstrap.
inline constexpr char kStore[] = "GANGWAY_STORE";
// The job's secret and the control plane's CA file, to use the store as the agent does.
inline constexpr char kStoreToken[] = "GANGWAY_STORE_TOKEN";
inline constexpr char kStoreTlsCa[] = "GANGWAY_STORE_TLS_CA";

}  // namespace gangway::env
