"""Each rank contributes rank + 1; every rank checks the gloo all-reduce sum."""
import os

import torch
import torch.distributed as dist


def main():
    dist.init_process_group("gloo")  # env:// from the launcher's MASTER_ADDR / MASTER_PORT
    rank, world = dist.get_rank(), dist.get_world_size()
    assert rank == int(os.environ["RANK"]) and world == int(os.environ["WORLD_SIZE"])
    t = torch.tensor([float(rank + 1)] * 4)
    dist.all_reduce(t)
    expected = world * (world + 1) / 2
    assert torch.all(t == expected), f"rank {rank}: got {t.tolist()}, expected {expected}"
    print(f"sum ok {t[0].item():.0f} world {world} attempt {os.environ['TORCHELASTIC_RESTART_COUNT']}",
          flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
