"""A training iteration on cuda reads nothing back from the device (the CPU can queue work ahead of the GPU): counted
by the cupy stand-in (tests/cupy_standin.py), so these run where there is no GPU and skip where there is one."""
import numpy as np
import pytest

from gpt.data import Batches, CharDataset
from gpt.model import GPT, GPTConfig
from gpt.step import configure_optimizers, train_step
from optim import GradScaler
from tinygrad_ed.mixed_precision import HalfPrecision


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_training_iteration_reads_nothing_back(standin, dtype):
    model = GPT(GPTConfig(block_size=16, vocab_size=65, n_layer=1, n_head=2, n_embd=16, bias=False), device="cuda")
    optimizer = configure_optimizers(model, 0.1, 1e-3, (0.9, 0.99))
    batches = Batches(CharDataset(), 4, 16, 1, "cuda")
    scaler = GradScaler(init_scale=2.0 ** 15, enabled=dtype == "float16")
    runner = HalfPrecision(model) if dtype == "float16" else model
    batch = batches.next()
    for _ in range(2):
        standin.transfers.clear()
        step = train_step(runner, optimizer, batch, batches.next, 1e-3, grad_clip=1.0, scaler=scaler)
        batch = step.next_batch
        reads = standin.transfers.reads
        if dtype == "float32":
            assert reads == []
        else:  # the scaler decides whether to step: its overflow flag, read once
            assert len(reads) == 1 and "grad_scaler.py" in reads[0][1], reads
    assert np.isfinite(step.loss.item())
