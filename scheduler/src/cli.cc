#include "gangway/scheduler/cli.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <absl/strings/strip.h>

#include "gangway/common/file.h"
#include "gangway/common/host_port.h"
#include "gangway/common/hostname.h"
#include "gangway/common/log.h"
#include "gangway/scheduler/leader_election.h"
#include "gangway/scheduler/limits.h"
#include "gangway/scheduler/server.h"
#include "gangway/scheduler/state_store.h"

#include "http_endpoint.h"

namespace gangway::scheduler {
namespace {

struct DurationFlag {
  const char* name;
  const char* help;
  const char* default_seconds;
};

constexpr DurationFlag kDurations[] = {
    {"--last-call-timeout", "Seconds to wait for more agents once --nnodes MIN have joined.", "1"},
    {"--join-timeout", "Seconds a job may wait below --nnodes MIN before it fails.", "600"},
    {"--heartbeat-interval", "Seconds between an agent's heartbeats.", "1"},
    {"--heartbeat-timeout", "Seconds without a heartbeat after which an agent is lost.", "3"},
};

// What a peer can make the control plane hold (limits.h), one flag each.
struct SizeFlag {
  const char* name;
  const char* help;
  std::size_t& (*field)(Limits&);
};

const SizeFlag kSizes[] = {
    {"--max-request-bytes", "Largest request a peer may send, in bytes (gRPC's receive limit).",
     [](Limits& l) -> std::size_t& { return l.max_request_bytes; }},
    {"--max-store-value-bytes", "Largest value in a job's store, in bytes.",
     [](Limits& l) -> std::size_t& { return l.store.max_value_bytes; }},
    {"--max-store-bytes-per-job", "Keys and values one job's store may hold, in bytes.",
     [](Limits& l) -> std::size_t& { return l.store.max_bytes; }},
    {"--max-store-keys-per-job", "Keys one job's store may hold.",
     [](Limits& l) -> std::size_t& { return l.store.max_keys; }},
    {"--max-waits-per-job", "Store Get and Wait calls one job may have waiting at once.",
     [](Limits& l) -> std::size_t& { return l.store.max_waits; }},
    {"--max-jobs", "Rendezvous jobs held at once (ended ones still retained count).",
     [](Limits& l) -> std::size_t& { return l.max_jobs; }},
    {"--max-agents-per-job", "Agents one job may have (members, standbys and waiting).",
     [](Limits& l) -> std::size_t& { return l.max_agents_per_job; }},
    {"--max-stream-bytes",
     "Unread events one Watch stream may queue, in bytes, before it is closed and its agent "
     "reconnects.",
     [](Limits& l) -> std::size_t& { return l.max_stream_bytes; }},
};

std::string defaultListen() { return formatHostPort("0.0.0.0", kDefaultControlPlanePort); }

absl::StatusOr<absl::Duration> seconds(const CLI::App& app, const DurationFlag& f) {
  const CLI::Option* opt = app.get_option(f.name);
  const std::string text = opt->count() > 0 ? opt->as<std::string>() : f.default_seconds;
  double v = 0;
  if (!absl::SimpleAtod(text, &v) || !(v > 0) || v > 1e7) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid ", f.name, " '", text, "': expected a positive number of seconds"));
  }
  return absl::Seconds(v);
}

}  // namespace

