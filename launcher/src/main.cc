// The `gangway` command: one binary, one subcommand per job of the runtime.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>
#include <absl/strings/str_cat.h>

#include "gangway/common/log.h"
#include "gangway/launcher/pool_agent.h"
#include "gangway/launcher/run_options.h"
#include "gangway/launcher/supervisor.h"
#include "gangway/launcher/topo_cli.h"
#include "gangway/launcher/worker_env.h"
#include "gangway/scheduler/cli.h"
#include "gangway/scheduler/client/cluster_cli.h"

namespace {

constexpr const char* kRunFooter = R"(
Usage: gangway run [FLAGS] SCRIPT [ARGS...]

Everything from SCRIPT on is the workers' command line. Workers get torchrun's environment
(RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_*, ...) plus GANGWAY_JOB_ID
and GANGWAY_ROUND; each output line is prefixed with [rankN]:.

Examples:
  gangway run --standalone --nproc-per-node 4 train.py --lr 3e-4
  gangway run --standalone --nproc-per-node gpu --max-restarts 3 -m mypkg.train
  gangway run --standalone --nproc-per-node 2 --no-python ./all_reduce_perf -b 8 -e 1G
  gangway run --standalone --nproc-per-node 8 --log-dir logs --tee 3 train.py

Exit status: 0 on success; the failing worker's exit code (128+N for signal N) once
--max-restarts restarts are spent; 128+N when the agent is stopped by signal N; 2 for bad
input. PYTHON_EXEC names the interpreter (default: python3 on PATH).)";

int runGangway(int argc, char** argv) {
  CLI::App app{"gangway: launch, supervise and schedule distributed training and inference jobs",
               "gangway"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "gangway 0.1.0");
  CLI::App* run = app.add_subcommand(
      "run", "Start and supervise the workers of a job on this node (a drop-in for torchrun).");
  run->footer(kRunFooter);
  gangway::launcher::addRunFlags(*run);
  CLI::App* scheduler = app.add_subcommand(
      "scheduler",
      "Run the control plane (rendezvous and job stores) as a daemon that agents reach with "
      "--rdzv-endpoint; it survives the loss of any agent.");
  gangway::scheduler::addSchedulerFlags(*scheduler);
  CLI::App* topo = app.add_subcommand(
      "topo",
      "Show this node's GPUs, NICs, CPUs and NUMA nodes, how they connect, and the GPU/NIC/CPU "
      "binding gangway run gives each local rank; save or read snapshots (JSON, NCCL's XML); "
      "plan node ranks for a cluster (--plan).");
  gangway::launcher::addTopoFlags(*topo);
  CLI::App* agent = app.add_subcommand(
      "agent",
      "Offer this node to a cluster scheduler (gangway scheduler --data-dir/--etcd) and run the "
      "jobs it assigns here, each as a gangway run.");
  gangway::launcher::addAgentFlags(*agent);
  gangway::scheduler::addClusterCommands(app);

  const std::string command = argc > 1 ? argv[1] : "";
  const bool known = command == "run" || command == "scheduler" || command == "topo" ||
                     command == "agent" || gangway::scheduler::isClusterCommand(command);
  const std::string who = known ? "gangway " + command : "gangway";
  if (!command.empty() && command[0] != '-' && !known) {
    std::fprintf(
        stderr,
        "gangway: error: unknown command '%s' (commands: run, scheduler, agent, submit, jobs, "
        "nodes, resize, cancel, drain, topo; see gangway --help)\n",
        argv[1]);
    return 2;
  }
  if (command == "scheduler") {
    // Parsed on its own: CLI11 reads a --config file only for the application it parses.
    CLI::App alone{std::string(scheduler->get_description()), "gangway scheduler"};
    gangway::scheduler::addSchedulerFlags(alone);
    alone.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key is an error
    try {
      alone.parse(argc - 1, argv + 1);
    } catch (const CLI::ParseError& e) {
      if (e.get_exit_code() == 0) return alone.exit(e);  // --help
      std::fprintf(stderr, "gangway scheduler: error: %s (see gangway scheduler --help)\n",
                   e.what());
      return 2;
    }
    return gangway::scheduler::runScheduler(alone);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "%s: error: %s (see %s --help)\n", who.c_str(), e.what(), who.c_str());
    return 2;
  }

  if (*scheduler) return gangway::scheduler::runScheduler(*scheduler);
  if (*topo) return gangway::launcher::runTopo(*topo);
  if (*agent) return gangway::launcher::runAgent(*agent);
  if (const int code = gangway::scheduler::runClusterCommand(app); code >= 0) return code;
  if (*run) {
    const gangway::launcher::EnvMap env = gangway::launcher::currentEnvironment();
    auto options = gangway::launcher::resolveRunOptions(
        gangway::launcher::collectRunFlags(*run, env), env, gangway::launcher::probeHost());
    if (!options.ok()) {
      gangway::launcher::printRunMessage(absl::StrCat("error: ", options.status().message()));
      return 2;
    }
    auto supervisor = gangway::launcher::Supervisor::create(*std::move(options), env);
    if (!supervisor.ok()) {
      gangway::launcher::printRunMessage(absl::StrCat("error: ", supervisor.status().message()));
      return 2;
    }
    const gangway::launcher::RunResult result = (*supervisor)->run();
    gangway::launcher::printRunMessage(result.message);
    return result.exit_code;
  }
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // gangway reports errors as statuses; an exception reaching here is a bug or an allocation
  // failure, and still ends with one line and a non-zero status rather than an abort.
  try {
    return runGangway(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gangway: error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "gangway: error: an unknown exception\n");
  }
  return 1;
}
