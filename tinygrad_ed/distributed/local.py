"""The local transport: the ranks of a run are processes this program forks itself, meeting in shared memory.

    with LocalGroup(world_size=2) as group:
        ...   # two processes run this block: rank 0 is the process that entered it, rank 1 a fork of it

Inside the block every rank runs the same code. When the block ends, a forked rank exits (it never returns to the
code around the block); rank 0 waits for the others and goes on alone. Needs os.fork (Linux, macOS).

A collective meets in two shared mappings, both made before the fork, so they vanish with the last process even
after a SIGKILL: a small control block (each rank's arrival count, the abort flag, each rank's failure message)
and an unlinked file that grows to the largest array summed so far (one slot per rank, and the sum).
    all_reduce: each rank copies its array into its slot; all meet; rank r sums chunk r of the slots, in rank order
                (so every rank reads the same bits); all meet; each rank copies the sum out.

No rank outlives the others:
  - a forked rank watches a pipe that only rank 0 holds open: when rank 0 dies, even by SIGKILL, the pipe closes
    and the rank exits at once;
  - a rank that fails (an exception, SIGINT, SIGTERM) writes why into the control block and raises the abort flag;
  - rank 0, while it waits in a collective, also looks for forked ranks that died without a word (SIGKILL, the OOM
    killer) and raises the flag for them;
  - every rank that waits in a collective sees the flag and raises RankFailed, naming the rank and the cause.
"""
import mmap
import os
import signal
import sys
import tempfile
import threading
import time
import traceback

import numpy as np

from tinygrad_ed.distributed.group import ProcessGroup, RankFailed
from tinygrad_ed.fast.cpu_runtime import share_cores

MESSAGE_BYTES = 4096      # each rank's failure message, at most
CHECK_EVERY_S = 0.05      # how often a waiting rank 0 looks for dead ranks
SPIN_S = 0.0005           # how long a waiting rank spins before it starts to sleep between looks
EXIT_WAIT_S = 3.0         # how long rank 0 waits for the others to exit after a failure, before killing them
FINISH_WAIT_S = 60.0      # how long rank 0 waits for the others to finish a run that ended well