void addSchedulerFlags(CLI::App& app) {
  app.add_option("--listen")
      ->description(
          absl::StrCat("Address to serve the control plane on, HOST:PORT or [IPv6]:PORT (port 0: "
                       "any free port). [default: ",
                       defaultListen(), "]"))
      ->type_name("ADDR");
  for (const auto& f : kDurations) {
    app.add_option(f.name)
        ->description(absl::StrCat(f.help, " [default: ", f.default_seconds, "]"))
        ->type_name("SECONDS");
  }
  Limits defaults;  // not const: the flags' accessors return references
  for (const auto& f : kSizes) {
    app.add_option(f.name)
        ->description(absl::StrCat(f.help, " [default: ", f.field(defaults), "]"))
        ->type_name("N");
  }
  app.add_option("--tls-cert")->description("PEM certificate: serve TLS (with --tls-key).");
  app.add_option("--tls-key")->description("PEM private key for --tls-cert.");
  // The cluster scheduler.
  app.add_option("--data-dir")
      ->description(
          "Run the cluster scheduler (pool agents, gangway submit) with its state in this "
          "directory: a write-ahead log fsynced before every acknowledgement, and snapshots.")
      ->type_name("DIR");
  app.add_option("--etcd")
      ->description(
          "Run the cluster scheduler with its state in etcd v3 (HOST:PORT[,...]); replicas "
          "on the same etcd elect one leader, the others wait to take over.")
      ->type_name("ENDPOINTS");
  app.add_option("--etcd-prefix")
      ->description("Key prefix in etcd. [default: /gangway/]")
      ->type_name("PREFIX");
  app.add_option("--admin-token-file")
      ->description(
          "File holding the operator token that submit, drain and the listings need (resize, "
          "cancel and jobs take it or the job's own token). Needed off loopback. [default: none: "
          "operator calls are open]")
      ->type_name("PATH");
  app.add_option("--join-token-file")
      ->description(
          "File holding the cluster's join token (a Kubernetes Secret): agents need it to create "
          "a rendezvous job, pool agents to register their node. Needed off loopback. [default: "
          "none: anyone may create a job]")
      ->type_name("PATH");
  app.add_flag("--insecure")
      ->description(
          "Listen on a non-loopback address without --join-token-file (and, for the cluster "
          "scheduler, --admin-token-file): anyone who reaches the port may create jobs, register "
          "nodes and submit. A warning is printed at start.");
  app.add_option("--queue")
      ->description(
          "A queue and its GPU quota (0: unlimited); repeat for more. 'default' always "
          "exists.")
      ->type_name("NAME=GPUS")
      ->take_all()
      ->expected(1, -1);
  app.add_option("--min-resize-interval")
      ->description("Seconds between two elastic growths of one job (anti-thrash). [default: 30]")
      ->type_name("SECONDS");
  app.add_option("--metrics-listen")
      ->description(
          "Serve HTTP at HOST:PORT: /metrics (Prometheus), /healthz (200 while the process "
          "runs) and /readyz (200 once it serves: recovered, and leading with --etcd; 503 "
          "before), for Kubernetes probes.")
      ->type_name("ADDR");
  app.set_config("--config", "",
                 "TOML file of these flags' long names, e.g. queue = [\"prod=64\"] or "
                 "data-dir = \"/var/lib/gangway\"; the command line overrides it.")
      ->type_name("FILE");
}

