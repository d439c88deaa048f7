"""Data parallelism over the CPU cores of one machine: each batch split between workers, gradients summed.

  sharding.py   the idea and what both wrappers share: shards, dropout seeds, replicas, the batch loss node
  processes.py  ProcessDataParallel: one forked worker process per extra core (the default on Linux and macOS)
  threads.py    DataParallel: the same with threads, where os.fork is missing

`data_parallel(model, workers)` picks one; train() calls it once.
"""
import os

from tinygrad_ed.parallel.processes import ProcessDataParallel
from tinygrad_ed.parallel.sharding import replicate, usable_cores
from tinygrad_ed.parallel.threads import DataParallel

__all__ = ["DataParallel", "ProcessDataParallel", "data_parallel", "replicate", "usable_cores"]


def data_parallel(model, workers):
    """The fastest way this machine can split each batch over `workers` cores: the model itself for one worker,
    worker processes on a cpu that can fork (ProcessDataParallel), threads otherwise (DataParallel)."""
    if workers <= 1:
        return model
    if model.parameters()[0].device == "cpu" and hasattr(os, "fork"):
        return ProcessDataParallel(model, workers)
    return DataParallel(model, workers)
