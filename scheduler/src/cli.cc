#include "gangway/scheduler/cli.h"

#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>

#include "gangway/common/log.h"
#include "gangway/scheduler/server.h"

#include <signal.h>

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
          "Address to serve the control plane on, HOST:PORT or [IPv6]:PORT (port 0: any "
          "free port). [default: 0.0.0.0:29400]")
      ->type_name("ADDR");
  for (const auto& f : kDurations) {
    app.add_option(f.name)
        ->description(absl::StrCat(f.help, " [default: ", f.default_seconds, "]"))
        ->type_name("SECONDS");
  }
  app.add_option("--tls-cert")->description("PEM certificate: serve TLS (with --tls-key).");
  app.add_option("--tls-key")->description("PEM private key for --tls-cert.");
}

int runScheduler(const CLI::App& app) {
  ServerOptions options;
  const CLI::Option* listen = app.get_option("--listen");
  options.listen = listen->count() > 0 ? listen->as<std::string>() : "0.0.0.0:29400";
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
  if (app.get_option("--tls-cert")->count() > 0) {
    options.tls_cert_file = app.get_option("--tls-cert")->as<std::string>();
  }
  if (app.get_option("--tls-key")->count() > 0) {
    options.tls_key_file = app.get_option("--tls-key")->as<std::string>();
  }

  // Stop signals are taken by this thread with sigwait; block them before gRPC starts threads.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);

  auto server = ControlPlaneServer::start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "gangway scheduler: error: %s\n",
                 std::string(server.status().message()).c_str());
    return 2;
  }
  std::printf("gangway scheduler listening on %s\n", (*server)->address().c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&mask, &sig);
  logger("scheduler").info("received SIG{}: shutting down", sigabbrev_np(sig));
  (*server)->shutdown();
  return 0;
}

}  // namespace gangway::scheduler
