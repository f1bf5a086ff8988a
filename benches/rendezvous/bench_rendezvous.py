#!/usr/bin/python3
"""Rendezvous benchmark: multi-agent `gangway run` against torchrun's c10d rendezvous, on loopback.

Measures (see README.md): (a) the launch of 8 agents x 1 no-op worker, for gangway against a
daemon (open, with a join token, with a join token over TLS), gangway in host mode and torchrun; (c) recovery of a 3:4-node job after kill -9 of one
agent. The tools alternate rep by rep so that they share the machine's noise. Run with Debian's
Python, which has torch:

    /usr/bin/python3 benches/rendezvous/bench_rendezvous.py
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TORCHRUN_COMPAT = REPO / "benches/launch/torchrun_compat.py"
sys.path.insert(0, str(REPO / "benches/launch"))
from bench_launch import environment  # noqa: E402  (machine, CPU, date, versions)

LAUNCH_AGENTS = 8
LAUNCH_TIMEOUT_S = 120
RECOVERY_AGENTS = 4
RECOVERY_TIMEOUT_S = 60             # gangway: from the kill to the survivors' exit
TORCHRUN_RECOVERY_TIMEOUT_S = 90    # torchrun may never recover: it is given this long
START_TIMEOUT_S = 60                # all 4 workers of the first round running
ERROR_RE = re.compile(r"error|exception|traceback|connection reset|broken pipe", re.I)
# The daemon rows with credentials measure what security costs: a join token (and a session per
# agent, which every row carries), and the same over TLS.
JOIN = "gangway (daemon, join token)"
TLS = "gangway (daemon, token+TLS)"
LAUNCH_ROWS = ("gangway (daemon)", "gangway (host mode)", "torchrun", JOIN, TLS)
RECOVERY_ROWS = ("gangway (daemon)", "torchrun")

# One file per worker start: "EPOCHREALTIME ROUND WORLD_SIZE". $BASHPID, not $$: torchrun
# expands its ${local_rank} macro with string.Template, which turns "$$" into "$".
RECOVERY_WORKER = r"""
echo "$EPOCHREALTIME ${GANGWAY_ROUND:-r$TORCHELASTIC_RESTART_COUNT} $WORLD_SIZE" > "$1/start.$BASHPID"
[ "$WORLD_SIZE" = 3 ] && exit 0
exec sleep 300
"""


# --- processes ----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int):
    """Live processes of session sid (an agent, its helpers and workers, orphans included)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2:].split()[3]) == sid:  # field 6: session
                pids.append(int(entry.name))
    return pids


def kill_session(sid: int):
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Agents:
    """Agents, each in its own session, with stdout+stderr in LOGDIR/agent.I.log."""

    def __init__(self, logdir: Path):
        self.logdir, self.procs, self.logs, self.timed_out = logdir, [], [], False

    def start(self, argvs):
        for argv in argvs:
            self.logs.append(self.logdir / f"agent.{len(self.procs)}.log")
            with open(self.logs[-1], "wb") as out:
                self.procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL,
                                                   start_new_session=True))
        return self

    def wait(self, timeout_s: float, procs=None):
        """Wait for procs (default: all); after timeout_s a timer kills every agent's session.

        Not Popen.wait(timeout): it polls with sleeps of up to 50 ms, which would be measured."""
        killer = threading.Timer(timeout_s, self._expire)
        killer.start()
        for p in procs or self.procs:
            p.wait()
        killer.cancel()
        return self.timed_out

    def _expire(self):
        self.timed_out = True
        self.kill()

    def kill(self):
        for p in self.procs:
            kill_session(p.pid)

    def output(self):
        return [log.read_text(errors="replace") for log in self.logs]


