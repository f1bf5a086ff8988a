// `gangway agent --scheduler ADDR`: a pool agent. It offers its node to the cluster scheduler and
// runs what it is told: for each Launch, a `gangway run` joined to the job's rendezvous on the
// scheduler (--rdzv-conf agent_id=NODE,scheduled=true), which starts and supervises the workers;
// for each Release, a SIGTERM to it (the run leaves the rendezvous and stops its workers), then
// SIGKILL after a grace period. Exits of those runs are reported back.
//
// If the scheduler goes away, the agent keeps its runs going and registers again (telling what it
// runs) for up to --reconnect-timeout; the runs join their rendezvous again on their own. SIGTERM
// or SIGINT stops the runs and the agent.
#pragma once

namespace CLI {  // NOLINT(readability-identifier-naming): CLI11's namespace
class App;
}

namespace gangway::launcher {

void addAgentFlags(CLI::App& app);
// Runs until stopped; the process exit status (2 for bad flags, 1 when the scheduler stays
// unreachable).
int runAgent(const CLI::App& app);

}  // namespace gangway::launcher
