#!/usr/bin/env bash
# End to end: pods as network namespaces with their own addresses on a bridge. A `gangway
# scheduler` runs in one namespace and 4 agents in 4 others run a PyTorch DDP (gloo) job; one
# pod's agent is kill -9'ed mid-job, and the 3 survivors must re-form and finish with the right
# result. Exit 77 (skipped) only where network namespaces cannot be made.
#
# usage: netns_elastic_ddp.sh GANGWAY_BINARY
set -euo pipefail
gangway=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
id="gw$$"
pods=(sched p1 p2 p3 p4)
work=$(mktemp -d)
pids=()

# shellcheck source=netns_pods.sh
. "$here/netns_pods.sh"

cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  netns_pods_down "$id" "${pods[@]}"
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; for f in "$work"/*.log; do echo "--- $f" >&2; tail -30 "$f" >&2; done; exit 1; }

netns_pods_up "$id" 10.213.77 "${pods[@]}" || exit $?

# The scheduler at 10.213.77.1; the agents advertise their own pod addresses. The logs exist
# before their writers start, so that following them cannot race their creation.
for f in sched p1 p2 p3 p4; do : >"$work/$f.log"; done
# The cluster's join token: the scheduler listens on a pod address, so it needs one.
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/join-token"
chmod 600 "$work/join-token"
ip netns exec "${id}sched" "$gangway" scheduler --listen 10.213.77.1:29400 \
  --join-token-file "$work/join-token" --heartbeat-timeout 10 --last-call-timeout 3 >"$work/sched.log" 2>&1 &
pids+=($!)
timeout 60 grep -m1 -q 'listening on' <(tail -n +1 --pid="${pids[0]}" -f "$work/sched.log") ||
  fail "the scheduler did not start"
for n in 1 2 3 4; do
  ip netns exec "${id}p${n}" env PYTHON_EXEC=/usr/bin/python3 "$gangway" run \
    --nnodes 3:4 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint 10.213.77.1:29400 \
    --rdzv-id e2e --rdzv-conf join_token_file="$work/join-token" "$here/elastic_ddp.py" >"$work/p${n}.log" 2>&1 &
  pids+=($!)
done
agent_pid() { echo "${pids[$1]}"; }

# Every pod trains in round 1 with world 4, then waits. `tail -f` follows each log (inotify) and
# ends with its agent, so each wait ends on the line, the agent's exit, or the deadline.
for n in 1 2 3 4; do
  timeout 180 grep -m1 -q 'trained world=4' \
    <(tail -n +1 --pid="$(agent_pid $n)" -f "$work/p${n}.log") ||
    fail "pod p$n did not train in round 1"
done

# kill -9 pod 2's agent: its worker dies with it (PR_SET_PDEATHSIG + watchdog).
kill -9 "$(agent_pid 2)"
for n in 1 3 4; do
  rc=0
  wait "$(agent_pid $n)" || rc=$?  # bounded by the test's timeout
  [ "$rc" -eq 0 ] || fail "agent p$n exited with $rc"
done
result=$(cat "$work"/p*.log | grep -o 'result weight=[0-9.]* reference=[0-9.]* world=[0-9]*' || true)
[ -n "$result" ] || fail "no result line"
echo "$result"
[[ "$result" == *"world=3"* ]] || fail "the survivors did not re-form as 3 nodes: $result"
w=$(sed 's/.*weight=\([0-9.]*\).*/\1/' <<<"$result")
ref=$(sed 's/.*reference=\([0-9.]*\).*/\1/' <<<"$result")
[ "$w" = "$ref" ] || fail "weight $w differs from the reference $ref"
if pgrep -f "$here/elastic_ddp.py" >/dev/null; then fail "workers left behind"; fi
echo "1 passed, 0 failed"
