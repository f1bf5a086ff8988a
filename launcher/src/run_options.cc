#include "gangway/launcher/run_options.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <random>

#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <absl/strings/ascii.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <absl/strings/str_split.h>
#include <absl/strings/strip.h>

#include "gangway/common/file.h"
#include "gangway/common/hostname.h"
#include "gangway/common/status.h"
#include "gangway/common/text.h"
#include "gangway/topology/discover.h"
#include "gangway/topology/network_path.h"
#include "gangway/topology/placement.h"

namespace gangway::launcher {
namespace {

absl::Status invalid(const RawRunFlags& raw, const std::string& name, absl::string_view expected) {
  const auto src = raw.sources.find(name);
  const std::string& value = raw.values.at(name);
  return absl::InvalidArgumentError(
      absl::StrFormat("invalid %s '%s': expected %s",
                      src == raw.sources.end() ? "--" + name : src->second, value, expected));
}

absl::StatusOr<int> intFlag(const RawRunFlags& raw, const std::string& name, int min, int max,
                            absl::string_view expected) {
  int v = 0;
  if (!absl::SimpleAtoi(raw.values.at(name), &v) || v < min || v > max) {
    return invalid(raw, name, expected);
  }
  return v;
}

absl::StatusOr<double> secondsFlag(const RawRunFlags& raw, const std::string& name, double min) {
  double v = 0;
  if (!absl::SimpleAtod(raw.values.at(name), &v) || !(v >= min) || v > 1e7) {
    return invalid(raw, name,
                   min > 0 ? "a positive number of seconds" : "a number of seconds >= 0");
  }
  return v;
}

absl::StatusOr<bool> boolFlag(const RawRunFlags& raw, const std::string& name) {
  const std::string v = absl::AsciiStrToLower(raw.values.at(name));
  if (v == "1" || v == "true" || v == "yes") return true;
  if (v == "0" || v == "false" || v == "no" || v.empty()) return false;
  return invalid(raw, name, "1 or 0");
}

// torchrun's Std value or mapping: "3" or "0:1,1:3". Ranks not named get kNone.
absl::StatusOr<std::vector<Streams>> streamsFlag(const RawRunFlags& raw, const std::string& name,
                                                 int nproc) {
  const std::string& text = raw.values.at(name);
  constexpr absl::string_view kExpected =
      "0, 1, 2 or 3 (none, stdout, stderr, both), or LOCAL_RANK:VALUE pairs such as 0:1,1:3";
  auto one = [](absl::string_view s, Streams* out) {
    if (s.size() != 1 || s[0] < '0' || s[0] > '3') return false;
    *out = static_cast<Streams>(s[0] - '0');
    return true;
  };
  std::vector<Streams> result(nproc, Streams::kNone);
  Streams s{};
  if (one(text, &s)) {
    std::fill(result.begin(), result.end(), s);
    return result;
  }
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(item, absl::MaxSplits(':', 1));
    int rank = 0;
    if (!absl::SimpleAtoi(kv.first, &rank) || !one(kv.second, &s)) {
      return invalid(raw, name, kExpected);
    }
    if (rank < 0 || rank >= nproc) {
      return invalid(raw, name, absl::StrCat("local ranks below --nproc-per-node (", nproc, ")"));
    }
    result[rank] = s;
  }
  return result;
}

std::string randomRunId() {
  std::random_device rd;
  std::uniform_int_distribution<uint32_t> dist;
  return absl::StrFormat("%08x-%04x-%04x-%04x-%04x%08x", dist(rd), dist(rd) & 0xffff,
                         (dist(rd) & 0x0fff) | 0x4000, (dist(rd) & 0x3fff) | 0x8000,
                         dist(rd) & 0xffff, dist(rd));
}

// --rdzv-conf keys: gangway's own, and torchrun's that have no meaning here (accepted).
absl::Status resolveRdzvConf(const RawRunFlags& raw, RunOptions& o) {
  static constexpr absl::string_view kIgnored[] = {
      "timeout",    "read_timeout",        "close_timeout",         "is_host",
      "store_type", "keep_alive_interval", "keep_alive_max_attempt"};
  for (const auto& entry : o.rdzv_conf) {
    // Named, not bound: the lambda below captures them (clang-tidy 14 cannot parse a lambda that
    // captures a structured binding).
    const std::string& key = entry.first;
    const std::string& value = entry.second;
    auto seconds = [&](double* out) -> absl::Status {
      if (!absl::SimpleAtod(value, out) || !(*out > 0) || *out > 1e7) {
        return invalid(raw, "rdzv-conf", absl::StrCat(key, "= a positive number of seconds"));
      }
      return absl::OkStatus();
    };
    if (key == "join_timeout") {
      GW_RETURN_IF_ERROR(seconds(&o.join_timeout_s));
    } else if (key == "last_call_timeout") {
      GW_RETURN_IF_ERROR(seconds(&o.last_call_timeout_s));
    } else if (key == "heartbeat_timeout") {
      GW_RETURN_IF_ERROR(seconds(&o.heartbeat_timeout_s));
    } else if (key == "token_file") {
      o.token_file = value;
      GW_ASSIGN_OR_RETURN(o.token, readSecretFile(value, "--rdzv-conf token_file"));
    } else if (key == "join_token_file") {
      o.join_token_file = value;
      GW_ASSIGN_OR_RETURN(o.join_token, readSecretFile(value, "--rdzv-conf join_token_file"));
    } else if (key == "insecure") {
      if (value != "true" && value != "false") {
        return invalid(raw, "rdzv-conf", "insecure=true or insecure=false");
      }
      o.insecure = value == "true";
    } else if (key == "is_host") {
      const std::string v = absl::AsciiStrToLower(value);
      if (v == "1" || v == "true") {
        o.is_host = true;
      } else if (v == "0" || v == "false") {
        o.is_host = false;
      } else {
        return invalid(raw, "rdzv-conf", "is_host=true or is_host=false");
      }
    } else if (key == "scheduled") {
      const std::string v = absl::AsciiStrToLower(value);
      if (v != "1" && v != "true" && v != "0" && v != "false") {
        return invalid(raw, "rdzv-conf", "scheduled=true or scheduled=false");
      }
      o.scheduled = v == "1" || v == "true";
    } else if (key == "agent_id") {
      if (!isName(value)) return invalid(raw, "rdzv-conf", "agent_id= " + nameRule());
      o.agent_id = value;
    } else if (key == "tls_ca") {
      o.tls_ca_file = value;
    } else if (key == "tls_cert") {
      o.tls_cert_file = value;
    } else if (key == "tls_key") {
      o.tls_key_file = value;
    } else if (std::find(std::begin(kIgnored), std::end(kIgnored), key) == std::end(kIgnored)) {
      return invalid(raw, "rdzv-conf",
                     absl::StrCat("known keys (join_timeout, last_call_timeout, "
                                  "heartbeat_timeout, is_host, token_file, join_token_file, "
                                  "insecure, agent_id, scheduled, tls_ca, tls_cert, "
                                  "tls_key), "
                                  "not '",
                                  key, "'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> resolveNproc(const RawRunFlags& raw, const HostInfo& host) {
  const std::string& v = raw.values.at("nproc-per-node");
  constexpr absl::string_view kExpected = "a positive integer, 'auto', 'cpu' or 'gpu'";
  if (v == "cpu") return std::max(1, host.cpu_count);
  if (v == "auto") return host.gpu_count > 0 ? host.gpu_count : std::max(1, host.cpu_count);
  if (v == "gpu") {
    if (host.gpu_count <= 0)
      return invalid(raw, "nproc-per-node", "a machine with GPUs (none found)");
    return host.gpu_count;
  }
  return intFlag(raw, "nproc-per-node", 1, 1 << 16, kExpected);
}

absl::Status resolveEntrypoint(const RawRunFlags& raw, const EnvMap& env, RunOptions& o) {
  GW_ASSIGN_OR_RETURN(const bool module, boolFlag(raw, "module"));
  GW_ASSIGN_OR_RETURN(const bool no_python, boolFlag(raw, "no-python"));
  GW_ASSIGN_OR_RETURN(const bool run_path, boolFlag(raw, "run-path"));
  if (module && no_python) {
    return absl::InvalidArgumentError("-m/--module and --no-python cannot be used together");
  }
  if (run_path && (module || no_python)) {
    return absl::InvalidArgumentError(
        "--run-path cannot be used together with -m/--module or --no-python");
  }
  if (raw.command.empty()) {
    return absl::InvalidArgumentError(
        "missing the training script: gangway run [FLAGS] SCRIPT [ARGS...] (see --help)");
  }
  if (raw.command[0].size() > 1 && raw.command[0][0] == '-') {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown flag '", raw.command[0], "' (see gangway run --help)"));
  }
  o.script = raw.command[0];
  const std::vector<std::string> args(raw.command.begin() + 1, raw.command.end());
  const auto path_it = env.find("PATH");
  const std::string path = path_it == env.end() ? "/usr/local/bin:/usr/bin:/bin" : path_it->second;

  if (no_python) {
    o.entry = Entry::kExecutable;
    GW_ASSIGN_OR_RETURN(o.program, findExecutable(o.script, path));
    o.argv = {o.script};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    return absl::OkStatus();
  }
  const auto py_it = env.find("PYTHON_EXEC");
  const std::string python =
      py_it != env.end() && !py_it->second.empty() ? py_it->second : "python3";
  auto interpreter = findExecutable(python, path);
  if (!interpreter.ok()) {
    return absl::Status(interpreter.status().code(),
                        absl::StrCat("Python interpreter (PYTHON_EXEC or python3 on PATH): ",
                                     interpreter.status().message()));
  }
  o.program = *interpreter;
  o.argv = {python, "-u"};
  if (module) {
    o.entry = Entry::kPythonModule;
    o.argv.insert(o.argv.end(), {"-m", o.script});
  } else {
    struct stat st {};
    if (::stat(o.script.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("training script '", o.script, "': no such file"));
    }
    if (!S_ISREG(st.st_mode) || ::access(o.script.c_str(), R_OK) != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("training script '", o.script, "': not a readable file"));
    }
    if (run_path) {
      o.entry = Entry::kRunPath;
      o.argv.insert(o.argv.end(), {"-c",
                                   "import runpy, sys; sys.argv = sys.argv[1:]; "
                                   "runpy.run_path(sys.argv[0], run_name='__main__')",
                                   o.script});
    } else {
      o.entry = Entry::kPythonScript;
      o.argv.push_back(o.script);
    }
  }
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  return absl::OkStatus();
}

}  // namespace

HostInfo probeHost(const std::string& proc_root) {
  HostInfo h;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    h.cpu_count = CPU_COUNT(&set);
  } else {
    h.cpu_count = static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(proc_root + "/driver/nvidia/gpus", ec)) {
    (void)e;
    ++h.gpu_count;
  }
  return h;
}

absl::StatusOr<std::string> findExecutable(const std::string& name, const std::string& path) {
  auto usable = [](const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
  };
  // execve runs ELF binaries and "#!" scripts; anything else would fail in every worker.
  auto runnable = [&name](const std::string& p) -> absl::StatusOr<std::string> {
    char magic[4] = {};
    std::size_t n = 0;
    if (FILE* f = std::fopen(p.c_str(), "rb"); f != nullptr) {
      n = std::fread(magic, 1, sizeof(magic), f);
      std::fclose(f);
    }
    const bool elf =
        n == 4 && magic[0] == 0x7f && magic[1] == 'E' && magic[2] == 'L' && magic[3] == 'F';
    const bool shebang = n >= 2 && magic[0] == '#' && magic[1] == '!';
    if (!elf && !shebang) {
      return absl::FailedPreconditionError(
          absl::StrCat("program '", name, "': not an ELF binary and has no '#!' interpreter line"));
    }
    return p;
  };
  if (name.empty()) return absl::InvalidArgumentError("empty program name");
  if (name.find('/') != std::string::npos) {
    struct stat st {};
    if (::stat(name.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("program '", name, "': no such file"));
    }
    if (!usable(name)) {
      return absl::PermissionDeniedError(
          absl::StrCat("program '", name, "': not an executable file"));
    }
    std::error_code ec;
    auto abs = std::filesystem::absolute(name, ec);
    return runnable(ec ? name : abs.string());
  }
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", name);
    if (usable(candidate)) return runnable(candidate);
  }
  return absl::NotFoundError(absl::StrCat("program '", name, "': not found on PATH"));
}

absl::StatusOr<RunOptions> resolveRunOptions(const RawRunFlags& raw, const EnvMap& env,
                                             const HostInfo& host) {
  RunOptions o;
  // --nnodes: N or MIN:MAX.
  {
    const std::string& v = raw.values.at("nnodes");
    constexpr absl::string_view kExpected = "N or MIN:MAX with 1 <= MIN <= MAX";
    std::vector<std::string> parts = absl::StrSplit(v, ':');
    if (parts.empty() || parts.size() > 2 || !absl::SimpleAtoi(parts[0], &o.nnodes_min) ||
        !absl::SimpleAtoi(parts.back(), &o.nnodes_max) || o.nnodes_min < 1 ||
        o.nnodes_min > o.nnodes_max) {
      return invalid(raw, "nnodes", kExpected);
    }
  }
  GW_ASSIGN_OR_RETURN(o.standalone, boolFlag(raw, "standalone"));
  if (o.standalone && o.nnodes_max != 1) {
    return invalid(raw, "nnodes", "1 with --standalone, which runs a single node");
  }
  GW_ASSIGN_OR_RETURN(o.nproc_per_node, resolveNproc(raw, host));

  o.rdzv_backend = raw.values.at("rdzv-backend");
  if (o.rdzv_backend != "static" && o.rdzv_backend != "c10d" && o.rdzv_backend != "gangway") {
    return invalid(raw, "rdzv-backend", "static, c10d or gangway");
  }
  o.rdzv_endpoint = raw.values.at("rdzv-endpoint");
  if (const std::string& conf = raw.values.at("rdzv-conf"); !conf.empty()) {
    for (absl::string_view item : absl::StrSplit(conf, ',')) {
      std::pair<std::string, std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
      if (kv.first.empty() || item.find('=') == absl::string_view::npos) {
        return invalid(raw, "rdzv-conf", "KEY=VALUE[,KEY=VALUE...]");
      }
      o.rdzv_conf[kv.first] = kv.second;
    }
  }
  GW_RETURN_IF_ERROR(resolveRdzvConf(raw, o));
  if (o.standalone) {
    o.rdzv_mode = RdzvMode::kStandalone;
  } else if (o.rdzv_backend != "static" && !o.rdzv_endpoint.empty()) {
    o.rdzv_mode = RdzvMode::kEndpoint;
    const auto src = raw.sources.find("rdzv-endpoint");
    auto address =
        parseHostPort(o.rdzv_endpoint, src == raw.sources.end() ? "--rdzv-endpoint" : src->second,
                      kDefaultControlPlanePort);
    if (!address.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("invalid ", address.status().message()));
    }
    if (address->host.empty()) return invalid(raw, "rdzv-endpoint", "HOST[:PORT] with a host");
    o.rdzv_address = *std::move(address);
  } else if (o.nnodes_max > 1 && o.rdzv_backend == "static") {
    // torchrun's static rendezvous: fixed node ranks, node rank 0 hosts it at the master address.
    if (o.nnodes_min != o.nnodes_max) {
      return invalid(raw, "nnodes",
                     "a fixed N with --rdzv-backend static (use c10d to be elastic)");
    }
    o.rdzv_mode = RdzvMode::kEndpoint;
    o.static_node_rank = true;
  } else if (o.nnodes_max > 1) {
    return absl::InvalidArgumentError(absl::StrCat("--nnodes ", raw.values.at("nnodes"),
                                                   " needs --rdzv-endpoint HOST:PORT (a `gangway "
                                                   "scheduler` or one of the agents)"));
  }
  const std::string& id = raw.values.at("rdzv-id");
  // Agents of one multi-node job must agree on its id; a single node may make one up.
  o.run_id = (o.standalone || ((id.empty() || id == "none") && o.rdzv_mode == RdzvMode::kLocal))
                 ? randomRunId()
                 : id;
  if (!isName(o.run_id)) return invalid(raw, "rdzv-id", nameRule());

