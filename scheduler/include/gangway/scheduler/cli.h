// `gangway scheduler`: the control plane as a daemon (remote mode). Its flags and entry point,
// registered on the `gangway` command by launcher/src/main.cc.
#pragma once

namespace CLI {  // NOLINT(readability-identifier-naming): CLI11's namespace
class App;
}

namespace gangway::scheduler {

void addSchedulerFlags(CLI::App& app);
// Runs until SIGTERM or SIGINT; returns the process exit code (2 for bad flags).
int runScheduler(const CLI::App& app);

}  // namespace gangway::scheduler
