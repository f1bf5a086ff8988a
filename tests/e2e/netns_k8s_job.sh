#!/usr/bin/env bash
# End to end: the Kubernetes manifests' own command lines, run in network namespaces. The Job of
# deploy/training/cpu and the scheduler StatefulSet of deploy/scheduler/embedded are rendered with
# deploy/validate/validate.mjs --print; the scheduler runs in one namespace with the StatefulSet's
# command and args, and one namespace per Job completion runs the Job container's command and args,
# with $(VAR) expanded from the container's env as the kubelet does, JOB_COMPLETION_INDEX set as
# the Job controller does, and the scheduler's Service name resolving through /etc/netns/NS/hosts.
# Only the image's paths are mapped to this checkout and build.
#
#   1. the pods train together (6 workers), pod i is node rank i, and all exit 0;
#   2. a second run of the Job: pod 2's gangway gets SIGTERM mid-training (a pod deletion); it
#      exits within the pod's grace period, pods 0 and 1 re-form with 4 workers and finish, and the
#      job is not charged a restart for it.
#
# Exit 77 (skipped) where network namespaces cannot be made or Node.js / the validator's
# node_modules are missing (scripts/deps.sh installs them).
#
# usage: netns_k8s_job.sh GANGWAY_BINARY
set -euo pipefail
gangway=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
id="gk$$"
work=$(mktemp -d)
pids=()
pods=(sched)
hosts_dirs=()

# shellcheck source=netns_pods.sh
. "$here/netns_pods.sh"

cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  netns_pods_down "$id" "${pods[@]}"
  for d in "${hosts_dirs[@]}"; do rm -rf "$d"; done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.log; do [ -e "$f" ] && { echo "--- $f" >&2; tail -40 "$f" >&2; }; done
  exit 1
}

# Wait until FILE has a line matching PATTERN, PID (the writer) exits, or SECONDS pass. `tail -f`
# follows the file (inotify) and ends with its writer.
wait_for_line() {
  local file=$1 pattern=$2 pid=$3 seconds=$4
  timeout "$seconds" grep -m1 -q -- "$pattern" <(tail -n +1 --pid="$pid" -f "$file")
}

if ! command -v node >/dev/null || [ ! -d "$repo/deploy/validate/node_modules" ]; then
  echo "SKIP: Node.js or deploy/validate/node_modules is missing (run scripts/deps.sh)"
  exit 77
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: network namespaces are not available here (needs root and iproute2)"
  exit 77
fi

# --- Render the manifests and read what they run. -------------------------------------------
node "$repo/deploy/validate/validate.mjs" --print "$repo/deploy/training/cpu" >"$work/job.json" ||
  fail "rendering deploy/training/cpu"
node "$repo/deploy/validate/validate.mjs" --print "$repo/deploy/scheduler/embedded" \
  >"$work/scheduler.json" || fail "rendering deploy/scheduler/embedded"

