#!/usr/bin/python3
"""Launch benchmark: `gangway run` against torchrun, side by side in one run.

Measures (see README.md): (a) launch overhead of a job of N no-op workers,
(b) recovery time after one worker failure, (c) the agent's RSS and CPU while
it supervises idle workers. The two tools alternate rep by rep so that they
share the machine's noise. Run with Debian's Python, which has torch:

    /usr/bin/python3 benches/launch/bench_launch.py
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TORCHRUN_COMPAT = HERE / "torchrun_compat.py"
TOOLS = ("gangway", "torchrun")

RUN_TIMEOUT_S = 120      # any single job
FOOTPRINT_STARTUP_S = 1.5  # at least this long after launch, and until all workers run
FOOTPRINT_WINDOW_S = 3.0
FOOTPRINT_WORKERS = 8

# Attempt 0: rank 1 records the failure time and fails, rank 0 idles until the
# launcher stops it. Attempt 1: every rank records its start time and succeeds.
RECOVERY_WORKER = r"""
d=$1
if [ "$TORCHELASTIC_RESTART_COUNT" = 0 ]; then
  if [ "$RANK" = 1 ]; then echo "$EPOCHREALTIME" > "$d/fail"; exit 1; fi
  exec sleep 30
fi
echo "$EPOCHREALTIME" > "$d/start.$RANK"
"""


def launcher_commands(gangway: str):
    """Return {tool: f(nproc, worker_argv, max_restarts) -> argv}."""

    def gangway_cmd(nproc, worker, max_restarts=0):
        restarts = ["--max-restarts", str(max_restarts)] if max_restarts else []
        return [gangway, "run", "--standalone", "--nproc-per-node", str(nproc),
                *restarts, "--no-python", *worker]

    def torchrun_cmd(nproc, worker, max_restarts=0):
        restarts = ["--max_restarts", str(max_restarts)] if max_restarts else []
        return [sys.executable, str(TORCHRUN_COMPAT), "--standalone",
                "--nproc_per_node", str(nproc), *restarts,
                "--monitor_interval", "0.1", "--no_python", *worker]

    return {"gangway": gangway_cmd, "torchrun": torchrun_cmd}


def interleaved(reps: int):
    """Yield (rep, tool), alternating which tool goes first."""
    for rep in range(reps):
        for tool in (TOOLS if rep % 2 == 0 else TOOLS[::-1]):
            yield rep, tool


def run_timed(argv) -> float:
    """Run argv to completion; return its wall time in seconds. Exit code must be 0.

    The timeout is a timer thread that kills the job, not `subprocess.run(timeout=...)`: with a
    timeout, Popen.wait polls with sleeps of up to 50 ms, which would be measured too.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killer = threading.Timer(RUN_TIMEOUT_S, proc.kill)
    killer.start()
    proc.wait()
    elapsed = time.perf_counter() - start
    killer.cancel()
    if proc.returncode != 0:
        raise RuntimeError(f"exit code {proc.returncode}: {' '.join(argv)}")
    return elapsed


# --- (a) launch overhead ------------------------------------------------------

def sample_interleaved(measure, reps: int):
    """measure(tool) -> seconds; one unrecorded warm-up per tool, then `reps` interleaved."""
    for tool in TOOLS:
        measure(tool)
    samples = {tool: [] for tool in TOOLS}
    for _, tool in interleaved(reps):
        samples[tool].append(measure(tool))
    return samples


def bench_launch(cmds, nproc: int, reps: int):
    argvs = {tool: cmds[tool](nproc, ["/bin/true"]) for tool in TOOLS}
    return sample_interleaved(lambda tool: run_timed(argvs[tool]), reps)


# --- (b) recovery after one worker failure ------------------------------------

def read_stamp(path: Path) -> float:
    if not path.exists():
        raise RuntimeError(f"recovery run did not write {path.name}")
    return float(path.read_text().strip().replace(",", "."))


def recovery_once(cmd) -> float:
    with tempfile.TemporaryDirectory(prefix="gangway-bench-") as tmp:
        d = Path(tmp)
        run_timed(cmd(2, ["/bin/bash", "-c", RECOVERY_WORKER, "bash", tmp], max_restarts=1))
        failed = read_stamp(d / "fail")
        restarted = min(read_stamp(d / f"start.{rank}") for rank in (0, 1))
        return restarted - failed


def bench_recovery(cmds, reps: int):
    return sample_interleaved(lambda tool: recovery_once(cmds[tool]), reps)


# --- (c) agent footprint while supervising idle workers -----------------------

def proc_stat(pid: int):
    """Return (ppid, comm, cpu_seconds) of pid from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return int(fields[1]), comm, cpu


def cpu_ns(pid: int) -> int:
    """CPU time of pid, all its threads, in nanoseconds (schedstat: exact, unlike clock ticks)."""
    return sum(int((task / "schedstat").read_text().split()[0])
               for task in Path(f"/proc/{pid}/task").iterdir())


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"pid {pid} has no VmHWM (exited?)")


def children(pid: int):
    """Return {child_pid: comm} for the live children of pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid, comm, _ = proc_stat(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if ppid == pid:
                found[int(entry.name)] = comm
    return found


def split_children(pid: int):
    kids = children(pid)
    workers = [p for p, comm in kids.items() if comm == "sleep"]
    helpers = [p for p, comm in kids.items() if comm != "sleep"]
    return workers, helpers


def wait_for_workers(pid: int, deadline: float):
    """Wait until FOOTPRINT_STARTUP_S has passed and all workers are running."""
    time.sleep(FOOTPRINT_STARTUP_S)
    while len(split_children(pid)[0]) < FOOTPRINT_WORKERS:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"pid {pid}: workers did not all start")
        time.sleep(0.01)


