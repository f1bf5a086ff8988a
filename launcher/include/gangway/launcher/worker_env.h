// The worker environment contract (DESIGN.md): exactly torchrun's variables, so an unchanged
// PyTorch or DeepSpeed script works, plus gangway's own GANGWAY_* variables.
#pragma once

#include <string>
#include <vector>

#include "gangway/launcher/run_options.h"

namespace gangway::launcher {

// What changes from one rendezvous round (attempt) to the next.
struct RoundInfo {
  int round = 0;          // GANGWAY_ROUND; every restart is a new round
  int restart_count = 0;  // TORCHELASTIC_RESTART_COUNT
  std::string master_addr;
  int master_port = 0;
  int group_rank = 0;        // this node's rank (GROUP_RANK)
  int group_world_size = 1;  // nodes in the round (GROUP_WORLD_SIZE)
  int world_size = 0;        // workers in the round (WORLD_SIZE)
  int rank_offset = 0;       // global rank of this node's local rank 0
  std::string store;         // GANGWAY_STORE; empty until the node has a job store
  // The network interface that carries this node's advertised address: GLOO_SOCKET_IFNAME and
  // NCCL_SOCKET_IFNAME unless the user set them, so that peers are not told an address derived
  // from the host name (often 127.0.1.1 in containers).
  std::string socket_ifname;
};

// Builds the environment of local rank `local_rank`: `base` (the agent's environment) with the
// contract's variables set on top. `error_file` is that worker's TORCHELASTIC_ERROR_FILE.
EnvMap buildWorkerEnv(const RunOptions& options, const RoundInfo& round, int local_rank,
                      const std::string& error_file, const EnvMap& base);

// The agent's own environment as a map.
EnvMap currentEnvironment();

// "KEY=VALUE" strings for execve.
std::vector<std::string> toEnvStrings(const EnvMap& env);

}  // namespace gangway::launcher
