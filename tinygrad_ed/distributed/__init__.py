"""Data parallelism as multi-GPU training does it (PyTorch's DistributedDataParallel, llm.c's MPI and NCCL): several
processes, the "ranks", each run the same training loop on their slice of every batch (SPMD: single program,
multiple data), and after backward the gradients are summed across ranks, so every rank takes the same update.

    with init_process_group("local", world_size=2) as group:   # from here on, 2 processes run this block
        model = DistributedDataParallel(GPT(config), group)     # the same weights on every rank
        logits, loss = model(X, Y)   # X, Y: the whole batch; each rank computes its slice, loss is the batch's
        loss.backward()              # each rank's gradients, then summed across ranks: the batch's gradient
        optimizer.step()             # the same update on every rank
        if group.master_process:     # rank 0 alone prints and saves
            print(loss.item())

One process-group interface (rank, world_size, master_process, all_reduce, broadcast, barrier), three transports:
  local.py  ranks this program forks itself on one machine, meeting in shared memory (the default on the CPU)
  mpi.py    ranks started by `mpiexec -n N`, on one machine or many, through mpi4py
  nccl.py   one rank per GPU, gradients summed on the devices through NCCL (cupy.cuda.nccl)
ddp.py holds DistributedDataParallel: the batch cut into rank slices, the loss as the whole batch's, the one
gradient bucket summed after the last micro-step's backward.
"""
import os

from tinygrad_ed.distributed.ddp import DistributedDataParallel
from tinygrad_ed.distributed.group import ProcessGroup, RankFailed

__all__ = ["BACKENDS", "DistributedDataParallel", "ProcessGroup", "RankFailed", "default_backend",
           "init_process_group", "launched_by_mpi", "launch_rank"]

BACKENDS = ("local", "mpi", "nccl")

# what each MPI's launcher tells the processes it starts (MPICH's Hydra: PMI_*; Open MPI: OMPI_COMM_WORLD_*)
_MPI_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
_MPI_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def launched_by_mpi():
    """Whether mpiexec (mpirun) started this process."""
    return any(name in os.environ for name in _MPI_SIZE_VARIABLES)


def launch_rank():
    """This process's rank as its launcher says, before any process group exists: mpiexec's, else 0 (the local
    transport forks its other ranks later, inside init_process_group). For 'print only on rank 0' decisions."""
    for name in _MPI_RANK_VARIABLES:
        if name in os.environ:
            return int(os.environ[name])
    return 0


def default_backend(device):
    """nccl on cuda (one process per GPU), mpi when mpiexec started this process, local otherwise."""
    if device == "cuda":
        return "nccl"
    return "mpi" if launched_by_mpi() else "local"


def init_process_group(backend, world_size=1):
    """The process group of this run, to be used in a `with` block (which ends it).

    backend     "local": `world_size` ranks, the calling process rank 0 and the others forked from it when the
                block starts; "mpi": rank and world size from mpiexec (`world_size` is ignored); "nccl": one rank
                per GPU, bootstrapped over MPI under mpiexec, else a single rank on this process's GPU.
    """
    if backend == "local":
        from tinygrad_ed.distributed.local import LocalGroup
        return LocalGroup(world_size)
    if backend == "mpi":
        from tinygrad_ed.distributed.mpi import MPIGroup
        return MPIGroup()
    if backend == "nccl":
        from tinygrad_ed.distributed.nccl import NCCLGroup
        return NCCLGroup.create()
    raise ValueError(f"init_process_group: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
