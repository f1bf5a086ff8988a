#!/usr/bin/env bash
# Two "nodes" as network namespaces with their own addresses, joined by a bridge: a `gangway
# scheduler` in the first, one agent in each with two workers, and the communicator conformance
# suite across them with UCX limited to tcp over the pods' interfaces (no shared memory, no
# loopback), as between two machines. Exit 77 (skipped) only where namespaces cannot be made.
#
# usage: netns_ucx_tcp.sh GANGWAY_BINARY CONFORMANCE_BINARY
set -euo pipefail
gangway=$(realpath "$1")
suite=$(realpath "$2")
id="gwc$$"
pods=(a b)
work=$(mktemp -d)
pids=()

# shellcheck source=../e2e/netns_pods.sh
. "$(dirname "$0")/../e2e/netns_pods.sh"

cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  netns_pods_down "$id" "${pods[@]}"
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; for f in "$work"/*.log; do echo "--- $f" >&2; tail -40 "$f" >&2; done; exit 1; }

netns_pods_up "$id" 10.213.78 "${pods[@]}" || exit $?

: >"$work/sched.log"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/join-token"
chmod 600 "$work/join-token"
ip netns exec "${id}a" "$gangway" scheduler --listen 10.213.78.1:29400 \
  --join-token-file "$work/join-token" >"$work/sched.log" 2>&1 &
pids+=($!)
timeout 60 grep -m1 -q 'listening on' <(tail -n +1 --pid="${pids[0]}" -f "$work/sched.log") ||
  fail "the scheduler did not start"

# tcp only, over the pod's own interface: every byte between ranks crosses the veth pair or the
# pod's stack, as between machines.
for pod in "${pods[@]}"; do
  ip netns exec "${id}${pod}" env UCX_TLS=tcp UCX_NET_DEVICES=eth0 "$gangway" run \
    --nnodes 2 --nproc-per-node 2 --rdzv-backend c10d --rdzv-endpoint 10.213.78.1:29400 \
    --rdzv-id comm-tcp --rdzv-conf join_token_file="$work/join-token" --no-python "$suite" --backend ucx >"$work/$pod.log" 2>&1 &
  pids+=($!)
done
for n in 1 2; do
  rc=0
  wait "${pids[$n]}" || rc=$?  # bounded by the test's timeout
  [ "$rc" -eq 0 ] || fail "agent ${pods[$((n - 1))]} exited with $rc"
done
passed=$(cat "$work"/a.log "$work"/b.log | grep -c 'PASSED  \] 10 tests' || true)
[ "$passed" -eq 4 ] || fail "expected 4 ranks to pass the suite, saw $passed"
grep -q 'ranks 0-1 of 4\|ranks 2-3 of 4' "$work/a.log" || fail "pod a was not part of a 4-rank world"
echo "4 ranks on 2 pods passed the conformance suite over UCX tcp"
