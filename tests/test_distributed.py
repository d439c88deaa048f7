"""Data parallelism (tinygrad_ed/distributed): the same run at every world size and on every transport, gradients
summed once per step, checkpoints that resume at another world size, and no rank that outlives a failure."""
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gpt.checkpoint import load_checkpoint
from gpt.config import TrainConfig
from gpt.data import CharDataset
from gpt.model import GPT, GPTConfig
from gpt.step import configure_optimizers, train_step
from gpt.training import train
from tinygrad_ed import Tensor
from tinygrad_ed.distributed import DistributedDataParallel, RankFailed, init_process_group
from tinygrad_ed.distributed import nccl as nccl_module
from tinygrad_ed.distributed.local import usable_cores

REPO = Path(__file__).resolve().parent.parent
TRAIN = str(REPO / "examples" / "train_char_gpt.py")


@pytest.fixture(scope="module")
def shakespeare():
    return CharDataset()


def tiny(out_dir, **overrides):
    """Two layers, 32 wide, batches of 8 sequences of 16 characters; a checkpoint at every evaluation."""
    settings = dict(out_dir=str(out_dir), n_layer=2, n_head=2, n_embd=32, block_size=16, batch_size=8, eval_iters=2,
                    eval_interval=3, log_interval=1, max_iters=6, warmup_iters=2, lr_decay_iters=20, dropout=0.0,
                    device="cpu", always_save_checkpoint=True)
    return TrainConfig(**{**settings, **overrides})


def quiet(line):
    pass


def assert_same_run(a, b, rtol=2e-5):
    """Two TrainResults of the same run: the same losses at every log and evaluation, the same weights."""
    assert [i for i, _ in a.logs] == [i for i, _ in b.logs]
    np.testing.assert_allclose([loss for _, loss in a.logs], [loss for _, loss in b.logs], rtol=rtol)
    np.testing.assert_allclose(np.array([e[1:] for e in a.evals]), np.array([e[1:] for e in b.evals]), rtol=rtol)
    assert_same_weights(a.model.state_dict(), b.model.state_dict())


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-6, err_msg=name)


# ---- one function at every world size ----

@pytest.mark.parametrize("dropout, accumulation", [(0.0, 1), (0.1, 1), (0.1, 2)])
def test_one_and_two_local_ranks_train_the_same_run(tmp_path, shakespeare, dropout, accumulation):
    config = tiny(tmp_path, dropout=dropout, gradient_accumulation_steps=accumulation)
    one = train(replace(config, workers=1, out_dir=str(tmp_path / "one")), shakespeare, log=quiet)
    two = train(replace(config, workers=2, out_dir=str(tmp_path / "two")), shakespeare, log=quiet)
    assert_same_run(one, two)


def test_an_uneven_cut_of_the_batch_still_gives_the_batch_gradient(tmp_path, shakespeare):
    config = tiny(tmp_path, batch_size=5, max_iters=3)   # 5 sequences over 2 ranks: slices of 2 and 3
    assert_same_run(train(replace(config, workers=1), shakespeare, log=quiet),
                    train(replace(config, workers=2, out_dir=str(tmp_path / "two")), shakespeare, log=quiet))


def test_every_rank_ends_with_the_same_weights():
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11), seed=3)
    with init_process_group("local", 2) as group:
        ddp = DistributedDataParallel(model, group)
        optimizer = configure_optimizers(model, 0.1, 1e-2, (0.9, 0.99))
        rng = np.random.default_rng(0)  # the same batches on both ranks, as train() draws them
        for _ in range(3):
            X, Y = (Tensor(rng.integers(0, 11, (4, 8))) for _ in range(2))
            train_step(ddp, optimizer, (X, Y), lambda: (X, Y), 1e-2, grad_clip=1.0)
        weights = np.concatenate([p.data.ravel() for p in model.parameters()])
        gathered = np.zeros((2, weights.size), dtype=weights.dtype)
        gathered[group.rank] = weights
        group.all_reduce(gathered)   # each rank's weights in its own row
        np.testing.assert_array_equal(gathered[0], gathered[1])   # bit for bit: the same sum, the same update


