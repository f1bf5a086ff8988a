"""A small PyTorch DDP training job for `gangway run`: an MLP learns a noisy linear function.

Every rank draws its own shard of synthetic data, DDP averages the gradients (NCCL on the rank's
GPU when there is one, gloo on CPU otherwise), and rank 0 prints the loss. Runs unchanged under torchrun or gangway:

    gangway run --standalone --nproc-per-node 4 deploy/examples/ddp_train.py --steps 300
"""
import argparse
import os
import time

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record
from torch.nn.parallel import DistributedDataParallel as DDP


@record
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()

    device = torch.device("cpu")
    if torch.cuda.is_available():  # the launcher gives each worker its GPU (CUDA_VISIBLE_DEVICES)
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        torch.cuda.set_device(device)
    # MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE from the launcher
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(1234)  # the same target function and initial weights on every rank
    true_w = torch.randn(16, 1).to(device)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    model = DDP(net.to(device), device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(rank)  # each rank its own data shard

    if rank == 0:
        print(f"training on {world} workers (restart {os.environ.get('TORCHELASTIC_RESTART_COUNT')}, "
              f"job {os.environ.get('TORCHELASTIC_RUN_ID')})", flush=True)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x = torch.randn(args.batch, 16, generator=gen).to(device)
        y = x @ true_w + 0.01 * torch.randn(args.batch, 1, generator=gen).to(device)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()  # gradients all-reduced across the workers here
        opt.step()
        if step % 50 == 0 or step == 1:
            global_loss = loss.detach().clone()
            dist.all_reduce(global_loss)
            if rank == 0:
                print(f"step {step:4d}  loss {global_loss.item() / world:.5f}", flush=True)
    if rank == 0:
        print(f"done: {args.steps} steps in {time.perf_counter() - start:.1f} s", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
