"""Rank 1 crashes on the first attempt; the restarted job all-reduces and succeeds."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import allreduce  # noqa: E402

if __name__ == "__main__":
    if os.environ["TORCHELASTIC_RESTART_COUNT"] == "0" and os.environ["RANK"] == "1":
        raise SystemExit("rank 1: simulated crash on the first attempt")
    allreduce.main()