def test_a_rank_that_leaves_a_collective_late_still_reads_its_sum():
    """A fast rank that goes on to a larger collective must not write over the sum a slow rank is still copying
    out (the loss's one float, then the gradients' bucket, is train_step's order). Rank 1 is made slow between the
    collective's last meeting and its copy; the race once gave 0.0137 differences between the ranks' weights."""
    with init_process_group("local", 2) as group:
        barrier, meetings = group.barrier, [0]

        def slow_barrier():
            barrier()
            meetings[0] += 1
            if group.rank == 1 and meetings[0] == 2:   # the size-1 all_reduce's second meeting
                time.sleep(0.2)
        group.barrier = slow_barrier
        loss = np.array([1.0 + group.rank])
        group.all_reduce(loss)                        # 1 + 2 on both ranks
        group.all_reduce(np.full(4096, 7.0))          # rank 0 writes its slot while rank 1 sleeps
        group.barrier = barrier
        seen = np.zeros(2)
        seen[group.rank] = loss[0]
        group.all_reduce(seen)
        np.testing.assert_array_equal(seen, [3.0, 3.0])


def test_gradient_accumulation_sums_the_gradients_once_per_step():
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11), seed=3)
    with init_process_group("local", 2) as group:
        ddp = DistributedDataParallel(model, group)
        sizes, all_reduce = [], group.all_reduce
        group.all_reduce = lambda array: (sizes.append(array.size), all_reduce(array))
        optimizer = configure_optimizers(model, 0.1, 1e-3, (0.9, 0.99))
        X = Tensor(np.random.default_rng(0).integers(0, 11, (4, 8)))
        train_step(ddp, optimizer, (X, X), lambda: (X, X), 1e-3, accumulation_steps=3)
        n = sum(p.size for p in model.parameters())
        assert sizes == [1, 1, 1, n]        # each micro-step's loss; the gradients once, as one bucket
        assert ddp.gradient_syncs == 1


def test_the_batch_loss_is_the_whole_batchs_on_every_rank():
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11), seed=3)
    X, Y = (Tensor(np.random.default_rng(1).integers(0, 11, (6, 8))) for _ in range(2))
    expected = model(X, Y)[1].item()
    with init_process_group("local", 2) as group:
        logits, loss = DistributedDataParallel(model, group)(X, Y)
        assert logits.shape == (3, 8, 11)   # this rank's slice
        assert loss.item() == pytest.approx(expected, rel=1e-6)


# ---- MPI: the same run under mpiexec ----

def mpi_available():
    if shutil.which("mpiexec") is None:
        return False
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


needs_mpi = pytest.mark.skipif(not mpi_available(), reason="needs mpiexec and mpi4py: pip install -e '.[mpi]'")
TINY_FLAGS = ["--device", "cpu", "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "16",
              "--batch-size", "8", "--eval-iters", "2", "--eval-interval", "3", "--log-interval", "1", "--max-iters",
              "6", "--warmup-iters", "2", "--lr-decay-iters", "20", "--dropout", "0.1", "--always-save-checkpoint",
              "--sample-tokens", "0"]


