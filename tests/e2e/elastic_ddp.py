"""A DDP (gloo) job whose result does not depend on the world size, for elastic tests.

Every rank trains y = w x on its shard of a fixed global batch (12 samples: equal shards for 3 or
4 ranks). DDP averages the gradients, which equals full-batch gradient descent, so the final
weight matches a single-process reference whatever the world size. In the job's first round the
workers then wait (to be stopped when the membership changes); in a later round rank 0 prints the
result and the job ends.
"""
import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

STEPS, LR = 25, 0.01


def train(x, y, model):
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def linear():
    m = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(0.1)
    return m


def main():
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    x = torch.arange(12.0).unsqueeze(1) / 12
    y = 2 * x
    model = DDP(linear())
    train(x[rank::world], y[rank::world], model)
    w = model.module.weight.item()
    reference = linear()
    train(x, y, reference)
    w_ref = reference.weight.item()
    assert abs(w - w_ref) < 1e-5, f"rank {rank}: weight {w} != reference {w_ref}"
    dist.barrier()
    if os.environ["GANGWAY_ROUND"] == "1":
        print(f"trained world={world}; waiting", flush=True)
        while True:
            time.sleep(1)  # this round ends when the membership changes
    if rank == 0:
        print(f"result weight={w:.6f} reference={w_ref:.6f} world={world}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