def footprint_once(cmd):
    proc = subprocess.Popen(cmd(FOOTPRINT_WORKERS, ["/bin/sleep", "6"]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_workers(proc.pid, time.perf_counter() + 30)
        t0, cpu0 = time.perf_counter(), cpu_ns(proc.pid)
        time.sleep(FOOTPRINT_WINDOW_S)
        cpu1, t1 = cpu_ns(proc.pid), time.perf_counter()
        workers, helpers = split_children(proc.pid)
        if len(workers) != FOOTPRINT_WORKERS:
            raise RuntimeError(f"only {len(workers)} workers alive at the end of the window")
        result = {
            "rss_mb": vm_hwm_mb(proc.pid),
            "cpu_pct": 100 * (cpu1 - cpu0) / 1e9 / (t1 - t0),
            "helpers": len(helpers),
            "helpers_rss_mb": sum(vm_hwm_mb(h) for h in helpers),
        }
        code = proc.wait(timeout=RUN_TIMEOUT_S)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if code != 0:
        raise RuntimeError(f"exit code {code}: {' '.join(proc.args)}")
    return result


def bench_footprint(cmds, reps: int):
    samples = {tool: [] for tool in TOOLS}
    for _, tool in interleaved(reps):
        samples[tool].append(footprint_once(cmds[tool]))
    return {tool: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
            for tool, runs in samples.items()}


# --- report -------------------------------------------------------------------

def environment(gangway: str):
    cpu = next((line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    uname = platform.uname()
    torch_version = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.__version__)"],
        capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    gangway_version = subprocess.run([gangway, "--version"], capture_output=True,
                                     text=True, check=True, timeout=10).stdout.strip()
    return {
        "machine": f"{uname.system} {uname.release} {uname.machine}",
        "cpu": cpu,
        "nproc": len(os.sched_getaffinity(0)),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "gangway": gangway_version,
        "torch": torch_version,
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }


def summarize(samples):
    """Median/min in ms per tool, and torchrun_median / gangway_median."""
    out = {tool: {"median_ms": 1e3 * statistics.median(s), "min_ms": 1e3 * min(s)}
           for tool, s in samples.items()}
    out["ratio"] = out["torchrun"]["median_ms"] / out["gangway"]["median_ms"]
    return out


def print_report(env, reps, footprint_reps, timed, footprint):
    print(f"machine : {env['machine']}, {env['cpu']}, nproc {env['nproc']}")
    print(f"date    : {env['date']}; load average at start "
          f"{' '.join(f'{x:.2f}' for x in env['loadavg'])}, at end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"versions: {env['gangway']}; torch {env['torch']} (Python {env['python']})")
    print(f"reps    : {reps} interleaved per timed row, {footprint_reps} per footprint row; "
          f"torchrun --monitor_interval 0.1")
    print()
    print(f"{'metric':34} {'gangway':>18} {'torchrun':>18} {'torchrun/gangway':>17}")
    for name, s in timed.items():
        cells = [f"{s[t]['median_ms']:.1f} ({s[t]['min_ms']:.1f})" for t in TOOLS]
        print(f"{name + ', ms median (min)':34} {cells[0]:>18} {cells[1]:>18} "
              f"{s['ratio']:>16.1f}x")
    g, t = footprint["gangway"], footprint["torchrun"]
    print(f"{'agent peak RSS (VmHWM), MB':34} {g['rss_mb']:>18.1f} {t['rss_mb']:>18.1f} "
          f"{t['rss_mb'] / g['rss_mb']:>16.1f}x")
    print(f"{'agent CPU, % of one core':34} {g['cpu_pct']:>18.3f} {t['cpu_pct']:>18.3f}")
    print(f"{'helper processes (VmHWM, MB)':34} "
          f"{g['helpers']:>11.0f} ({g['helpers_rss_mb']:.1f}) "
          f"{t['helpers']:>11.0f} ({t['helpers_rss_mb']:.1f})")
    print()
    goals = [
        ("launch overhead >= 20x below torchrun's",
         all(timed[k]["ratio"] >= 20 for k in timed if k.startswith("launch")),
         ", ".join(f"{k}: {timed[k]['ratio']:.1f}x" for k in timed if k.startswith("launch"))),
        ("recovery >= 10x faster", timed["recovery N=2"]["ratio"] >= 10,
         f"{timed['recovery N=2']['ratio']:.1f}x"),
        ("agent RSS < 20 MB", g["rss_mb"] < 20, f"{g['rss_mb']:.1f} MB"),
    ]
    for goal, met, value in goals:
        print(f"goal: {goal:40} {value:34} {'MET' if met else 'NOT MET'}")
    return {goal: met for goal, met, _ in goals}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gangway", default=str(REPO / "build/release/launcher/gangway"),
                        help="gangway binary (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=15,
                        help="timed runs per tool and row (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="5 reps, 1 footprint run")
    parser.add_argument("--json", metavar="FILE", help="also write all samples as JSON")
    args = parser.parse_args()
    reps = 5 if args.quick else args.reps
    footprint_reps = 1 if args.quick else 3

    env = environment(args.gangway)
    cmds = launcher_commands(args.gangway)
    raw = {f"launch N={n}": bench_launch(cmds, n, reps) for n in (2, 8)}
    raw["recovery N=2"] = bench_recovery(cmds, reps)
    timed = {name: summarize(s) for name, s in raw.items()}
    footprint = bench_footprint(cmds, footprint_reps)
    goals = print_report(env, reps, footprint_reps, timed, footprint)

    if args.json:
        Path(args.json).write_text(json.dumps(
            {"environment": env, "reps": reps, "samples_s": raw, "summary": timed,
             "footprint": footprint, "goals": goals}, indent=2) + "\n")


if __name__ == "__main__":
    main()