class Daemon:
    """`gangway scheduler --listen 127.0.0.1:0`, output to LOGDIR/daemon.log; ready once it has
    printed its address."""

    def __init__(self, gangway: str, logdir: Path, extra=()):
        self.log = logdir / "daemon.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([gangway, "scheduler", "--listen", "127.0.0.1:0", *extra],
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            poll(lambda: self.proc.poll() is not None or "\n" in self.log.read_text(), 10,
                 "gangway scheduler printed nothing in 10 s")
        except TimeoutError:
            self.kill()
            raise
        line = self.log.read_text().splitlines()[0] if self.log.read_text() else ""
        m = re.fullmatch(r"gangway scheduler listening on (\S+:\d+)", line.strip())
        if not m:
            self.kill()
            raise RuntimeError(f"gangway scheduler printed {line!r} instead of its address")
        self.endpoint = m.group(1)

    def stop(self):
        """SIGTERM; return (exit code, its output)."""
        self.proc.send_signal(signal.SIGTERM)
        killer = threading.Timer(10, lambda: kill_session(self.proc.pid))
        killer.start()
        self.proc.wait()
        killer.cancel()
        return self.proc.returncode, self.log.read_text(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            kill_session(self.proc.pid)
            self.proc.wait()


def gangway_agent(gangway, nnodes, endpoint, run_id, worker, extra=()):
    return [gangway, "run", "--nnodes", nnodes, "--nproc-per-node", "1", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", endpoint, "--rdzv-id", run_id, *extra, "--no-python", *worker]


def credentials(row: str, tmp: Path):
    """The daemon's and the agents' extra arguments for ROW's credentials."""
    if row not in (JOIN, TLS):
        return [], []
    token = tmp / "join.token"
    token.write_text(os.urandom(24).hex() + "\n")
    token.chmod(0o600)
    daemon, conf = ["--join-token-file", str(token)], f"join_token_file={token}"
    if row == TLS:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem")],
                       check=True, capture_output=True)
        daemon += ["--tls-cert", str(tmp / "cert.pem"), "--tls-key", str(tmp / "key.pem")]
        conf += f",tls_ca={tmp / 'cert.pem'}"
    return daemon, ["--rdzv-conf", conf]


def torchrun_agent(nnodes, endpoint, run_id, worker, extra=()):
    return [sys.executable, str(TORCHRUN_COMPAT), "--nnodes", nnodes, "--nproc_per_node", "1",
            "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", run_id, *extra,
            "--monitor_interval", "0.1", "--no_python", *worker]


def error_lines(texts):
    return [line for text in texts for line in text.splitlines() if ERROR_RE.search(line)]


def failures(agents: Agents, timed_out: bool, argv0, procs=None):
    """Describe every agent that did not exit 0: its exit code, command and last lines."""
    out = []
    for p, text in zip(agents.procs, agents.output()):
        if (procs is None or p in procs) and p.returncode != 0:
            tail = "\n      ".join(text.splitlines()[-5:])
            out.append(f"exit {p.returncode}{' (timed out, killed)' if timed_out else ''}: "
                       f"{' '.join(argv0)}\n      {tail}")
    return out


# --- (a) launch of 8 agents ---------------------------------------------------

def launch_once(row: str, gangway: str, run_id: str):
    """Return {"s": wall seconds, "errors": [...], "failures": [...]}."""
    with tempfile.TemporaryDirectory(prefix="gangway-rdzv-") as tmp:
        daemon_extra, agent_extra = credentials(row, Path(tmp))
        daemon = Daemon(gangway, Path(tmp), daemon_extra) if "daemon" in row else None
        endpoint = daemon.endpoint if daemon else f"127.0.0.1:{free_port()}"
        if row == "torchrun":
            argv = torchrun_agent(str(LAUNCH_AGENTS), endpoint, run_id, ["/bin/true"])
        else:
            argv = gangway_agent(gangway, str(LAUNCH_AGENTS), endpoint, run_id, ["/bin/true"],
                                 agent_extra)
        agents = Agents(Path(tmp))
        try:
            start = time.perf_counter()
            agents.start([argv] * LAUNCH_AGENTS)
            timed_out = agents.wait(LAUNCH_TIMEOUT_S)
            elapsed = time.perf_counter() - start
            texts = agents.output()
            fails = failures(agents, timed_out, argv)
            if daemon:
                code, rest = daemon.stop()
                texts.append(rest)
                if code != 0:
                    fails.append(f"gangway scheduler exit {code} after SIGTERM:\n      {rest}")
        finally:
            agents.kill()
            if daemon:
                daemon.kill()
    return {"s": elapsed, "errors": error_lines(texts), "failures": fails}


def bench_launch(gangway: str, reps: int):
    samples = {row: [] for row in LAUNCH_ROWS}
    for rep in range(-1, reps):  # rep -1: one unrecorded warm-up per row
        k = rep % len(LAUNCH_ROWS)
        order = LAUNCH_ROWS[k:] + LAUNCH_ROWS[:k]
        for row in order:
            result = launch_once(row, gangway, f"bench{os.getpid()}r{rep + 1}{LAUNCH_ROWS.index(row)}")
            if rep >= 0:
                samples[row].append(result)
    return samples


# --- (c) recovery after kill -9 of one agent ----------------------------------

def listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def stamps(d: Path):
    """[(epoch seconds, round, world size)] of the worker starts so far."""
    out = []
    for f in d.glob("start.*"):
        fields = f.read_text().split()
        if len(fields) == 3:
            out.append((float(fields[0].replace(",", ".")), fields[1], int(fields[2])))
    return out


def poll(cond, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def recovery_once(row: str, gangway: str, run_id: str):
    """Return {"s": recovery seconds or None, "recovered", "errors", "failures", "notes"}."""
    result = {"s": None, "recovered": False, "errors": [], "failures": [], "notes": []}
    with tempfile.TemporaryDirectory(prefix="gangway-rdzv-") as tmp:
        d = Path(tmp)
        worker = ["/bin/bash", "-c", RECOVERY_WORKER, "bash", tmp]
        daemon, agents = None, Agents(d)
        try:
            if row == "torchrun":
                # torchrun's store lives in the agent that binds the port: start that one first,
                # so that the agent killed below is not the store's host.
                port = free_port()
                argv = torchrun_agent("3:4", f"127.0.0.1:{port}", run_id, worker,
                                      ("--max_restarts", "3"))
                agents.start([argv])
                poll(lambda: listening(port), START_TIMEOUT_S, "torchrun's store never listened")
                agents.start([argv] * (RECOVERY_AGENTS - 1))
                limit = TORCHRUN_RECOVERY_TIMEOUT_S
            else:
                daemon = Daemon(gangway, d)
                argv = gangway_agent(gangway, "3:4", daemon.endpoint, run_id, worker)
                agents.start([argv] * RECOVERY_AGENTS)
                limit = RECOVERY_TIMEOUT_S
            poll(lambda: sum(s[2] == 4 for s in stamps(d)) >= RECOVERY_AGENTS, START_TIMEOUT_S,
                 f"the {RECOVERY_AGENTS} workers of the first round did not all start")
            victim, survivors = agents.procs[-1], agents.procs[:-1]
            t0 = time.time()
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            timed_out = agents.wait(limit, survivors)
            restarted = [s[0] for s in stamps(d) if s[2] == 3]
            result["s"] = min(restarted) - t0 if restarted else None
            result["recovered"] = bool(restarted) and not timed_out
            if timed_out:
                result["notes"].append(
                    f"survivors still running {limit} s after the kill, killed; "
                    f"{len(restarted)} worker(s) had started with WORLD_SIZE 3")
            else:
                result["failures"] = failures(agents, False, argv, survivors)
                time.sleep(1)  # the killed agent's worker: does anything stop it?
                if session_pids(victim.pid):
                    result["notes"].append("the killed agent's worker was left running (orphan)")
        except TimeoutError as e:
            result["notes"].append(str(e))
            agents.kill()
            result["failures"] = failures(agents, True, argv)
        finally:
            agents.kill()
            texts = agents.output()
            if daemon:
                code, rest = daemon.stop()
                texts.append(rest)
                if code != 0:
                    result["failures"].append(f"gangway scheduler exit {code}:\n      {rest}")
            result["errors"] = error_lines(texts)
    return result


def bench_recovery(gangway: str, reps: int, with_torchrun: bool):
    samples = {row: [] for row in RECOVERY_ROWS}
    for rep in range(reps):
        for row in RECOVERY_ROWS[::1 if rep % 2 == 0 else -1]:
            if row == "torchrun" and (
                    not with_torchrun or any(not x["recovered"] for x in samples[row])):
                continue  # torchrun: not repeated once it failed to recover
            samples[row].append(recovery_once(row, gangway, f"rec{os.getpid()}r{rep + 1}{row[0]}"))
    return samples


# --- report -------------------------------------------------------------------

def distinct(lines, n=3):
    """First n distinct lines: digits (timestamps, pids, ports) and gRPC's "{...}" details
    do not count."""
    seen = {}
    for line in lines:
        seen.setdefault(re.sub(r"\s+", " ", re.sub(r"\d+", "#", line.split(" {")[0])), line.strip())
    return list(seen.values())[:n], len(seen)


def stats(samples):
    times = [s["s"] for s in samples if s["s"] is not None]
    return {"median_ms": 1e3 * statistics.median(times) if times else None,
            "min_ms": 1e3 * min(times) if times else None,
            "errors": sum(len(s["errors"]) for s in samples),
            "failures": sum(len(s["failures"]) for s in samples),
            "runs": len(samples)}


def print_details(name, samples):
    lines, count = distinct([e for s in samples for e in s["errors"]])
    if lines:
        print(f"  {name}: {count} distinct error line(s), first {len(lines)}:")
        for line in lines:
            print(f"    {line[:160]}{' ...' if len(line) > 160 else ''}")
    for s in samples:
        for f in s["failures"]:
            print(f"  {name}: FAILURE {f}")
        for note in s.get("notes", []):
            print(f"  {name}: {note}")


def ms(x):
    return "-" if x is None else f"{x:.1f}"


def report(env, reps, launch, recovery):
    print(f"machine : {env['machine']}, {env['cpu']}, nproc {env['nproc']}")
    print(f"date    : {env['date']}; load average at start "
          f"{' '.join(f'{x:.2f}' for x in env['loadavg'])}, at end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"versions: {env['gangway']}; torch {env['torch']} (Python {env['python']})")
    print(f"reps    : {reps} interleaved per row (launch: after 1 warm-up per row); "
          f"torchrun --monitor_interval 0.1")
    print(f"errors  : output lines of all agents (and the daemon), all reps, matching "
          f"/{ERROR_RE.pattern}/i")
    print()
    print(f"(a) launch: {LAUNCH_AGENTS} agents x 1 worker (/bin/true), c10d rendezvous on "
          f"127.0.0.1, wall time from starting the agents to the last exit")
    la = {row: stats(s) for row, s in launch.items()}
    t = la["torchrun"]["median_ms"]
    print(f"  {'row':29} {'median ms':>10} {'min ms':>9} {'torchrun/row':>13} "
          f"{'errors printed':>15} {'agents exit!=0':>15}")
    for row, s in la.items():
        s["ratio"] = t / s["median_ms"]
        print(f"  {row:29} {ms(s['median_ms']):>10} {ms(s['min_ms']):>9} {s['ratio']:>12.1f}x "
              f"{s['errors']:>15} {s['failures']:>15}")
    for row, s in launch.items():
        print_details(row, s)
    base = la["gangway (daemon)"]["median_ms"]
    print(f"  security: {JOIN} / open daemon = {la[JOIN]['median_ms'] / base:.2f}x, "
          f"{TLS} / open daemon = {la[TLS]['median_ms'] / base:.2f}x")
    print()
    print(f"(c) recovery: kill -9 of 1 of {RECOVERY_AGENTS} agents, --nnodes 3:4, daemon defaults; "
          f"first WORLD_SIZE=3 worker start - kill")
    rc = {row: stats(s) for row, s in recovery.items()}
    print(f"  {'row':29} {'median ms':>10} {'min ms':>9} {'runs':>5} {'recovered':>10} "
          f"{'errors printed':>15} {'agents exit!=0':>15}")
    for row, s in rc.items():
        if not s["runs"]:
            print(f"  {row:29} not run (--quick)")
            continue
        ok = sum(x["recovered"] for x in recovery[row])
        print(f"  {row:29} {ms(s['median_ms']):>10} {ms(s['min_ms']):>9} {s['runs']:>5} "
              f"{ok:>10} {s['errors']:>15} {s['failures']:>15}")
    for row, s in recovery.items():
        print_details(row, s)
    print()
    g = [la[r] for r in LAUNCH_ROWS if r.startswith("gangway")]
    rg = rc["gangway (daemon)"]
    goals = [
        ("(a) gangway >= 20x faster than torchrun", all(s["ratio"] >= 20 for s in g),
         ", ".join(f"{s['ratio']:.1f}x" for s in g)),
        ("(a) gangway: zero errors, every agent exits 0",
         all(s["errors"] == 0 and s["failures"] == 0 for s in g),
         ", ".join(f"{s['errors']} err/{s['failures']} exit!=0" for s in g)),
        ("(a) join token < 10% slower than open", la[JOIN]["median_ms"] < 1.10 * base,
         f"{la[JOIN]['median_ms'] / base:.2f}x"),
        ("(a) join token + TLS < 25% slower than open", la[TLS]["median_ms"] < 1.25 * base,
         f"{la[TLS]['median_ms'] / base:.2f}x"),
        ("(c) gangway recovery < 3 s (defaults)",
         rg["median_ms"] is not None and rg["median_ms"] < 3000 and rg["failures"] == 0
         and all(x["recovered"] for x in recovery["gangway (daemon)"]),
         f"{ms(rg['median_ms'])} ms, {rg['failures']} exit!=0"),
    ]
    for goal, met, value in goals:
        print(f"goal: {goal:46} {value:36} {'MET' if met else 'NOT MET'}")
    return {"launch": la, "recovery": rc, "goals": {goal: met for goal, met, _ in goals}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gangway", default=str(REPO / "build/release/launcher/gangway"),
                        help="gangway binary (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=5,
                        help="runs per tool and row (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="3 reps, and no torchrun recovery row (it may take 90 s)")
    parser.add_argument("--json", metavar="FILE", help="also write all samples as JSON")
    args = parser.parse_args()
    reps = 3 if args.quick else args.reps

    env = environment(args.gangway)
    launch = bench_launch(args.gangway, reps)
    recovery = bench_recovery(args.gangway, reps, with_torchrun=not args.quick)
    summary = report(env, reps, launch, recovery)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"environment": env, "reps": reps, "launch": launch, "recovery": recovery,
             "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
