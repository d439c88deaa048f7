"""Where one training iteration of our GPT spends its time: forward, backward, clip, AdamW step, zero_grad.

bench/train_step.py says how fast a whole iteration is against PyTorch; this says which part to work on next.
It runs a size of bench/our_step.py (`cpu` by default: 4 layers, 4 heads, 128 channels, block 64, batch 12) as
gpt/training.py does, with data-parallel worker processes, and prints the mean milliseconds of each phase after a
warm-up.

    python bench/step_phases.py                 # one worker per core
    python bench/step_phases.py --workers 1     # the model alone, BLAS on every core
    python bench/step_phases.py --config tiny
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "10")  # idle BLAS threads sleep instead of spinning (PERF_NOTES)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from our_step import PHASES, SIZES, training_step  # noqa: E402
from tinygrad_ed.parallel import usable_cores  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=usable_cores())
    parser.add_argument("--iters", type=int, default=200, help="timed iterations, after 50 of warm-up")
    parser.add_argument("--config", choices=SIZES, default="cpu")
    args = parser.parse_args()

    step, batches = training_step(args.config, args.workers)
    seconds = dict.fromkeys(PHASES, 0.0)
    for iteration in range(50 + args.iters):
        marks = []
        step(*batches[iteration % len(batches)], marks)
        if iteration >= 50:
            for phase, start, end in zip(PHASES, marks, marks[1:]):
                seconds[phase] += end - start
    milliseconds = {phase: total / args.iters * 1000 for phase, total in seconds.items()}
    print(f"{args.config}, workers {args.workers}: {sum(milliseconds.values()):.2f} ms/iter = "
          + ", ".join(f"{phase} {value:.2f}" for phase, value in milliseconds.items()))


if __name__ == "__main__":
    main()
