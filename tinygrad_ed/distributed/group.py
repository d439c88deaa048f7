"""What every transport's process group is: a rank among world_size ranks, and three collectives.

Every rank must call the same collectives in the same order with arrays of the same shape and dtype: a collective
is where the ranks meet, and each waits there for all the others.
"""


class RankFailed(RuntimeError):
    """Another rank of the run failed or was killed: the run cannot go on. The message names the rank and why."""

    def __init__(self, message, rank=None):
        self.rank = rank
        super().__init__(message)


class ProcessGroup:
    """The ranks of one run. A transport implements the collectives for world_size > 1; with one rank each is
    the identity (nothing to meet), so a one-process run goes through the same code at no cost."""

    rank = 0
    world_size = 1

    @property
    def master_process(self):
        """Rank 0, nanoGPT's master_process: the one that logs, evaluates for the record and writes checkpoints."""
        return self.rank == 0

    def all_reduce(self, array):
        """Sum `array` (a contiguous numpy or cupy array) over every rank, in place: each rank ends with the same
        sum, bit for bit, so their updates stay the same."""

    def broadcast(self, array, root=0):
        """Overwrite `array` on every rank with rank `root`'s, in place."""

    def barrier(self):
        """Return once every rank has called it."""

    def close(self, error=None):
        """End the group; `error` is the exception this rank is ending with, if any."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self.close(error)
        return False
