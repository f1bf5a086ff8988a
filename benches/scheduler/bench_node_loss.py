#!/usr/bin/env python3
"""Node loss to the job's new round, end to end, with real processes.

A `gangway scheduler --data-dir` and N pool agents (`gangway agent`) on loopback run one elastic
job (`--nnodes 1:N`) whose workers sleep. Then, repeatedly, one node is lost and the time until the
scheduler has shrunk the job AND its rendezvous has formed the new round (ListJobs: one node less,
a higher round) is measured, polling every 5 ms:

  crash   the node's agent is killed with -9 (its runs die with it): its watch streams break, so
          the loss is known at once;
  freeze  the node's agent and its run are stopped with SIGSTOP: their connections stay open and
          only the missed heartbeats tell (--heartbeat-timeout, 3 s by default; heartbeats every
          1 s, so the last one came 0..1 s before the freeze).

Defaults otherwise, except --min-resize-interval 0 so that the job grows back between repetitions
at once. Goal (issue 7): node loss to new round under 3 s at defaults.

  bench_node_loss.py --gangway build/release/launcher/gangway [--nodes 4] [--reps 5]
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gangway", required=True, help="path to the gangway binary")
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    if a.nodes < 2 or a.reps < 1:
        p.error("--nodes must be >= 2 and --reps >= 1")
    if not os.access(a.gangway, os.X_OK):
        p.error(f"--gangway {a.gangway}: not an executable")
    return a


class Cluster:
    def __init__(self, gangway, nodes, tmp):
        self.g = gangway
        self.tmp = tmp
        self.sched = subprocess.Popen(
            [gangway, "scheduler", "--listen", "127.0.0.1:0", "--data-dir", f"{tmp}/state",
             "--min-resize-interval", "0"],
            stdout=subprocess.PIPE, stderr=open(f"{tmp}/scheduler.log", "w"), text=True)
        line = self.sched.stdout.readline()
        m = re.search(r"listening on (\S+)", line)
        if not m:
            raise SystemExit(f"the scheduler did not start: {line!r}")
        self.addr = m.group(1)
        self.agents = {}
        for i in range(nodes):
            self.start_agent(f"n{i}")

    def start_agent(self, node):
        self.agents[node] = subprocess.Popen(
            [self.g, "agent", "--scheduler", self.addr, "--node-id", node, "--address",
             "127.0.0.1", "--work-dir", f"{self.tmp}/{node}", "--grace-period", "2"],
            stdout=subprocess.DEVNULL, stderr=open(f"{self.tmp}/{node}.log", "a"),
            start_new_session=True)

    def jobs(self):
        out = subprocess.run([self.g, "jobs", "--scheduler", self.addr, "--json"],
                             capture_output=True, text=True, check=True).stdout
        return {j["job_id"]: j for j in json.loads(out).get("jobs", [])}

    def wait(self, pred, timeout=60.0, poll=0.005):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            j = self.jobs().get("el")
            if j is not None and pred(j):
                return j
            time.sleep(poll)  # polling with a deadline: this is a benchmark, not a test
        raise SystemExit(f"timed out; last state: {self.jobs().get('el')}")

    def close(self):
        for p in self.agents.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGCONT)
                p.terminate()
        for p in self.agents.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.sched.terminate()
        self.sched.wait()


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def main():
    a = parse_args()
    tmp = tempfile.mkdtemp(prefix="gangway-bench-loss-")
    c = Cluster(a.gangway, a.nodes, tmp)
    results = {"crash": [], "freeze": []}
    try:
        subprocess.run([a.gangway, "submit", "--scheduler", c.addr, "--name", "el", "--nnodes",
                        f"1:{a.nodes}", "--no-python", "/bin/sh", "-c", "sleep 100000"],
                       check=True, stdout=subprocess.DEVNULL)
        last_round = 0
        for rep in range(a.reps):
            for kind in ("crash", "freeze"):
                # All N nodes in a round formed after the last loss (every member has joined).
                full = c.wait(lambda j: len(j.get("nodes", [])) == a.nodes and
                              int(j.get("round", 0)) > last_round)
                round0 = int(full["round"])
                victim = full["nodes"][-1]
                proc = c.agents[victim]
                if kind == "crash":
                    t0 = time.monotonic()
                    os.kill(proc.pid, signal.SIGKILL)
                else:
                    group = [proc.pid] + descendants(proc.pid)
                    t0 = time.monotonic()
                    for pid in group:
                        try:
                            os.kill(pid, signal.SIGSTOP)
                        except ProcessLookupError:
                            pass
                shrunk = c.wait(lambda j: len(j.get("nodes", [])) == a.nodes - 1 and
                                int(j.get("round", 0)) > round0)
                dt = time.monotonic() - t0
                last_round = int(shrunk["round"])
                results[kind].append(dt)
                print(f"rep {rep} {kind:6s} node {victim}: new round after {dt * 1000:7.1f} ms",
                      flush=True)
                if kind == "freeze":
                    for pid in [proc.pid] + descendants(proc.pid):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                proc.wait()
                c.start_agent(victim)
    finally:
        c.close()
        if os.environ.get("GANGWAY_BENCH_KEEP"):
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"{'loss':8s} {'reps':>4s} {'median ms':>10s} {'min ms':>8s} {'max ms':>8s}  goal < 3 s")
    for kind, xs in results.items():
        med = statistics.median(xs)
        print(f"{kind:8s} {len(xs):4d} {med * 1000:10.1f} {min(xs) * 1000:8.1f} "
              f"{max(xs) * 1000:8.1f}  {'met' if med < 3.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
