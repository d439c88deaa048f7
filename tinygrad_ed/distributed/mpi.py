"""The MPI transport: the ranks are the processes `mpiexec -n N` started, on one machine or many (mpi4py).

    mpiexec -n 2 python examples/train_char_gpt.py                  # two ranks on this machine
    mpiexec -n 4 -hosts a,b python examples/train_char_gpt.py       # two on each of machines a and b

Rank and world size come from MPI. The collectives are MPI's own, on numpy arrays in place. A rank that ends with
an exception says so (naming its rank) and aborts the whole job, so no rank waits for it forever; mpiexec also
ends every rank when one is killed.
"""
import sys
import traceback

from tinygrad_ed.distributed.group import ProcessGroup
from tinygrad_ed.fast.cpu_runtime import share_cores


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(f"the mpi transport needs mpi4py and an MPI library: pip install -e '.[mpi]' (it installs "
                          f"mpi4py and MPICH), or pip install mpi4py against your system's MPI ({error})") from None
    return MPI


class MPIGroup(ProcessGroup):
    def __init__(self, comm=None):
        self.MPI = _mpi()
        self.comm = comm or self.MPI.COMM_WORLD
        self.rank, self.world_size = self.comm.Get_rank(), self.comm.Get_size()
        if self.world_size > 1:   # the ranks on this machine share its cores (mpiexec may start several here)
            share_cores(self.comm.Split_type(self.MPI.COMM_TYPE_SHARED).Get_size())

    def all_reduce(self, array):
        if self.world_size > 1:
            self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)

    def broadcast(self, array, root=0):
        if self.world_size > 1:
            self.comm.Bcast(array, root=root)

    def barrier(self):
        if self.world_size > 1:
            self.comm.Barrier()

    def close(self, error=None):
        if error is None or self.world_size == 1:
            return
        # every rank that fails says why; then the job ends, or the ranks still in a collective would wait forever
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        print(f"rank {self.rank} of {self.world_size}: {text}", file=sys.stderr, flush=True)
        self.comm.Abort(1)