def usable_cores():
    """The CPU cores this process may run on: its affinity mask where the OS has one (containers limit it), else
    the machine's count. One rank per core is the local transport's default."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _shared_mapping(size):
    """An anonymous shared mapping: kept across fork, gone with the last process that maps it."""
    return mmap.mmap(-1, size)


def _shared_file():
    """The file descriptor of an empty file no name leads to (in memory where the OS allows), for a mapping that
    grows after the fork."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("tinygrad_ed-all-reduce")
    handle = tempfile.TemporaryFile(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    return os.dup(handle.fileno())


def describe_exit(status):
    """How a process ended, from its waitpid status, in words."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exited with code {code}"
    name = signal.Signals(-code).name
    hint = " (the OOM killer sends it when memory runs out)" if name == "SIGKILL" else ""
    return f"was killed by {name}{hint}"


class LocalGroup(ProcessGroup):
    def __init__(self, world_size):
        if world_size > 1 and not hasattr(os, "fork"):
            raise ValueError("the local transport forks its ranks, and this OS has no os.fork: use world_size=1 "
                             "(--workers 1), or start the ranks with mpiexec")
        self.rank, self.world_size, self._children = 0, world_size, []
        self._closed = False
        if world_size == 1:
            return
        W = world_size
        # control block: int64 [abort, message lengths × W, arrival counts × W], then the messages
        self._header_bytes = -(-8 * (1 + 2 * W) // 64) * 64
        self._control = _shared_mapping(self._header_bytes + MESSAGE_BYTES * W)
        header = np.frombuffer(self._control, dtype=np.int64, count=1 + 2 * W)
        self._abort, self._message_lengths, self._arrived = header[:1], header[1:1 + W], header[1 + W:]
        self._epoch = 0                         # collectives this rank has arrived at
        self._data_fd, self._data, self._stride = _shared_file(), None, 0
        share_cores(world_size)   # BLAS threads per rank: its share of the cores (tinygrad_ed/fast/cpu_runtime.py)
        self._start_ranks()

    # ---- starting and ending the ranks ----
    def _start_ranks(self):
        sys.stdout.flush()
        sys.stderr.flush()   # or the forked ranks would inherit (and might one day print) what is buffered
        alive_read, alive_write = os.pipe()
        for rank in range(1, self.world_size):
            pid = os.fork()
            if pid == 0:
                os.close(alive_write)
                self.rank, self._children = rank, []
                self._watch_rank_0(alive_read)
                # Ctrl-C reaches every process of a terminal's group; SIGTERM may reach any rank: both stop this
                # rank with a message (rank 0 handles its own, and stops the others)
                for stop in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(stop, _raise_keyboard_interrupt)
                return
            self._children.append((rank, pid))
        os.close(alive_read)
        self._alive_write = alive_write          # held open, never written: it closes when rank 0 ends

    @staticmethod
    def _watch_rank_0(alive_read):
        def watch():
            while os.read(alive_read, 1):
                pass
            os._exit(1)  # rank 0 is gone: nobody could read what this rank computes, and it must not linger
        threading.Thread(target=watch, name="rank-0-watch", daemon=True).start()

    def close(self, error=None):
        if self._closed or self.world_size == 1:
            return
        self._closed = True
        if self.rank != 0:
            if error is not None and not isinstance(error, RankFailed):
                self._fail(error)
            os._exit(1 if error is not None else 0)   # a forked rank's life is the block: never past it
        if error is not None:
            if not self._abort[0]:
                self._fail(error)
            self._reap(EXIT_WAIT_S)
            return
        failure = self._reap(FINISH_WAIT_S)
        if failure:
            raise failure

    def _reap(self, patience):
        """Wait up to `patience` seconds for the forked ranks to exit, then kill the rest. Returns a RankFailed for
        the first rank that failed, if any."""
        deadline, failure = time.monotonic() + patience, None
        while self._children and time.monotonic() < deadline:
            failure = self._check_ranks() or failure
            if self._children:
                time.sleep(0.01)
        for _, pid in self._children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        if self._children and failure is None:
            failure = RankFailed(f"rank {self._children[0][0]} did not finish within {patience:g} s of rank 0 "
                                 f"and was killed")
        self._children = []
        os.close(self._alive_write)
        return failure

    def _check_ranks(self):
        """Rank 0: forget the forked ranks that exited; a failed one raises the abort flag. Returns a RankFailed
        for a failure seen, else None."""
        failure = None
        for rank, pid in list(self._children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if not done:
                continue
            self._children.remove((rank, pid))
            if os.waitstatus_to_exitcode(status) == 0:
                continue
            if not self._message_lengths[rank]:   # died without a word: say it for it
                self._write_message(rank, f"rank {rank} (pid {pid}) {describe_exit(status)}")
            self._abort[0] = 1
            failure = failure or self._failure()
        return failure

    # ---- failures ----
    def _fail(self, error):
        """Write why this rank ends into the control block, and raise the abort flag."""
        if isinstance(error, KeyboardInterrupt):
            why = f"was stopped by {_stopped_by}"
        else:
            why = "failed:\n" + "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self._write_message(self.rank, f"rank {self.rank} (pid {os.getpid()}) {why}")
        self._abort[0] = 1

    def _write_message(self, rank, text):
        data = text.encode()[-MESSAGE_BYTES:]
        start = self._header_bytes + rank * MESSAGE_BYTES
        self._control[start:start + len(data)] = data
        self._message_lengths[rank] = len(data)

    def _failure(self):
        """The RankFailed to raise once the abort flag is up: the first rank (in rank order) that said why."""
        for rank in range(self.world_size):
            length = int(self._message_lengths[rank])
            if length:
                start = self._header_bytes + rank * MESSAGE_BYTES
                message = self._control[start:start + length].decode(errors="replace")
                if " was stopped by " in message.split("\n")[0]:
                    return RankInterrupted(f"the run stopped: {message}", rank)
                return RankFailed(f"the run stopped: {message}", rank)
        return RankFailed("the run stopped: a rank failed without saying why")

    # ---- the collectives ----
    def barrier(self):
        if self.world_size == 1:
            return
        self._epoch += 1
        self._arrived[self.rank] = self._epoch
        started = next_check = time.monotonic()
        while self._arrived.min() < self._epoch:
            if self._abort[0]:
                raise self._failure()
            now = time.monotonic()
            if self.rank == 0 and now >= next_check:
                next_check = now + CHECK_EVERY_S
                failure = self._check_ranks()
                if failure:
                    raise failure
            if now - started > SPIN_S:
                time.sleep(0.0001)   # the others are far behind: leave the core to them

    def _slots(self, array):
        """world_size + 1 arrays shaped like `array`'s flat form in the shared file: one per rank, and the sum.

        Every collective uses the same layout, slot r at r × stride, the sum after the last, with one stride for
        all sizes: a rank that leaves a collective early and writes its slot for the next one then never touches
        the sum a slower rank is still copying out. When an array outgrows the stride, the layout changes: all
        ranks first meet (every rank calls the same collectives with the same sizes, so all of them meet here)."""
        n, itemsize = array.size, array.dtype.itemsize
        needed = -(-n * itemsize // 64) * 64
        if needed > self._stride:
            self.barrier()   # every rank is done with the old layout before anyone writes in the new one
            self._stride = max(needed, 2 * self._stride)
            size = self._stride * (self.world_size + 1)
            if os.fstat(self._data_fd).st_size < size:
                os.ftruncate(self._data_fd, size)
            self._data = mmap.mmap(self._data_fd, size)
        return [np.frombuffer(self._data, dtype=array.dtype, count=n, offset=rank * self._stride)
                for rank in range(self.world_size + 1)]

    def all_reduce(self, array):
        if self.world_size == 1:
            return
        *slots, total = self._slots(array)
        flat = array.reshape(-1)
        slots[self.rank][...] = flat
        self.barrier()
        n = flat.size
        low, high = self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size
        np.add(slots[0][low:high], slots[1][low:high], out=total[low:high])
        for slot in slots[2:]:
            total[low:high] += slot[low:high]
        self.barrier()
        flat[...] = total

    def broadcast(self, array, root=0):
        if self.world_size == 1:
            return
        *slots, _ = self._slots(array)
        if self.rank == root:
            slots[root][...] = array.reshape(-1)
        self.barrier()
        if self.rank != root:
            array.reshape(-1)[...] = slots[root]
        self.barrier()


class RankInterrupted(RankFailed, KeyboardInterrupt):
    """Another rank was stopped by SIGINT or SIGTERM: this run ends as an interrupted one does."""


_stopped_by = "SIGINT"   # the signal that stopped this rank, for its message


def _raise_keyboard_interrupt(signum, frame):
    global _stopped_by
    _stopped_by = signal.Signals(signum).name
    raise KeyboardInterrupt
