#!/usr/bin/env python3
"""PyTorch gloo all-reduce, measured the way all_reduce_perf measures gangway's.

Launched by torchrun (or `gangway run`), one process per rank:

    /usr/bin/python3 -m torch.distributed.run --standalone --nproc_per_node 2 \\
        benches/comm/gloo_allreduce.py -b 8 -e 128M -f 2 --json gloo.json

(with torch 1.13 on Python 3.11, through benches/launch/torchrun_compat.py instead of
`-m torch.distributed.run`: same arguments).

Prints nccl-tests' columns (float, sum) from rank 0 and, with --json, the same document as the
*_perf benchmarks. Out of place is a copy into the output then an in-place all_reduce (torch has
no out-of-place all_reduce); in place is all_reduce on the buffer. The time is the mean over
ranks of each rank's average per call, after warm-up and a barrier.
"""

import argparse
import json
import os
import socket
import sys
import time


def parse_size(text):
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    t = text.strip()
    mult = 1
    if t and t[-1].lower() in units:
        mult = units[t[-1].lower()]
        t = t[:-1]
    try:
        value = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size '{text}'")
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid size '{text}'")
    return int(value * mult)


def time_str(us):
    if us >= 10000.0:
        return f"{us:7.0f}"
    if us >= 100.0:
        return f"{us:7.1f}"
    return f"{us:7.2f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-b", "--minbytes", type=parse_size, default=32 << 20)
    p.add_argument("-e", "--maxbytes", type=parse_size, default=32 << 20)
    p.add_argument("-f", "--stepfactor", type=int, default=2)
    p.add_argument("-n", "--iters", type=int, default=20)
    p.add_argument("-w", "--warmup_iters", type=int, default=5)
    p.add_argument("-c", "--check", type=int, default=1)
    p.add_argument("--json", default="")
    args = p.parse_args()
    if args.minbytes > args.maxbytes:
        sys.exit(f"gloo_allreduce: invalid sizes: {args.minbytes} > {args.maxbytes}")
    if args.stepfactor < 2 or args.iters < 1 or args.warmup_iters < 0:
        sys.exit("gloo_allreduce: need -f >= 2, -n >= 1, -w >= 0")

    import torch
    import torch.distributed as dist

    dist.init_process_group(backend="gloo")
    rank, n = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    factor = 2.0 * (n - 1) / n

    max_count = max(1, args.maxbytes // 4)
    src = torch.ones(max_count, dtype=torch.float32)
    buf = torch.ones(max_count, dtype=torch.float32)

    def out(text):
        if rank == 0:
            print(text, flush=True)

    out(f"# nThread 1 nGpus 1 minBytes {args.minbytes} maxBytes {args.maxbytes} step: "
        f"{args.stepfactor}(factor) warmup iters: {args.warmup_iters} iters: {args.iters} "
        f"agg iters: 1 validation: {args.check} graph: 0")
    out(f"# torch {torch.__version__} gloo all_reduce, {n} rank{'s' if n != 1 else ''}")
    out("#\n# Using devices")
    lines = [None] * n
    dist.all_gather_object(lines, f"#  Rank {rank:2d} Group  0 Pid {os.getpid():6d} on "
                                  f"{socket.gethostname():>10s} device {rank:2d} [host] gloo")
    for line in lines:
        out(line)
    out("#")
    out("#                                                              out-of-place"
        "                       in-place          ")
    out("#       size         count      type   redop    root     time   algbw   busbw #wrong"
        "     time   algbw   busbw #wrong")
    out("#        (B)    (elements)                               (us)  (GB/s)  (GB/s)"
        "            (us)  (GB/s)  (GB/s)       ")

    def call(count, in_place):
        if in_place:
            dist.all_reduce(buf[:count])
        else:
            buf[:count].copy_(src[:count])
            dist.all_reduce(buf[:count])

    def mean_over_ranks(value):
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return t.item() / n

    def check(count, in_place):
        if args.check == 0:
            return None
        src[:count].fill_(rank + 1)
        buf[:count].fill_(rank + 1 if in_place else 0)
        call(count, in_place)
        want = n * (n + 1) / 2
        wrong = torch.tensor([int((buf[:count] != want).sum().item())], dtype=torch.int64)
        dist.all_reduce(wrong)
        src[:count].fill_(1)
        buf[:count].fill_(1)
        return int(wrong.item())

    for i in range(args.warmup_iters):
        call(max_count, False)
    rows, bw_sum, bw_count = [], 0.0, 0
    size = args.minbytes
    while size <= args.maxbytes:
        count = size // 4
        row = {"size": count * 4, "count": count, "type": "float", "redop": "sum", "root": -1}
        text = f"{count * 4:12d}  {count:12d}  {'float':>8s}  {'sum':>6s}  {-1:6d}"
        for in_place in (False, True):
            call(count, in_place)
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(args.iters):
                call(count, in_place)
            seconds = mean_over_ranks((time.perf_counter() - t0) / args.iters)
            alg = count * 4 / 1e9 / seconds if seconds > 0 else 0.0
            bus = alg * factor
            wrong = check(count, in_place)
            wrong_text = "N/A" if wrong is None else f"{wrong:g}"
            text += f"  {time_str(seconds * 1e6)}  {alg:6.2f}  {bus:6.2f}  {wrong_text:>5s}"
            row["in_place" if in_place else "out_of_place"] = {
                "time_us": seconds * 1e6, "algbw": alg, "busbw": bus, "wrong": wrong}
            bw_sum += bus
            bw_count += 1
        out(text)
        rows.append(row)
        size *= args.stepfactor
    errors = sum(1 for r in rows for k in ("out_of_place", "in_place") if r[k]["wrong"])
    avg = bw_sum / bw_count if bw_count else 0.0
    out(f"# Out of bounds values : {errors} {'FAILED' if errors else 'OK'}")
    out(f"# Avg bus bandwidth    : {avg:g} ")
    out("#")
    if rank == 0 and args.json:
        doc = {"collective": "all_reduce", "backend": "gloo", "memory": "host",
               "algorithm": "gloo", "world_size": n, "bus_factor": factor,
               "parameters": {"minbytes": args.minbytes, "maxbytes": args.maxbytes,
                              "stepfactor": args.stepfactor, "iters": args.iters,
                              "warmup_iters": args.warmup_iters, "check": args.check,
                              "op": "sum", "datatype": "float"},
               "rows": rows, "out_of_bounds": errors, "avg_busbw": avg, "ok": errors == 0}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    dist.destroy_process_group()
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
