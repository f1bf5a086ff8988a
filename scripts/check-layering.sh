#!/usr/bin/env bash
# Checks DESIGN.md's layering rules, on the sources and on CMake's target graph:
# - clients of the control plane (comm/, launcher/, scheduler/client/) include no server header
#   (gangway/scheduler/... outside gangway/scheduler/client/), except the launcher's host mode
#   (launcher/src/host_mode.cc) and the gangway binary's main.cc, which serve it;
# - lower layers include nothing above them: common/ only itself, kernels/ common and itself,
#   runtime/ common, kernels and itself, launcher/topology/ common and itself;
# - in the link graph of a configured build, libgangway_comm, the control-plane client library
#   and the cluster commands do not reach the server (gangway_scheduler), the launcher reaches it
#   only through gangway_launcher_host, and the lower layers reach none of the upper ones.
# Usage: scripts/check-layering.sh [BUILD_DIR]   (default: build/release, configured)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
fail=0
bad() {
  echo "check-layering: $*" >&2
  fail=1
}

# Includes of gangway headers, as "file:line:#include "gangway/..."" lines.
includes() { git ls-files -- "$@" | grep -E '\.(h|cc|cu|cuh)$' | xargs -r grep -Hn '^#include "gangway/' || true; }

while IFS= read -r hit; do
  bad "a client includes a server header: $hit"
done < <(includes comm launcher scheduler/client |
  grep -v -E '^launcher/src/(host_mode|main)\.cc:' |
  grep -E '#include "gangway/scheduler/' | grep -v -E '#include "gangway/scheduler/client/' || true)

check_layer() {  # FOLDER ALLOWED_REGEX
  local folder=$1 allowed=$2
  while IFS= read -r hit; do
    bad "$folder includes a layer above it: $hit"
  done < <(includes "$folder" | grep -v -E "#include \"gangway/($allowed)" || true)
}
check_layer common 'common/'
check_layer kernels 'common/|kernels/'
check_layer runtime 'common/|kernels/|kv/|kv\.h'
check_layer launcher/topology 'common/|topology/'

# The link graph.
[ -f "$build/CMakeCache.txt" ] || { echo "check-layering: $build is not a configured build" >&2; exit 2; }
graph=$(mktemp -d)
trap 'rm -rf "$graph"' EXIT
(cd "$graph" && cmake --graphviz=targets.dot "$OLDPWD/$build" >/dev/null) ||
  { echo "check-layering: cmake --graphviz failed" >&2; exit 2; }
python3 - "$graph/targets.dot" <<'PY' || fail=1
import re, sys
edges = {}
for line in open(sys.argv[1]):
    m = re.search(r'// (\S+) -> (\S+)\s*$', line)
    if m:
        edges.setdefault(m.group(1), set()).add(m.group(2))

def reach(start, without=()):
    seen, todo = set(), [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen and nxt not in without:
                seen.add(nxt)
                todo.append(nxt)
    return seen

ok = True
def forbid(target, forbidden, without=(), why=''):
    global ok
    if target not in edges:
        print(f'check-layering: no target {target} in the build graph', file=sys.stderr)
        ok = False
        return
    for f in sorted(forbidden & reach(target, set(without))):
        print(f'check-layering: {target} links {f}{why}', file=sys.stderr)
        ok = False

upper = {'gangway_scheduler', 'gangway_control_client', 'gangway_cluster_cli', 'gangway_comm',
         'gangway_launcher', 'gangway_launcher_host', 'gangway_proto'}
for client in ('gangway_comm', 'gangway_control_client', 'gangway_cluster_cli'):
    forbid(client, {'gangway_scheduler', 'gangway_topology_discovery'})
forbid('gangway_launcher', {'gangway_scheduler'}, without={'gangway_launcher_host'},
       why=' other than through gangway_launcher_host')
for lower in ('gangway_common', 'gangway_kernels', 'gangway_kv', 'gangway_topology'):
    forbid(lower, upper | {'gangway_topology_discovery'})
sys.exit(0 if ok else 1)
PY
[ "$fail" -eq 0 ] || exit 1
echo "check-layering: ok"
