"""The cuda path end to end, in every CI build: `train_char_gpt.py --device cuda` in float32 and float16 at the GPU
preset's batch and context, and a whole train() run that reads nothing back from the device between log lines.

Where there is no GPU, cuda is the cupy stand-in (tests/cupy_standin.py): in its own process through
tests/standin_run.py, in this one through the `standin` fixture (tests/conftest.py). Issue 14."""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import real_gpu
from gpt import training
from gpt.config import TrainConfig
from gpt.data import CharDataset

pytestmark = pytest.mark.cuda
ROOT = Path(__file__).resolve().parent.parent
GPU_BATCH, GPU_CONTEXT = 64, 256  # gpt/config.py's gpu_preset


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_train_char_gpt_runs_on_cuda_at_the_gpu_presets_batch(tmp_path, dtype):
    """A small model (1 layer, 2 heads, 32 wide) at batch 64, context 256: the float16 run died at iteration 0 with
    an inf loss at this batch (16,384 positions summed in float16)."""
    if not real_gpu() and os.environ.get("TINYGRAD_ED_STANDIN") == "0":
        pytest.skip("cuda: no usable GPU, and TINYGRAD_ED_STANDIN=0 turns the cupy stand-in off")
    counts = tmp_path / "counts.json"
    runner = [] if real_gpu() else [str(ROOT / "tests" / "standin_run.py")]
    command = [sys.executable, *runner, str(ROOT / "examples" / "train_char_gpt.py"), "--device", "cuda",
               "--dtype", dtype, "--batch-size", str(GPU_BATCH), "--block-size", str(GPU_CONTEXT), "--n-layer", "1",
               "--n-head", "2", "--n-embd", "32", "--max-iters", "2", "--log-interval", "1", "--eval-iters", "1",
               "--warmup-iters", "1", "--out-dir", str(tmp_path / "out"), "--sample-tokens", "8"]
    # one BLAS thread on the stand-in: its numpy work is small, and idle BLAS threads spinning on the CI's two shared
    # cores made the run take 20 s of wall clock for under 3 s of CPU
    threads = {} if real_gpu() else {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={**os.environ, **threads, "TINYGRAD_ED_STANDIN_COUNTS": str(counts)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    losses = [float(loss) for loss in re.findall(r"^iter \d+: loss (\S+),", result.stdout, flags=re.M)]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses), result.stdout
    assert "(float16 overflow" not in result.stdout
    final = re.search(r"^final \(iteration 2\): train loss (\S+), val loss (\S+),", result.stdout, flags=re.M)
    assert final and all(math.isfinite(float(loss)) for loss in final.groups()), result.stdout
    if not real_gpu():  # it ran on the stand-in, through its kernels
        launches = json.loads(counts.read_text())["launches"]
        fused = "layer_norm_forward" if dtype == "float32" else "tinygrad_ed_unscale_gradients"
        assert launches.get(fused, 0) > 0 and launches.get("tinygrad_ed_clip_gradients", 0) > 0, launches


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_training_run_reads_nothing_back_between_log_lines(standin, tmp_path, monkeypatch, dtype):
    """train()'s loop on cuda reads from the device only on log iterations (the loss and the gradient norm for the
    log line) and in evaluations; float16 adds the loss scaler's overflow flag, once per iteration."""
    reads, starts = standin.transfers.reads, []
    real_train_step = training.train_step

    def train_step(*args, **kwargs):
        starts.append(len(reads))  # iteration i's reads: from its train_step to the next one's
        return real_train_step(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", train_step)
    config = TrainConfig(out_dir=str(tmp_path), device="cuda", dtype=dtype, n_layer=1, n_head=2, n_embd=16,
                         block_size=16, batch_size=4, max_iters=7, log_interval=3, eval_interval=100, eval_iters=1,
                         warmup_iters=1, dropout=0.1)
    result = training.train(config, CharDataset(), log=lambda line: None)
    assert result.iter_num == 7 and len(starts) == 7
    for iteration in range(len(starts) - 1):  # the last one's span holds the final evaluation
        during = reads[starts[iteration]:starts[iteration + 1]]
        if iteration % config.log_interval == 0:
            assert any("progress.py" in site for _, site in during), during  # the counter sees the log's reads
        elif dtype == "float32":
            assert during == [], (iteration, during)
        else:
            assert len(during) == 1 and "grad_scaler.py" in during[0][1], (iteration, during)
    assert all(np.isfinite(loss) for _, loss in result.logs)
