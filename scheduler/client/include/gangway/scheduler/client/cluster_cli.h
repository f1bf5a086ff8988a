// The cluster scheduler's client commands: `gangway submit`, `jobs`, `nodes`, `resize`, `cancel`,
// `drain` (tables, or --json), over the Cluster gRPC service.
#pragma once

#include <string>

namespace CLI {  // NOLINT(readability-identifier-naming): CLI11's namespace
class App;
}

namespace gangway::scheduler {

// Adds the six subcommands to the `gangway` app.
void addClusterCommands(CLI::App& app);
bool isClusterCommand(const std::string& name);
// Runs whichever of them was parsed: its exit status (0 ok, 1 refused or unreachable, 2 bad
// input), or -1 if none was.
int runClusterCommand(const CLI::App& app);

}  // namespace gangway::scheduler