# Prints: completions, the rendezvous endpoint's host and port, the Service's name, namespace and
# port, the scheduler's grpc containerPort and the pod's terminationGracePeriodSeconds; writes
# scheduler.toml (the ConfigMap's data).
read -r completions rdzv_host rdzv_port svc_name svc_ns svc_port sched_port grace < <(
  python3 - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
job = next(o for o in json.load(open(f"{work}/job.json")) if o["kind"] == "Job")
objs = json.load(open(f"{work}/scheduler.json"))
sts = next(o for o in objs if o["kind"] == "StatefulSet")
cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("gangway-scheduler"))
svc = next(o for o in objs if o["kind"] == "Service")
c = job["spec"]["template"]["spec"]["containers"][0]
endpoint = next(a.split("=", 1)[1] for a in c["args"] if a.startswith("--rdzv-endpoint="))
host, port = endpoint.rsplit(":", 1)
sc = sts["spec"]["template"]["spec"]["containers"][0]
grpc = next(p for p in svc["spec"]["ports"] if p["name"] == "grpc")
target = next(p["containerPort"] for p in sc["ports"] if p["name"] == grpc["targetPort"])
open(f"{work}/scheduler.toml", "w").write(cm["data"]["scheduler.toml"])
print(job["spec"]["completions"], host, port, svc["metadata"]["name"], svc["metadata"]["namespace"],
      grpc["port"], target, job["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30))
EOF
) || fail "reading the rendered objects"
echo "Job: $completions completions, rendezvous $rdzv_host:$rdzv_port; Service $svc_name.$svc_ns:$svc_port"
[ "$rdzv_host" = "$svc_name.$svc_ns.svc" ] && [ "$rdzv_port" = "$svc_port" ] ||
  fail "the Job's --rdzv-endpoint $rdzv_host:$rdzv_port is not the Service $svc_name.$svc_ns.svc:$svc_port"

# The image's paths, and where they are here.
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/admin-token"
chmod 600 "$work/admin-token"  # as the Secret's defaultMode: a secret open to others is refused
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/join-token"
chmod 600 "$work/join-token"
mkdir -p "$work/data"
: >"$work/network-paths"
for ((i = 0; i < completions; i++)); do echo "node-$i spine0/leaf0" >>"$work/network-paths"; done
path_map=$(
  cat <<EOF
gangway=$gangway
/etc/gangway/scheduler.toml=$work/scheduler.toml
/var/lib/gangway=$work/data
/etc/gangway/admin/token=$work/admin-token
/etc/gangway/join/token=$work/join-token
/usr/share/gangway/examples/ddp_train.py=$repo/deploy/examples/ddp_train.py
/etc/gangway/network/paths=$work/network-paths
EOF
)

# container_argv JSON KIND OUT [FIELD=VALUE...] [-- EXTRA_ARG...]: writes OUT.argv (command + args)
# and OUT.env (the container's env), NUL-separated, for the first container of KIND's pod
# template. $(VAR) in command and args is expanded from the env as Kubernetes does ($$ is $, an
# undefined reference stays as it is); env values from fieldRef are the FIELD=VALUE given; the
# image's paths are mapped (a path as the whole argument, or as the value of --flag=PATH or
# --flag=key=PATH; the command's `gangway`).
container_argv() {
  local json=$1 kind=$2 out=$3
  shift 3
  PATH_MAP="$path_map" python3 - "$json" "$kind" "$out" "$@" <<'EOF'
import json, os, re, sys
json_file, kind, out, *rest = sys.argv[1:]
fields, extra = {}, []
if "--" in rest:
    extra = rest[rest.index("--") + 1:]
    rest = rest[:rest.index("--")]
for f in rest:
    k, v = f.split("=", 1)
    fields[k] = v
obj = next(o for o in json.load(open(json_file)) if o["kind"] == kind)
c = obj["spec"]["template"]["spec"]["containers"][0]
env = {}
ref = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
def expand(s):
    return ref.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), s)
for e in c.get("env", []):
    if "value" in e:
        env[e["name"]] = expand(e["value"])
    elif "fieldRef" in e.get("valueFrom", {}):
        path = e["valueFrom"]["fieldRef"]["fieldPath"]
        if path not in fields:
            sys.exit(f"no value for fieldRef {path}")
        env[e["name"]] = fields[path]
    else:
        sys.exit(f"env {e['name']}: unsupported source {e.get('valueFrom')}")
if "JOB_COMPLETION_INDEX" in fields:  # the Job controller's, for Indexed Jobs
    env["JOB_COMPLETION_INDEX"] = fields["JOB_COMPLETION_INDEX"]
mapping = [l.split("=", 1) for l in os.environ["PATH_MAP"].splitlines()]
def map_path(a):
    prefix = ""
    if "=" in a and not a.startswith("/"):  # --flag=PATH, --flag=key=PATH
        prefix, a = a.split("=", 1)
        return prefix + "=" + map_path(a)
    for src, dst in mapping:
        if src.startswith("/") and (a == src or a.startswith(src + "/")):
            return prefix + dst + a[len(src):]
    return a
argv = [map_path(expand(a)) for a in c.get("command", []) + c.get("args", [])] + extra
argv[0] = dict(mapping).get(argv[0], argv[0])  # the image's gangway on PATH
with open(out + ".argv", "wb") as f:
    f.write(b"".join(a.encode() + b"\0" for a in argv))
with open(out + ".env", "wb") as f:
    f.write(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))
print(" ".join(argv))
EOF
}

# --- The pods: namespaces on one bridge; the scheduler's is SUBNET.1. --------------------------
subnet=10.214.$((RANDOM % 200 + 20))
for ((i = 0; i < completions; i++)); do pods+=("p$i"); done
netns_pods_up "$id" "$subnet" "${pods[@]}" || exit $?
sched_ip="$subnet.1"
pod_ip() { echo "$subnet.$(($1 + 2))"; }
# `ip netns exec NS` bind-mounts /etc/netns/NS/hosts over /etc/hosts: the Service's DNS name.
for ((i = 0; i < completions; i++)); do
  d="/etc/netns/${id}p$i"
  hosts_dirs+=("$d")
  mkdir -p "$d"
  printf '127.0.0.1 localhost\n%s %s\n%s %s\n' "$sched_ip" "$rdzv_host" "$(pod_ip "$i")" \
    "${id}p$i" >"$d/hosts"
done