int runScheduler(const CLI::App& app) {
  ServerOptions options;
  const CLI::Option* listen = app.get_option("--listen");
  options.listen = listen->count() > 0 ? listen->as<std::string>() : defaultListen();
  absl::Duration* targets[] = {&options.rendezvous.last_call, &options.rendezvous.join_timeout,
                               &options.rendezvous.heartbeat_interval,
                               &options.rendezvous.heartbeat_timeout};
  for (size_t i = 0; i < std::size(kDurations); ++i) {
    auto d = seconds(app, kDurations[i]);
    if (!d.ok()) {
      std::fprintf(stderr, "gangway scheduler: error: %s\n",
                   std::string(d.status().message()).c_str());
      return 2;
    }
    *targets[i] = *d;
  }
  if (options.rendezvous.heartbeat_timeout <= options.rendezvous.heartbeat_interval) {
    std::fprintf(stderr,
                 "gangway scheduler: error: --heartbeat-timeout must be longer than "
                 "--heartbeat-interval\n");
    return 2;
  }
  for (const auto& f : kSizes) {
    const CLI::Option* o = app.get_option(f.name);
    if (o->count() == 0) continue;
    const auto text = o->as<std::string>();
    uint64_t v = 0;
    if (!absl::SimpleAtoi(text, &v) || v < 1 || v > (uint64_t{1} << 40)) {
      std::fprintf(stderr,
                   "gangway scheduler: error: invalid %s '%s': expected a positive integer\n",
                   f.name, text.c_str());
      return 2;
    }
    f.field(options.rendezvous.limits) = static_cast<std::size_t>(v);
  }
  if (const Limits& l = options.rendezvous.limits;
      l.store.max_value_bytes + l.store.max_key_bytes > l.max_request_bytes) {
    std::fprintf(stderr,
                 "gangway scheduler: error: --max-store-value-bytes %zu needs --max-request-bytes "
                 "of at least %zu (the value and its key)\n",
                 l.store.max_value_bytes, l.store.max_value_bytes + l.store.max_key_bytes);
    return 2;
  }
  if (app.get_option("--tls-cert")->count() > 0) {
    options.tls_cert_file = app.get_option("--tls-cert")->as<std::string>();
  }
  if (app.get_option("--tls-key")->count() > 0) {
    options.tls_key_file = app.get_option("--tls-key")->as<std::string>();
  }

  auto opt = [&](const char* name) {
    const CLI::Option* o = app.get_option(name);
    return o->count() > 0 ? o->as<std::string>() : std::string();
  };
  auto usage = [](const std::string& message) {
    std::fprintf(stderr, "gangway scheduler: error: %s\n", message.c_str());
    return 2;
  };
  const std::string data_dir = opt("--data-dir");
  const std::string etcd = opt("--etcd");
  if (!data_dir.empty() && !etcd.empty()) return usage("--data-dir and --etcd exclude each other");
  const bool cluster = !data_dir.empty() || !etcd.empty();
  for (const char* name : {"--etcd-prefix", "--admin-token-file", "--min-resize-interval"}) {
    if (!cluster && app.get_option(name)->count() > 0) {
      return usage(absl::StrCat(name, " needs --data-dir or --etcd (the cluster scheduler)"));
    }
  }
  if (!cluster && app.get_option("--queue")->count() > 0) {
    return usage("--queue needs --data-dir or --etcd (the cluster scheduler)");
  }
  if (const std::string f = opt("--admin-token-file"); !f.empty()) {
    auto token = readSecretFile(f, "--admin-token-file");
    if (!token.ok()) return usage(std::string(token.status().message()));
    options.cluster.admin_token = *std::move(token);
  }
  if (const std::string f = opt("--join-token-file"); !f.empty()) {
    auto token = readSecretFile(f, "--join-token-file");
    if (!token.ok()) return usage(std::string(token.status().message()));
    options.rendezvous.join_token = *std::move(token);
  }
  {
    auto address = parseHostPort(options.listen, "--listen", kDefaultControlPlanePort);
    if (!address.ok()) return usage(std::string(address.status().message()));
    std::vector<std::string> missing;
    if (options.rendezvous.join_token.empty()) missing.emplace_back("--join-token-file");
    if (cluster && options.cluster.admin_token.empty()) missing.emplace_back("--admin-token-file");
    if (!isLoopback(address->host) && !missing.empty()) {
      if (app.get_option("--insecure")->count() == 0) {
        return usage(absl::StrCat("--listen ", options.listen,
                                  " is reachable from other machines: give ",
                                  absl::StrJoin(missing, " and "),
                                  " (see scheduler/README.md, Security), or --insecure "
                                  "to run open"));
      }
      std::fprintf(stderr,
                   "gangway scheduler: warning: --insecure: %s is open to anyone who reaches it "
                   "(no %s)\n",
                   options.listen.c_str(), absl::StrJoin(missing, ", ").c_str());
    }
  }
  const CLI::Option* queues = app.get_option("--queue");
  for (const std::string& q :
       queues->count() > 0 ? queues->as<std::vector<std::string>>() : std::vector<std::string>{}) {
    std::pair<std::string, std::string> kv = absl::StrSplit(q, absl::MaxSplits('=', 1));
    int64_t quota = 0;
    if (kv.first.empty() || (!kv.second.empty() && !absl::SimpleAtoi(kv.second, &quota)) ||
        quota < 0) {
      return usage(absl::StrCat("--queue '", q, "': expected NAME=GPUS (GPUS >= 0)"));
    }
    options.cluster.queues[kv.first] = quota;
  }
  if (const std::string t = opt("--min-resize-interval"); !t.empty()) {
    double v = 0;
    if (!absl::SimpleAtod(t, &v) || v < 0 || v > 1e7) {
      return usage(
          absl::StrCat("--min-resize-interval '", t, "': expected a number of seconds >= 0"));
    }
    options.cluster.policy.min_resize_interval = absl::Seconds(v);
  }
  options.cluster.node_heartbeat_interval = options.rendezvous.heartbeat_interval;
  options.cluster.node_heartbeat_timeout = options.rendezvous.heartbeat_timeout;

  // Stop signals are taken by this thread with sigwait; block them before gRPC starts threads.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);

  // The HTTP endpoint answers before the state is recovered or the leadership won: a standby is
  // alive (/healthz) but not ready (/readyz), so a Service sends no agent to it.
  std::atomic<ControlPlaneServer*> serving{nullptr};
  std::atomic<const char*> waiting{"starting: recovering the state"};
  std::unique_ptr<HttpEndpoint> http;
  if (const std::string metrics_listen = opt("--metrics-listen"); !metrics_listen.empty()) {
    auto started =
        HttpEndpoint::start(metrics_listen, [&](const std::string& path) -> HttpResponse {
          ControlPlaneServer* server = serving.load();
          if (path == "/healthz") return {200, "ok\n"};
          if (path == "/readyz") {
            return server != nullptr ? HttpResponse{200, "serving\n"}
                                     : HttpResponse{503, absl::StrCat(waiting.load(), "\n")};
          }
          if (path == "/metrics") {
            if (server == nullptr) return {503, absl::StrCat(waiting.load(), "\n")};
            return {200, server->cluster() != nullptr ? server->cluster()->metrics() : ""};
          }
          return {404, "served here: /metrics, /healthz, /readyz\n"};
        });
    if (!started.ok()) return usage(std::string(started.status().message()));
    http = *std::move(started);
    std::printf("gangway scheduler: HTTP (/metrics, /healthz, /readyz) on port %d\n", http->port());
    std::fflush(stdout);
  }

  std::unique_ptr<StateStore> store;
  std::unique_ptr<LeaderElection> election;
  if (!data_dir.empty()) {
    auto opened = openEmbeddedStateStore({.data_dir = data_dir});
    if (!opened.ok()) return usage(std::string(opened.status().message()));
    store = *std::move(opened);
  } else if (!etcd.empty()) {
    const std::string prefix = opt("--etcd-prefix").empty() ? "/gangway/" : opt("--etcd-prefix");
    auto created = createLeaderElection({.endpoints = etcd,
                                         .key = absl::StrCat(prefix, "leader"),
                                         .candidate = absl::StrCat(hostName(), "-", ::getpid()),
                                         .ttl_seconds = 5,
                                         .rpc_timeout_seconds = 5});
    if (!created.ok()) {
      std::fprintf(stderr, "gangway scheduler: error: %s\n",
                   std::string(created.status().message()).c_str());
      return 1;
    }
    election = *std::move(created);
    waiting = "standby: waiting to lead (etcd)";
    std::printf("gangway scheduler waiting to lead (etcd %s)\n", etcd.c_str());
    std::fflush(stdout);
    if (absl::Status s = election->campaign(absl::InfiniteFuture()); !s.ok()) {
      std::fprintf(stderr, "gangway scheduler: error: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    auto opened = openEtcdStateStore({.endpoints = etcd,
                                      .prefix = prefix,
                                      .fence_key = election->key(),
                                      .fence_lease = election->lease()});
    if (!opened.ok()) {
      std::fprintf(stderr, "gangway scheduler: error: %s\n",
                   std::string(opened.status().message()).c_str());
      return 1;
    }
    store = *std::move(opened);
  }
  options.cluster_store = store.get();

  auto server = ControlPlaneServer::start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "gangway scheduler: error: %s\n",
                 std::string(server.status().message()).c_str());
    return 2;
  }
  serving = server->get();
  std::printf("gangway scheduler listening on %s\n", (*server)->address().c_str());
  std::fflush(stdout);
  // A leader that loses its lease stops at once: the standby that takes over must be the only
  // one acting (no split brain). The process exits non-zero for its supervisor to restart it.
  std::thread watchdog;
  std::atomic<bool> done{false};
  if (election != nullptr) {
    watchdog = std::thread([&] {
      while (!done.load()) {
        if (!election->isLeader()) {
          logger("scheduler").error("lost the leadership (etcd lease): stopping");
          std::_Exit(1);
        }
        absl::SleepFor(absl::Milliseconds(100));  // polls a flag; not synchronisation
      }
    });
  }
  int sig = 0;
  sigwait(&mask, &sig);
  logger("scheduler").info("received SIG{}: shutting down", sigabbrev_np(sig));
  done = true;
  if (watchdog.joinable()) watchdog.join();
  http.reset();  // before the server its handler reads
  (*server)->shutdown();
  server->reset();
  if (election != nullptr) (void)election->resign();
  return 0;
}

}  // namespace gangway::scheduler
