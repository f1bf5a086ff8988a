#include <algorithm>
#include <cctype>

#include <CLI/CLI.hpp>
#include <absl/strings/str_cat.h>

#include "gangway/launcher/run_options.h"

namespace gangway::launcher {
namespace {

// One row per flag. `pet` is false for gangway's own flags, which have no PET_* variable.
struct FlagSpec {
  const char* name;        // canonical dash spelling, without "--"
  const char* short_name;  // "-m" or nullptr
  bool is_flag;            // takes no value
  const char* default_value;
  bool pet;
  const char* help;
};

constexpr FlagSpec kFlags[] = {
    {"nnodes", nullptr, false, "1:1", true,
     "Number of nodes, N or MIN:MAX (elastic: the job runs with any count in the range; more "
     "than one needs --rdzv-endpoint)."},
    {"nproc-per-node", nullptr, false, "1", true,
     "Workers per node: an integer, 'gpu' (one per GPU), 'cpu' (one per CPU) or 'auto' (GPUs if "
     "any, else CPUs)."},
    {"rdzv-backend", nullptr, false, "static", true,
     "Rendezvous backend: static, c10d or gangway."},
    {"rdzv-endpoint", nullptr, false, "", true, "Rendezvous endpoint, HOST[:PORT]."},
    {"rdzv-id", nullptr, false, "none", true,
     "Job id shared by all nodes (TORCHELASTIC_RUN_ID, GANGWAY_JOB_ID); 'none' or --standalone: "
     "a random id."},
    {"rdzv-conf", nullptr, false, "", true,
     "Rendezvous settings, KEY=VALUE[,KEY=VALUE...]: join_token_file=FILE (the cluster's join "
     "token, the scheduler's --join-token-file: creating the job needs it), token_file=FILE (a "
     "secret of the job's own, the same file on every node), insecure=true (host the rendezvous "
     "off loopback without a secret), tls_ca=, tls_cert=, tls_key= (PEM files), is_host=, "
     "agent_id=, join_timeout=, last_call_timeout=, heartbeat_timeout= (seconds)."},
    {"standalone", nullptr, true, "0", true,
     "Single-node job with its rendezvous on this machine; no other rendezvous flag is needed."},
    {"max-restarts", nullptr, false, "0", true,
     "How many times the workers are restarted after a worker fails before the job fails."},
    {"monitor-interval", nullptr, false, "0.1", true,
     "Accepted for torchrun compatibility; gangway sees worker exits at once, without polling."},
    {"start-method", nullptr, false, "spawn", true,
     "Accepted for torchrun compatibility (spawn, fork, forkserver); workers are always exec'd."},
    {"role", nullptr, false, "default", true, "Role of the workers (ROLE_NAME)."},
    {"module", "-m", true, "0", true, "Run the script as a Python module, like 'python -m'."},
    {"no-python", nullptr, true, "0", true,
     "Run the script as a program, without the Python interpreter."},
    {"run-path", nullptr, true, "0", true,
     "Run the script with runpy.run_path in the Python interpreter."},
    {"log-dir", nullptr, false, "", true,
     "Directory for per-attempt, per-rank stdout.log, stderr.log and error.json files."},
    {"redirects", "-r", false, "0", true,
     "Send worker streams only to log files: 0 none, 1 stdout, 2 stderr, 3 both; or per local "
     "rank, e.g. 0:1,1:3."},
    {"tee", "-t", false, "0", true,
     "Copy worker streams to log files and to the console; same values as --redirects."},
    {"local-ranks-filter", nullptr, false, "", true,
     "Show only these local ranks' output on the console, e.g. 0 or 0,2 (log files keep all)."},
    {"node-rank", nullptr, false, "0", true, "Rank of this node (static rendezvous)."},
    {"master-addr", nullptr, false, "127.0.0.1", true, "MASTER_ADDR given to the workers."},
    {"master-port", nullptr, false, "", true,
     "MASTER_PORT given to the workers; when not given, a free port is bound for every round."},
    {"local-addr", nullptr, false, "", true,
     "Address of this node that other nodes and the workers use to reach it."},
    {"topology", nullptr, false, "auto", false,
     "Where this node's topology comes from: auto (discover GPUs, NICs and NUMA nodes), off (no "
     "binding), or a snapshot FILE (gangway topo --json, or NCCL's topology XML)."},
    {"sysfs-root", nullptr, false, "/", false,
     "Discover the topology under DIR instead of / (see gangway topo --sysfs-root)."},
    {"numa-binding", nullptr, false, "node", false,
     "CPU and memory binding of each worker when the node has GPUs: none, node (the CPUs of its "
     "GPU's NUMA node, memory preferred there) or exclusive (an even share of those CPUs, memory "
     "bound to the node)."},
    {"network-path", nullptr, false, "", false,
     "This node's switch path, top first (e.g. spine2/leaf7), for the node order; default "
     "$GANGWAY_NETWORK_PATH."},
    {"network-path-map", nullptr, false, "", false,
     "When no --network-path is given: a file of 'NODE PATH' lines (e.g. made from a Kubernetes "
     "node label) in which this node, $GANGWAY_NODE_NAME or the hostname, is looked up."},
    {"parallelism", nullptr, false, "", false,
     "Megatron's parallel sizes, e.g. tp=8,pp=4 (dp: the rest): node ranks keep tensor-parallel "
     "groups in NVLink domains and data-parallel groups under one leaf switch."},
    {"grace-period", nullptr, false, "30", false,
     "Seconds between SIGTERM and SIGKILL when workers are stopped (failure, restart or a signal "
     "to the agent)."},
};

std::string petName(absl::string_view name) {
  std::string out = "PET_";
  for (char c : name) out += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return out;
}

const FlagSpec* findFlag(absl::string_view name) {
  for (const FlagSpec& f : kFlags) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

}  // namespace

void addRunFlags(CLI::App& app) {
  for (const FlagSpec& f : kFlags) {
    std::string names;
    if (f.short_name != nullptr) names = absl::StrCat(f.short_name, ",");
    absl::StrAppend(&names, "--", f.name);
    std::string underscored = f.name;
    std::replace(underscored.begin(), underscored.end(), '-', '_');
    if (underscored != f.name) absl::StrAppend(&names, ",--", underscored);
    std::string help = f.help;
    if (f.pet) absl::StrAppend(&help, " [env ", petName(f.name), "]");
    if (!f.is_flag && f.default_value[0] != '\0') {
      absl::StrAppend(&help, " [default: ", f.default_value, "]");
    }
    if (f.is_flag) {
      app.add_flag(names)->description(help);
    } else {
      app.add_option(names)->description(help)->type_name("VALUE");
    }
  }
  // Everything from the first positional argument on is the worker's command line.
  app.prefix_command();
}

RawRunFlags collectRunFlags(const CLI::App& app, const EnvMap& env) {
  RawRunFlags raw;
  for (const FlagSpec& f : kFlags) {
    const CLI::Option* opt = app.get_option(absl::StrCat("--", f.name));
    const std::string pet = petName(f.name);
    if (opt->count() > 0) {
      raw.values[f.name] = f.is_flag ? "1" : opt->as<std::string>();
      raw.sources[f.name] = absl::StrCat("--", f.name);
    } else if (auto it = env.find(pet); f.pet && it != env.end()) {
      raw.values[f.name] = it->second;
      raw.sources[f.name] = pet;
    } else {
      raw.values[f.name] = f.default_value;
    }
  }
  raw.command = app.remaining();
  return raw;
}

absl::StatusOr<std::vector<std::string>> toRunArgs(
    const std::vector<std::pair<std::string, std::string>>& flags,
    const std::vector<std::string>& command) {
  std::vector<std::string> args;
  for (const auto& [name, value] : flags) {
    const FlagSpec* f = findFlag(name);
    if (f == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("gangway run has no flag --", name, " (see gangway run --help)"));
    }
    if (f->is_flag) {
      if (value != "0" && !value.empty()) args.push_back(absl::StrCat("--", name));
    } else {
      args.push_back(absl::StrCat("--", name));
      args.push_back(value);
    }
  }
  args.insert(args.end(), command.begin(), command.end());
  return args;
}

absl::StatusOr<RunOptions> parseRunArgs(const std::vector<std::string>& args, const EnvMap& env,
                                        const HostInfo& host) {
  CLI::App app{"gangway run", "run"};
  addRunFlags(app);
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 parses a reversed vector
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  return resolveRunOptions(collectRunFlags(app, env), env, host);
}

}  // namespace gangway::launcher