  GW_ASSIGN_OR_RETURN(o.max_restarts, intFlag(raw, "max-restarts", 0, 1 << 30, "an integer >= 0"));
  GW_ASSIGN_OR_RETURN(o.monitor_interval_s, secondsFlag(raw, "monitor-interval", 1e-9));
  GW_ASSIGN_OR_RETURN(o.grace_period_s, secondsFlag(raw, "grace-period", 0));
  if (const std::string& m = raw.values.at("start-method");
      m != "spawn" && m != "fork" && m != "forkserver") {
    return invalid(raw, "start-method", "spawn, fork or forkserver");
  }
  o.role = raw.values.at("role");
  if (o.role.empty()) return invalid(raw, "role", "a non-empty name");

  GW_ASSIGN_OR_RETURN(o.node_rank,
                      intFlag(raw, "node-rank", 0, o.nnodes_max - 1,
                              absl::StrCat("0 <= rank < nnodes (", o.nnodes_max, ")")));
  if (const std::string& p = raw.values.at("master-port"); !p.empty()) {
    GW_ASSIGN_OR_RETURN(o.master_port,
                        intFlag(raw, "master-port", 0, 65535, "a TCP port (0 to 65535)"));
  }
  const std::string& local_addr = raw.values.at("local-addr");
  o.local_addr = local_addr;
  o.master_addr = !local_addr.empty() ? local_addr : raw.values.at("master-addr");
  if (o.master_addr.empty()) return invalid(raw, "master-addr", "a host name or address");

