// `gangway topo`: shows what the agent sees of this node (or of a saved snapshot), the local
// mapping it would apply, and the node order it would give a cluster (--plan).
#pragma once

namespace CLI {  // NOLINT(readability-identifier-naming): CLI11's namespace
class App;
}

namespace gangway::launcher {

void addTopoFlags(CLI::App& app);
// Returns the exit status: 0, or 2 with a one-line error for bad input.
int runTopo(const CLI::App& app);

}  // namespace gangway::launcher
