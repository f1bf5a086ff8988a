"""Run torchrun (``torch.distributed.run.main()``) with one fix for torch 1.13 on Python 3.11.

torch 1.13's ``Std.from_str`` (torch/distributed/elastic/multiprocessing/api.py)
looks the value up with ``for s in Std: if s == v: return s``. Since Python 3.11,
iterating an ``IntFlag`` yields only its single-bit members (OUT, ERR), never the
zero or composite ones (NONE, ALL), so ``from_str("0")`` -- the default for
``--redirects`` and ``--tee`` -- returns None and torchrun dies in ``to_map`` with
``AttributeError: 'NoneType' object has no attribute 'get'``.

This wrapper replaces the classmethod with one that builds the value directly
(``Std(int(v))`` for "0".."3", a dict of them for "i:v,..." mappings) and then
runs torchrun unchanged with the same command line:

    /usr/bin/python3 torchrun_compat.py --standalone --nproc_per_node 2 script.py
"""

import re
import sys

import torch.distributed.run
from torch.distributed.elastic.multiprocessing.api import Std


def _std_from_str(cls, vm: str):
    if re.fullmatch(r"[0123]", vm):
        return cls(int(vm))
    if re.fullmatch(r"(\d:[0123],)*\d:[0123]", vm):
        return {int(i): cls(int(v)) for i, v in (m.split(":") for m in vm.split(","))}
    raise ValueError(f"{vm} is neither a value 0-3 nor a mapping like 0:1,1:3")


Std.from_str = classmethod(_std_from_str)

if __name__ == "__main__":
    sys.exit(torch.distributed.run.main())
