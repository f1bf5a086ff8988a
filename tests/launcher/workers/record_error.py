"""Rank 1 raises inside a @record entry point: its message must reach the agent's summary."""
import os

import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record


@record
def main():
    dist.init_process_group("gloo")
    if dist.get_rank() == 1:
        raise ValueError(f"bad learning rate on rank {os.environ['RANK']}")
    dist.barrier()  # never completes: rank 1 is gone, and the agent stops this rank


if __name__ == "__main__":
    main()
