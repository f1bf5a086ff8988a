#!/usr/bin/env bash
# End to end: the cluster scheduler with pool agents in network namespaces (pods with their own
# addresses on a bridge). An elastic job (--nnodes 1:3) runs on 3 pods; pod p3's link goes down
# (a silent network loss: only missed heartbeats tell) and the job shrinks to 2; the link comes
# back and the job grows to 3 again; a higher-priority 2-node job arrives and the elastic job
# shrinks to 1 to make room. Then both jobs finish. Exit 77 (skipped) only where network
# namespaces cannot be made.
#
# usage: netns_cluster.sh GANGWAY_BINARY
set -euo pipefail
gangway=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
id="gc$$"
pods=(sched p1 p2 p3)
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

fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.log; do echo "--- $f" >&2; tail -40 "$f" >&2; done
  exit 1
}

netns_pods_up "$id" 10.213.78 "${pods[@]}" || exit $?
sched=10.213.78.1:29400

# Waits (up to $3 s) until file $1 has at least $2 lines matching the extended regex $4, following
# the file with tail -f (inotify): no polling, no sleeps.
wait_count() {
  local file=$1 n=$2 secs=$3 re=$4
  local got
  got=$(timeout "$secs" grep -E -m "$n" -c -- "$re" <(tail -n +1 -f "$file") || true)
  [ "${got:-0}" -ge "$n" ] || fail "$file: fewer than $n lines matching /$re/ within ${secs}s"
}

for f in sched p1 p2 p3; do : >"$work/$f.log"; done
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/join-token"
chmod 600 "$work/join-token"
ip netns exec "${id}sched" "$gangway" scheduler --listen "$sched" --data-dir "$work/state" \
  --join-token-file "$work/join-token" --insecure --min-resize-interval 0 >"$work/sched.log" 2>&1 &
pids+=($!)
wait_count "$work/sched.log" 1 60 'listening on'
for n in 1 2 3; do
  ip netns exec "${id}p${n}" "$gangway" agent --scheduler "$sched" --node-id "p${n}" --join-token-file "$work/join-token" \
    --work-dir "$work/agent-p${n}" >"$work/p${n}.log" 2>&1 &
  pids+=($!)
done
wait_count "$work/sched.log" 3 60 'node p[123] registered from 10\.213\.78\.[234] '

submit() {
  ip netns exec "${id}sched" "$gangway" submit --scheduler "$sched" "$@" >>"$work/submit.log" 2>&1 ||
    fail "gangway submit $*"
}
worker='echo "start job=$GANGWAY_JOB_ID world=$WORLD_SIZE rank=$RANK"; while [ ! -e '"$work"'/STOP ]; do sleep 0.1; done'

# 1. The elastic job starts on all three pods in one round.
submit --name el --nnodes 1:3 --no-python /bin/sh -c "$worker"
for n in 1 2 3; do wait_count "$work/p${n}.log" 1 60 'start job=el world=3'; done

# 2. Pod p3's link goes down: heartbeats stop, streams hang. The job shrinks off p3 and the two
#    others run world=2.
ip -n "${id}hub" link set "v${id}4" down
wait_count "$work/sched.log" 1 30 'node p3 lost: no heartbeat'
wait_count "$work/sched.log" 1 30 'job el: shrinks off p3'
for n in 1 2; do wait_count "$work/p${n}.log" 1 30 'start job=el world=2'; done

# 3. The link comes back: p3 registers again and the job grows to three in one round.
ip -n "${id}hub" link set "v${id}4" up
wait_count "$work/sched.log" 1 60 'job el: grows onto p3'
for n in 1 2; do wait_count "$work/p${n}.log" 2 60 'start job=el world=3'; done
wait_count "$work/p3.log" 2 60 'start job=el world=3'

# 4. A higher-priority 2-node job: the elastic one shrinks to 1 (not evicted), the new one runs.
submit --name hi --nnodes 2 --priority 10 --no-python /bin/sh -c "$worker"
wait_count "$work/sched.log" 1 30 'job el: shrinks off .*preempted by hi'
wait_count "$work/sched.log" 1 30 'job hi: admitted on'
wait_count "$work/p1.log" 1 30 'start job=(el world=1|hi world=2)'
wait_count "$work/p2.log" 1 30 'start job=(el world=1|hi world=2)'
wait_count "$work/p3.log" 1 30 'start job=(el world=1|hi world=2)'
grep -q 'evicted' "$work/sched.log" && fail "a job was evicted; shrinking was enough"

# 5. Both jobs finish.
touch "$work/STOP"
wait_count "$work/sched.log" 1 60 'job el succeeded'
wait_count "$work/sched.log" 1 60 'job hi succeeded'
listing=$(ip netns exec "${id}sched" "$gangway" jobs --scheduler "$sched" --all)
echo "$listing"
[ "$(grep -c succeeded <<<"$listing")" -eq 2 ] || fail "jobs --all: $listing"

# Agents stop cleanly and leave nothing behind.
for i in 1 2 3; do kill -TERM "${pids[$i]}"; done
for i in 1 2 3; do
  rc=0
  wait "${pids[$i]}" || rc=$?
  [ "$rc" -eq 0 ] || fail "agent p$i exited with $rc"
done
if pgrep -f "$work/STOP" >/dev/null; then fail "workers left behind"; fi
echo "1 passed, 0 failed"
