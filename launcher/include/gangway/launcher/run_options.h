// `gangway run` options: torchrun's flags (dash and underscore spellings), PET_* environment
// variables as their defaults, and gangway's own additions, parsed and validated in one place.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <absl/status/statusor.h>

#include "gangway/common/host_port.h"
#include "gangway/topology/mapping.h"

namespace CLI {  // NOLINT(readability-identifier-naming): CLI11's namespace
class App;
}

namespace gangway::launcher {

using EnvMap = std::map<std::string, std::string>;

// Which of a worker's streams go to a log file (torchrun's Std: 0 none, 1 out, 2 err, 3 both).
enum class Streams { kNone = 0, kOut = 1, kErr = 2, kAll = 3 };
inline bool hasOut(Streams s) { return s == Streams::kOut || s == Streams::kAll; }
inline bool hasErr(Streams s) { return s == Streams::kErr || s == Streams::kAll; }

// What the machine offers, for `--nproc-per-node auto|cpu|gpu`.
struct HostInfo {
  int cpu_count = 1;  // CPUs this process may run on (sched_getaffinity)
  int gpu_count = 0;  // NVIDIA GPUs the driver reports
};
// Reads HostInfo from the running machine; `proc_root` replaces "/proc" in tests.
HostInfo probeHost(const std::string& proc_root = "/proc");

enum class Entry {
  kPythonScript,  // python -u script args
  kPythonModule,  // python -u -m module args           (-m, --module)
  kRunPath,       // runpy.run_path(script) in python   (--run-path)
  kExecutable,    // script args, no interpreter        (--no-python)
};

// Where the job's rendezvous lives.
enum class RdzvMode {
  kLocal,       // single node, no control plane (--rdzv-backend static, --nnodes 1)
  kStandalone,  // the agent runs the control plane in-process on loopback (--standalone)
  kEndpoint,    // --rdzv-endpoint: this agent hosts it there if the address is its own and the
                // port is free (host mode), else it connects to it (a `gangway scheduler` daemon
                // or another agent)
};

struct RunOptions {
  // Membership.
  int nnodes_min = 1;
  int nnodes_max = 1;
  int nproc_per_node = 1;
  bool standalone = false;
  std::string rdzv_backend = "static";
  std::string rdzv_endpoint;  // as given (or, for the static backend, MASTER_ADDR:MASTER_PORT)
  HostPort rdzv_address;      // rdzv_endpoint parsed, port 29400 when it has none (kEndpoint)
  std::map<std::string, std::string> rdzv_conf;
  std::string run_id;  // --rdzv-id, or a fresh random id
  int node_rank = 0;
  std::string local_addr;   // --local-addr: the address other nodes reach this one at
  std::string master_addr;  // MASTER_ADDR given to workers
  int master_port = 0;      // 0: a free port is bound for every round
  std::string role = "default";
  RdzvMode rdzv_mode = RdzvMode::kLocal;
  bool static_node_rank = false;   // --rdzv-backend static: --node-rank is this node's rank
  double join_timeout_s = 600;     // --rdzv-conf join_timeout=
  double last_call_timeout_s = 1;  // --rdzv-conf last_call_timeout= (host mode)
  double heartbeat_timeout_s = 3;  // --rdzv-conf heartbeat_timeout= (host mode)
  std::optional<bool> is_host;     // --rdzv-conf is_host=: force (or forbid) host mode
  std::string token_file;          // --rdzv-conf token_file=: the job's secret
  std::string token;               // its content (never logged)
  std::string join_token_file;     // --rdzv-conf join_token_file=: the cluster's join token
  std::string join_token;          // its content (never logged)
  bool insecure = false;           // --rdzv-conf insecure=true: host mode open off loopback
  std::string agent_id;            // --rdzv-conf agent_id=: this agent's id (default: generated)
  bool scheduled = false;          // --rdzv-conf scheduled=true: a job of `gangway scheduler`
  std::string tls_ca_file;         // --rdzv-conf tls_ca=: TLS to the control plane
  std::string tls_cert_file;       // --rdzv-conf tls_cert= / tls_key=: TLS in host mode
  std::string tls_key_file;

  // Topology (launcher/topology): where it comes from and how workers are bound to it.
  std::string topology = "auto";  // auto (discover), off (no binding), or a snapshot file
  std::string sysfs_root = "/";
  topology::NumaBinding numa_binding = topology::NumaBinding::kNode;
  std::string network_path;        // --network-path or $GANGWAY_NETWORK_PATH: "spine2/leaf7"
  std::string parallelism;         // --parallelism: "tp=8,pp=4", for the rendezvous' node order
  std::optional<int> rank_hint;    // $JOB_COMPLETION_INDEX: this node's place among newcomers
  std::vector<std::string> notes;  // warnings for the agent's log (e.g. no network path found)

  // Supervision.
  int max_restarts = 0;
  double monitor_interval_s = 0.1;  // accepted for compatibility; exits are observed at once
  double grace_period_s = 30.0;     // SIGTERM -> SIGKILL delay when stopping workers

  // Output. Vectors are indexed by local rank.
  std::string log_dir;  // empty: a temporary directory
  std::vector<Streams> redirects;
  std::vector<Streams> tee;
  std::vector<bool> console;  // --local-ranks-filter: which local ranks reach the console

  // Entrypoint.
  Entry entry = Entry::kPythonScript;
  std::string script;             // as the user wrote it (script, module or program)
  std::vector<std::string> argv;  // the worker's full argv, argv[0] first
  std::string program;            // absolute path of the file to exec
};

// The flags of `gangway run` as CLI11 sees them, before validation. One per torchrun option.
struct RawRunFlags {
  std::map<std::string, std::string> values;   // canonical name (e.g. "nproc-per-node") -> text
  std::map<std::string, std::string> sources;  // canonical name -> "--nproc-per-node" / "PET_..."
  std::vector<std::string> command;            // training script and its arguments
};

// Registers the flags of `gangway run` on `app`. After app.parse(), call collectRunFlags.
void addRunFlags(CLI::App& app);
// Reads what `app` parsed, filling flags the command line did not give from PET_* in `env`.
RawRunFlags collectRunFlags(const CLI::App& app, const EnvMap& env);

// Validates raw flags into options. Errors are InvalidArgument (or NotFound for a missing script)
// with a one-line message naming the flag or variable and what was expected.
absl::StatusOr<RunOptions> resolveRunOptions(const RawRunFlags& raw, const EnvMap& env,
                                             const HostInfo& host);

// The arguments after `gangway run` that set `flags` (canonical names, as in RawRunFlags, in the
// order given) and run `command`: "--NAME VALUE", or a bare "--NAME" for a flag that takes no
// value (given as "1"; "0" leaves it out). parseRunArgs reads them back. InvalidArgument names a
// flag that `gangway run` does not have. What builds a `gangway run` command line (the pool
// agent) builds it here, from the same table the parser uses.
absl::StatusOr<std::vector<std::string>> toRunArgs(
    const std::vector<std::pair<std::string, std::string>>& flags,
    const std::vector<std::string>& command);

// addRunFlags + parse + collectRunFlags + resolveRunOptions for the arguments after `run`.
absl::StatusOr<RunOptions> parseRunArgs(const std::vector<std::string>& args, const EnvMap& env,
                                        const HostInfo& host);

// Finds `name` the way execvp would, in `path` (a PATH value). Absolute or relative names with a
// slash are checked as they are. NotFound / PermissionDenied name the program.
absl::StatusOr<std::string> findExecutable(const std::string& name, const std::string& path);

}  // namespace gangway::launcher