  if (o.static_node_rank) {
    const int port = o.master_port != 0 ? o.master_port : 29500;  // torchrun's default
    o.rdzv_address = {.host = raw.values.at("master-addr"), .port = port};
    o.rdzv_endpoint = formatHostPort(o.rdzv_address);
    if (!o.is_host.has_value()) o.is_host = o.node_rank == 0;
    o.master_port = 0;  // the workers' MASTER_PORT is picked on node 0 for every round
  }
  o.log_dir = raw.values.at("log-dir");
  GW_ASSIGN_OR_RETURN(o.redirects, streamsFlag(raw, "redirects", o.nproc_per_node));
  GW_ASSIGN_OR_RETURN(o.tee, streamsFlag(raw, "tee", o.nproc_per_node));
  o.console.assign(o.nproc_per_node, true);
  if (const std::string& filter = raw.values.at("local-ranks-filter"); !filter.empty()) {
    o.console.assign(o.nproc_per_node, false);
    for (absl::string_view item : absl::StrSplit(filter, ',')) {
      int rank = -1;
      if (!absl::SimpleAtoi(item, &rank) || rank < 0 || rank >= o.nproc_per_node) {
        return invalid(raw, "local-ranks-filter",
                       absl::StrCat("comma-separated local ranks below --nproc-per-node (",
                                    o.nproc_per_node, ")"));
      }
      o.console[rank] = true;
    }
  }
  o.topology = raw.values.at("topology");
  if (o.topology.empty()) return invalid(raw, "topology", "auto, off or a snapshot file");
  if (o.topology != "auto" && o.topology != "off") {
    auto loaded = topology::loadTopologyFile(o.topology);
    if (!loaded.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--topology: ", loaded.status().message()));
    }
  }
  o.sysfs_root = raw.values.at("sysfs-root");
  if (std::error_code ec; !std::filesystem::is_directory(o.sysfs_root, ec)) {
    return invalid(raw, "sysfs-root", "a directory");
  }
  {
    auto binding = topology::parseNumaBinding(raw.values.at("numa-binding"));
    if (!binding.ok()) return invalid(raw, "numa-binding", "none, node or exclusive");
    o.numa_binding = *binding;
  }
  o.network_path = raw.values.at("network-path");
  if (o.network_path.empty()) {
    if (auto it = env.find("GANGWAY_NETWORK_PATH"); it != env.end()) o.network_path = it->second;
  }
  if (!o.network_path.empty()) {
    auto parts = topology::parseNetworkPath(o.network_path);
    if (!parts.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          raw.values.at("network-path").empty() ? "GANGWAY_NETWORK_PATH" : "--network-path", ": ",
          parts.status().message()));
    }
  }
  if (const std::string& map = raw.values.at("network-path-map");
      !map.empty() && o.network_path.empty()) {
    auto it = env.find("GANGWAY_NODE_NAME");
    const std::string node = it != env.end() && !it->second.empty() ? it->second : hostName();
    auto path = topology::lookupNetworkPath(map, node);
    if (path.ok()) {
      o.network_path = *path;
    } else if (absl::IsNotFound(path.status())) {
      o.notes.push_back(absl::StrCat("no network path for this node: ", path.status().message()));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--network-path-map: ", path.status().message()));
    }
  }
  // Kubernetes' Indexed Jobs (and JobSets) number their pods: the index orders the nodes that
  // join a new job, so pod N is node rank N when all pods are there and nothing else decides.
  if (auto it = env.find("JOB_COMPLETION_INDEX"); it != env.end() && !it->second.empty()) {
    int index = -1;
    if (!absl::SimpleAtoi(it->second, &index) || index < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("JOB_COMPLETION_INDEX '", it->second,
                       "': expected an integer >= 0 (the Kubernetes Job's completion index)"));
    }
    o.rank_hint = index;
  }
  if (const std::string& p = raw.values.at("parallelism"); !p.empty()) {
    auto parsed = topology::parseParallelism(p);
    if (!parsed.ok()) return absl::InvalidArgumentError(std::string(parsed.status().message()));
    o.parallelism = topology::formatParallelism(*parsed);
  }
  GW_RETURN_IF_ERROR(resolveEntrypoint(raw, env, o));
  return o;
}

}  // namespace gangway::launcher