def run_cli(*args, cwd, launcher=(), timeout=180):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*launcher, sys.executable, TRAIN, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@needs_mpi
def test_two_mpi_ranks_train_the_same_run_as_one_process(tmp_path, shakespeare):
    result = run_cli(*TINY_FLAGS, "--out-dir", "mpi", cwd=tmp_path, launcher=("mpiexec", "-n", "2"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("config:") == 1          # rank 0 alone prints
    assert "backend = 'mpi'" in result.stdout and "workers = 2" in result.stdout
    config = tiny(tmp_path / "one", dropout=0.1, workers=1)
    one = train(config, shakespeare, log=quiet)
    saved = load_checkpoint(str(tmp_path / "mpi" / "ckpt.npz"))
    assert saved.iter_num == one.iter_num == 6
    assert saved.best_val_loss == pytest.approx(one.best_val_loss, rel=2e-5)
    assert_same_weights(saved.model_state, one.model.state_dict())


@needs_mpi
def test_an_mpi_rank_that_fails_ends_the_job_naming_itself(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "import numpy as np\n"
        "from tinygrad_ed.distributed import init_process_group\n"
        "with init_process_group('mpi') as group:\n"
        "    if group.rank == 1:\n"
        "        raise ValueError('rank 1 cannot go on')\n"
        "    group.all_reduce(np.ones(4))\n")
    result = subprocess.run(["mpiexec", "-n", "2", sys.executable, str(script)], env={**os.environ,
                            "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "rank 1 of 2: ValueError: rank 1 cannot go on" in result.stderr


# ---- checkpoints resume at another world size ----

@pytest.mark.parametrize("workers", [1, 4])
def test_a_checkpoint_from_two_ranks_resumes_at_another_world_size(tmp_path, shakespeare, workers):
    config = tiny(tmp_path / "run", max_iters=6, eval_interval=3)
    whole = train(replace(config, workers=2, out_dir=str(tmp_path / "whole")), shakespeare, log=quiet)
    train(replace(config, workers=2, max_iters=3), shakespeare, log=quiet)                # saved at iteration 3
    resumed = train(replace(config, workers=workers, init_from="resume"), shakespeare, log=quiet)
    assert resumed.iter_num == 6
    assert [e[0] for e in resumed.evals] == [3, 6]
    np.testing.assert_allclose(np.array(resumed.evals)[:, 1:], np.array(whole.evals)[1:, 1:], rtol=2e-5)
    assert_same_weights(resumed.model.state_dict(), whole.model.state_dict())


# ---- failures: no rank outlives another, and the message names the rank ----

def test_a_rank_that_raises_stops_the_run_with_its_error(tmp_path):
    script = tmp_path / "raise.py"
    script.write_text(
        "import numpy as np\n"
        "from tinygrad_ed.distributed import init_process_group\n"
        "with init_process_group('local', 3) as group:\n"
        "    for step in range(1000):\n"
        "        if group.rank == 2 and step == 5:\n"
        "            raise ValueError('rank 2 cannot go on')\n"
        "        group.all_reduce(np.ones(4))\n")
    result = subprocess.run([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, timeout=60)   # a hang fails here, not forever
    assert result.returncode == 1
    assert "RankFailed: the run stopped: rank 2 (pid" in result.stderr
    assert "ValueError: rank 2 cannot go on" in result.stderr


def test_a_rank_that_raises_inside_train_stops_it(tmp_path, shakespeare, monkeypatch):
    from gpt import training
    parent, scheduled_lr = os.getpid(), training.scheduled_lr

    def failing_on_rank_1(config, iter_num):
        if os.getpid() != parent and iter_num == 2:
            raise ArithmeticError("a fault in rank 1")
        return scheduled_lr(config, iter_num)

    monkeypatch.setattr(training, "scheduled_lr", failing_on_rank_1)
    started = time.monotonic()
    with pytest.raises(RankFailed, match=r"rank 1 \(pid \d+\) failed:(.|\n)*ArithmeticError: a fault in rank 1"):
        train(tiny(tmp_path, workers=2, max_iters=50), shakespeare, log=quiet)
    assert time.monotonic() - started < 30


def ranks_of(pid):
    """The pids of the processes `pid` forked (Linux /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def gone(pid):
    """Whether process `pid` has ended (exited, or a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except (FileNotFoundError, ProcessLookupError):
        return True


LONG = [*TINY_FLAGS, "--max-iters", "100000", "--workers", "2", "--eval-interval", "5", "--dropout", "0.0"]
needs_proc = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process tree from /proc")


def start_training(tmp_path):
    """A long 2-rank run in a session of its own, once its first checkpoint is on disk: (process, rank 1's pid)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, TRAIN, *LONG, "--out-dir", "out"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "out" / "ckpt.npz").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.1)
    children = ranks_of(process.pid)
    assert len(children) == 1, children
    return process, children[0]


def wait_gone(pids, seconds):
    deadline = time.monotonic() + seconds
    while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [pid for pid in pids if not gone(pid)]


@needs_proc
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_killing_a_rank_ends_the_run_naming_it(tmp_path, how):
    process, rank_1 = start_training(tmp_path)
    try:
        os.kill(rank_1, getattr(signal, how))
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert "Traceback" not in err
    if how == "SIGKILL":
        assert process.returncode == 1
        assert f"error: the run stopped: rank 1 (pid {rank_1}) was killed by SIGKILL" in err
    else:   # a rank stopped by a signal stops the run as an interrupt does, saying which rank and signal
        assert process.returncode == 128 + signal.SIGINT
        assert f"(the run stopped: rank 1 (pid {rank_1}) was stopped by {how})" in err
    assert wait_gone([rank_1], 5) == []
    assert (tmp_path / "out" / "ckpt.npz").exists()


@needs_proc
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_killing_rank_0_leaves_no_rank_behind(tmp_path, how):
    process, rank_1 = start_training(tmp_path)
    try:
        os.kill(process.pid, getattr(signal, how))
        process.communicate(timeout=30)
        assert wait_gone([rank_1], 5) == []   # even a SIGKILL of rank 0: rank 1 sees its pipe close
    finally:
        if not gone(rank_1):   # the test failed: end the run here
            os.kill(rank_1, signal.SIGKILL)


# ---- settings the ranks cannot honour are refused before any work ----

def test_settings_the_ranks_cannot_honour_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"workers must be at most batch_size \(4\)"):
        tiny(tmp_path, batch_size=4, workers=5)
    with pytest.raises(ValueError, match="backend 'nccl' sums gradients on GPUs: it needs device='cuda'"):
        tiny(tmp_path, backend="nccl")
    with pytest.raises(ValueError, match="backend"):
        tiny(tmp_path, backend="gloo")


def test_without_fork_the_local_backend_runs_one_process_or_says_why(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "fork")
    assert tiny(tmp_path, batch_size=64, block_size=64).worker_count() == 1
    with pytest.raises(ValueError, match="the local backend forks its ranks, and this OS has no os.fork"):
        tiny(tmp_path, workers=2)


def test_the_automatic_world_size_leaves_no_slice_under_256_tokens(tmp_path):
    assert tiny(tmp_path, batch_size=2, block_size=16).worker_count() == 1        # 32 tokens: one rank
    assert tiny(tmp_path, batch_size=64, block_size=64).worker_count() == min(usable_cores(), 16)  # 4096 / 256


def test_a_batch_smaller_than_the_world_is_refused_by_name():
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11), seed=3)
    with init_process_group("local", 2) as group:
        with pytest.raises(ValueError, match="a batch of 1 sequences cannot be cut into 2 rank slices"):
            DistributedDataParallel(model, group)(Tensor(np.zeros((1, 8), dtype=np.int64)))


# ---- NCCL: what can be checked without a GPU ----

class FakeNccl:
    """cupy.cuda.nccl's names the transport uses, recording each call."""
    NCCL_FLOAT32, NCCL_FLOAT16, NCCL_FLOAT64, NCCL_INT32, NCCL_INT64, NCCL_SUM = range(6)
    calls = []

    class NcclCommunicator:
        def __init__(self, world_size, unique_id, rank):
            FakeNccl.calls.append(("init", world_size, unique_id, rank))

        def allReduce(self, send, receive, count, dtype, op, stream):
            FakeNccl.calls.append(("allReduce", send, receive, count, dtype, op, stream))

        def bcast(self, pointer, count, dtype, root, stream):
            FakeNccl.calls.append(("bcast", pointer, count, dtype, root, stream))


class FakeCupy:
    """The cupy names the transport uses: devices, the current stream, device arrays' pointers."""
    used = []

    class cuda:
        class runtime:
            @staticmethod
            def getDeviceCount():
                return 4

        class Device:
            def __init__(self, index):
                self.index = index

            def use(self):
                FakeCupy.used.append(self.index)

        @staticmethod
        def get_current_stream():
            return type("Stream", (), {"ptr": 77})()


class DeviceArray:
    def __init__(self, size, dtype):
        self.size, self.dtype, self.data = size, np.dtype(dtype), type("Memory", (), {"ptr": 1234})()


def test_the_nccl_transport_sums_one_device_bucket_in_place_on_the_current_stream():
    FakeNccl.calls.clear()
    group = nccl_module.NCCLGroup(5, 8, "the id", FakeCupy, FakeNccl)
    assert FakeCupy.used[-1] == 1                      # rank 5 of a 4-GPU machine: GPU 5 mod 4
    assert FakeNccl.calls[0] == ("init", 8, "the id", 5)
    group.all_reduce(DeviceArray(1000, "float32"))
    group.broadcast(DeviceArray(10, "float16"), root=0)
    assert FakeNccl.calls[1:] == [("allReduce", 1234, 1234, 1000, FakeNccl.NCCL_FLOAT32, FakeNccl.NCCL_SUM, 77),
                                  ("bcast", 1234, 10, FakeNccl.NCCL_FLOAT16, 0, 77)]


@pytest.mark.cuda
def test_nccl_on_one_gpu_sums_in_place(cuda):
    import cupy
    with init_process_group("nccl") as group:
        array = cupy.arange(6, dtype=cupy.float32)
        group.all_reduce(array)
        group.broadcast(array)
        assert group.world_size == 1
        np.testing.assert_array_equal(cupy.asnumpy(array), np.arange(6))
