"""The NCCL transport: one rank per GPU, the gradients summed on the GPUs (cupy.cuda.nccl), never copied to the host.

    mpiexec -n 8 python examples/train_char_gpt.py --device cuda    # one rank per GPU of an 8-GPU machine
    python examples/train_char_gpt.py --device cuda                 # one rank (world size 1)

NCCL's ranks find each other through a unique id that rank 0 makes and the others receive: over MPI when mpiexec
started the ranks, else there is one rank. Rank r uses GPU r modulo the GPUs this machine has, so start at most as
many ranks on a machine as it has GPUs: NCCL refuses two ranks on one GPU ("Duplicate GPU detected"). The collectives are
queued on the current CUDA stream, after the kernels that computed their arrays, so nothing waits for the device.
At world size 1, DistributedDataParallel has nothing to sum and calls no collective; tests/test_distributed.py's
cuda test calls them on one GPU; two ranks need two GPUs (scripts/gpu_check.sh's nccl-2-ranks part says SKIP on one).
"""
from tinygrad_ed.distributed.group import ProcessGroup

# numpy dtype name -> NCCL's dtype constant name
NCCL_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
               "int32": "NCCL_INT32", "int64": "NCCL_INT64"}


class NCCLGroup(ProcessGroup):
    def __init__(self, rank, world_size, unique_id, cupy, nccl, bootstrap=None):
        self.rank, self.world_size, self.cupy, self.nccl, self.bootstrap = rank, world_size, cupy, nccl, bootstrap
        cupy.cuda.Device(rank % cupy.cuda.runtime.getDeviceCount()).use()
        self.comm = nccl.NcclCommunicator(world_size, unique_id, rank)

    @classmethod
    def create(cls):
        """The group of this process: MPI's ranks under mpiexec, else one rank."""
        import cupy
        from tinygrad_ed.distributed import launched_by_mpi
        try:
            from cupy.cuda import nccl
            available = getattr(nccl, "available", True)
        except ImportError:
            available = False
        if not available:
            if not launched_by_mpi():
                return ProcessGroup()   # one GPU, one rank: nothing to sum, and no need for NCCL
            raise RuntimeError("the nccl transport needs NCCL, which this cupy cannot load (pip install "
                               "nvidia-nccl-cu12, or the NCCL of your CUDA)")
        bootstrap = None
        if launched_by_mpi():
            from tinygrad_ed.distributed.mpi import MPIGroup
            bootstrap = MPIGroup()
        rank, world_size = (bootstrap.rank, bootstrap.world_size) if bootstrap else (0, 1)
        unique_id = nccl.get_unique_id() if rank == 0 else None
        if bootstrap is not None:
            unique_id = bootstrap.comm.bcast(unique_id, root=0)
        return cls(rank, world_size, unique_id, cupy, nccl, bootstrap)

    def all_reduce(self, array):
        dtype = getattr(self.nccl, NCCL_DTYPES[array.dtype.name])
        self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, dtype, self.nccl.NCCL_SUM,
                            self.cupy.cuda.get_current_stream().ptr)

    def broadcast(self, array, root=0):
        dtype = getattr(self.nccl, NCCL_DTYPES[array.dtype.name])
        self.comm.bcast(array.data.ptr, array.size, dtype, root, self.cupy.cuda.get_current_stream().ptr)

    def barrier(self):
        flag = self.cupy.zeros(1, dtype=self.cupy.float32)
        self.all_reduce(flag)
        self.cupy.cuda.get_current_stream().synchronize()

    def close(self, error=None):
        if self.bootstrap is not None:
            self.bootstrap.close(error)   # a failed rank aborts the MPI job, as on the mpi transport
