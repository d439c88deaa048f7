"""Where one training iteration of our GPT spends its time: forward, backward, clip, AdamW step, zero_grad.

bench/train_step.py says how fast a whole iteration is against PyTorch; this says which part to work on next.
It runs a config of bench/train_step.py (`cpu` by default: 4 layers, 4 heads, 128 channels, block 64, batch 12)
as gpt/training.py does, with data-parallel worker processes, and prints the mean milliseconds of each phase
after a warm-up.

    python bench/step_phases.py                 # one worker per core
    python bench/step_phases.py --workers 1     # the model alone, BLAS on every core
    python bench/step_phases.py --config tiny
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "10")  # idle BLAS threads sleep instead of spinning (PERF_NOTES)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from gpt import GPT, CharDataset, GPTConfig  # noqa: E402
from optim import AdamW, clip_grad_norm_, weight_decay_groups  # noqa: E402
from tinygrad_ed.parallel import usable_cores  # noqa: E402
from tinygrad_ed.process_parallel import data_parallel  # noqa: E402

# name: (layers, heads, channels, block size, batch size), as in bench/train_step.py
CONFIGS = {"tiny": (2, 2, 64, 16, 4), "cpu": (4, 4, 128, 64, 12), "baby": (6, 6, 384, 256, 8)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=usable_cores())
    parser.add_argument("--iters", type=int, default=200, help="timed iterations, after 50 of warm-up")
    parser.add_argument("--config", choices=CONFIGS, default="cpu")
    args = parser.parse_args()

    layers, heads, channels, block_size, batch_size = CONFIGS[args.config]
    model = GPT(GPTConfig(block_size=block_size, vocab_size=65, n_layer=layers, n_head=heads, n_embd=channels,
                          dropout=0.0, bias=False))
    optimizer = AdamW(weight_decay_groups(model.named_parameters(), 0.1), lr=1e-3, betas=(0.9, 0.99))
    runner = data_parallel(model, args.workers)
    dataset, generator = CharDataset(), np.random.default_rng(0)
    seconds = dict(forward=0.0, backward=0.0, clip=0.0, adamw=0.0, zero_grad=0.0)
    for iteration in range(50 + args.iters):
        if iteration == 50:
            seconds = dict.fromkeys(seconds, 0.0)
        X, Y = dataset.get_batch("train", batch_size, block_size, generator)
        marks = [time.perf_counter()]
        _, loss = runner(X, Y)
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        clip_grad_norm_(model.parameters(), 1.0)
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        optimizer.zero_grad()
        marks.append(time.perf_counter())
        for phase, start, end in zip(seconds, marks, marks[1:]):
            seconds[phase] += end - start
    milliseconds = {phase: total / args.iters * 1000 for phase, total in seconds.items()}
    print(f"{args.config}, workers {args.workers}: {sum(milliseconds.values()):.2f} ms/iter = "
          + ", ".join(f"{phase} {value:.2f}" for phase, value in milliseconds.items()))


if __name__ == "__main__":
    main()