# The scheduler, as the StatefulSet runs it.
echo "scheduler: $(container_argv "$work/scheduler.json" StatefulSet "$work/sched")"
mapfile -d '' sched_argv <"$work/sched.argv"
: >"$work/sched.log"
ip netns exec "${id}sched" "${sched_argv[@]}" >"$work/sched.log" 2>&1 &
sched_pid=$!
pids+=("$sched_pid")
wait_for_line "$work/sched.log" 'listening on' "$sched_pid" 60 || fail "the scheduler did not start"

# run_job NAME [-- EXTRA_ARG...]: starts the Job's pods (a new run of the Job: a new controller
# uid), pod i's agent pid in job_pids[i], its log in $work/NAME-p<i>.log.
job_pids=()
run_job() {
  local name=$1 uid i argv env_list
  shift
  uid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  job_pids=()
  for ((i = 0; i < completions; i++)); do
    container_argv "$work/job.json" Job "$work/$name-p$i" "status.podIP=$(pod_ip "$i")" \
      "metadata.labels['batch.kubernetes.io/controller-uid']=$uid" "spec.nodeName=node-$i" \
      "JOB_COMPLETION_INDEX=$i" "$@" >"$work/$name-p$i.cmd"
    mapfile -d '' argv <"$work/$name-p$i.argv"
    mapfile -d '' env_list <"$work/$name-p$i.env"
    : >"$work/$name-p$i.log"
    # PYTHON_EXEC: the one difference from the image's environment: there python3 has PyTorch,
    # here Debian's /usr/bin/python3 does (python3 on PATH may be another one).
    ip netns exec "${id}p$i" env "${env_list[@]}" PYTHON_EXEC=/usr/bin/python3 "${argv[@]}" \
      >"$work/$name-p$i.log" 2>&1 &
    job_pids+=($!)
    pids+=($!)
  done
  echo "pod 0 of $name: $(cat "$work/$name-p0.cmd")"
}

# --- 1. The Job as rendered: all pods train together and succeed. -----------------------------
start=$SECONDS
run_job train
for ((i = 0; i < completions; i++)); do
  rc=0
  wait "${job_pids[$i]}" || rc=$?  # bounded by the test's timeout
  [ "$rc" -eq 0 ] || fail "pod $i of the Job exited with $rc"
done
echo "the Job ran in $((SECONDS - start)) s"
workers=$((completions * 2))
grep -q "training on $workers workers" "$work"/train-p*.log || fail "no 'training on $workers workers'"
# Pod i is node rank i (JOB_COMPLETION_INDEX is the node-rank hint): ranks 2i..2i+1.
for ((i = 0; i < completions; i++)); do
  grep -q "ranks $((2 * i))-$((2 * i + 1)) of $workers" "$work/train-p$i.log" ||
    fail "pod $i did not get node rank $i: $(grep -o 'ranks [0-9]*-[0-9]* of [0-9]*' "$work/train-p$i.log" | head -1)"
done
grep -q "done: " "$work"/train-p*.log || fail "the training did not finish"

# --- 2. A second run of the Job; pod 2 is deleted mid-training. --------------------------------
# The manifest's --steps is appended to (the script's last --steps wins) so that the training
# lasts long enough for the SIGTERM to land mid-training.
run_job delete -- --steps=1500
wait_for_line "$work/delete-p0.log" "training on $workers workers" "${job_pids[0]}" 120 ||
  fail "the second run did not train on $workers workers"
wait_for_line "$work/delete-p0.log" "step " "${job_pids[0]}" 120 || fail "no step in the second run"
kill -TERM "${job_pids[2]}"
t0=$SECONDS
rc=0
timeout $((grace + 5)) tail --pid="${job_pids[2]}" -f /dev/null || fail "pod 2 did not exit within its ${grace} s grace period"
wait "${job_pids[2]}" || rc=$?
echo "pod 2 exited with $rc $((SECONDS - t0)) s after SIGTERM"
for i in 0 1; do
  rc=0
  wait "${job_pids[$i]}" || rc=$?
  [ "$rc" -eq 0 ] || fail "pod $i exited with $rc after pod 2 left"
done
grep -q "training on 4 workers" "$work/delete-p0.log" || fail "pods 0 and 1 did not re-form as 4 workers"
grep -q "it left (SIGTERM)" "$work/sched.log" || fail "the scheduler did not see pod 2 leave"
if grep -q "workers failed" "$work/sched.log"; then fail "the job was charged a restart for the deletion"; fi
grep -q "restart 0/" <(grep "starting 2 workers" "$work/delete-p0.log" | tail -1) ||
  fail "the re-formed round counts a restart: $(grep 'starting 2 workers' "$work/delete-p0.log" | tail -1)"
echo "1 passed, 0 failed"
