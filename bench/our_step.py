"""The benchmarks' model sizes, and our engine's training step at one of them, built as gpt/training.py builds it.

bench/train_step.py times this step against PyTorch; bench/step_phases.py splits it into phases;
bench/compare_revisions.py times it in two versions of the code. The step's code is imported when
`training_step` is called, not when this file is, so that a caller can first choose which checkout's
gpt/, optim/ and tinygrad_ed/ it measures (by putting that checkout first on sys.path).
"""
import time

# name: (n_layer, n_head, n_embd, block_size, batch_size); vocabulary 65 (tiny Shakespeare's characters)
SIZES = {
    "tiny": (2, 2, 64, 16, 4),
    "cpu": (4, 4, 128, 64, 12),      # the chapter's CPU preset: examples/train_char_gpt.py's default run
    "baby": (6, 6, 384, 256, 8),     # nanoGPT's GPU preset, at batch 8
}
VOCAB_SIZE = 65
PHASES = ("forward", "backward", "clip", "adamw", "zero_grad")


def training_step(size, workers, batches=8):
    """(step, batches) for the named size: step(X, Y, marks=None) is one iteration (nanoGPT's: forward, backward,
    clip to 1.0, AdamW with weight decay 0.1 on the matrices, lr 1e-3, betas (0.9, 0.99), zero_grad), with the
    batch split over `workers` data-parallel processes; with a list as `marks` it appends time.perf_counter()
    before the first phase and after each. `batches`: that many fixed training batches (X, Y), seed 0."""
    import numpy as np
    from gpt import GPT, CharDataset, GPTConfig
    from optim import AdamW, clip_grad_norm_, weight_decay_groups
    from tinygrad_ed.parallel import data_parallel

    n_layer, n_head, n_embd, block_size, batch_size = SIZES[size]
    model = GPT(GPTConfig(block_size=block_size, vocab_size=VOCAB_SIZE, n_layer=n_layer, n_head=n_head,
                          n_embd=n_embd, dropout=0.0, bias=False))
    optimizer = AdamW(weight_decay_groups(model.named_parameters(), 0.1), lr=1e-3, betas=(0.9, 0.99))
    runner = data_parallel(model, workers)
    parameters = model.parameters()
    dataset, generator = CharDataset(), np.random.default_rng(0)

    def step(X, Y, marks=None):
        mark = marks.append if marks is not None else (lambda _: None)
        mark(time.perf_counter())
        _, loss = runner(X, Y)
        mark(time.perf_counter())
        loss.backward()
        mark(time.perf_counter())
        clip_grad_norm_(parameters, 1.0)
        mark(time.perf_counter())
        optimizer.step()
        mark(time.perf_counter())
        optimizer.zero_grad()
        mark(time.perf_counter())

    return step, [dataset.get_batch("train", batch_size, block_size, generator) for _ in range(batches)]
