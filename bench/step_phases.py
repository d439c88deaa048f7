"""Where one training iteration of our GPT spends its time: forward, backward, clip, update (AdamW and zero_grad).

bench/train_step.py says how fast a whole iteration is against PyTorch; this says which part to work on next.
It times the harness's step (gpt/step.py's train_step at a size of bench/harness.py, `cpu` by default: 4 layers,
4 heads, 128 channels, block 64, batch 12, one rank per core) through a StepObserver that marks the time at each
stage, and prints the mean milliseconds of each phase after a warm-up, and of rank 0's all-reduces within them
(the loss of each micro-step, and the gradient bucket; waiting for the other ranks included).

    python bench/step_phases.py                 # one worker per core
    python bench/step_phases.py --workers 1     # the model alone, BLAS on every core
    python bench/step_phases.py --config tiny
"""
import argparse
import time

import harness

harness.quiet_blas_threads()

from gpt.step import StepObserver  # noqa: E402
from tinygrad_ed.distributed.local import usable_cores  # noqa: E402


class Marks(StepObserver):
    """perf_counter() at each stage of a step: after the forward, after the backward, before the update."""

    def __init__(self):
        self.times = []

    def after_forward(self, index):
        self.times.append(time.perf_counter())

    def after_backward(self, index, X, Y, logits, loss):
        self.times.append(time.perf_counter())

    def before_update(self, model, grad_norm):
        self.times.append(time.perf_counter())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=usable_cores())
    parser.add_argument("--iters", type=int, default=200, help="timed iterations, after 50 of warm-up")
    parser.add_argument("--config", choices=harness.SIZES, default="cpu")
    args = parser.parse_args()

    step, batches = harness.training_step(args.config, args.workers)
    seconds = dict.fromkeys(harness.PHASES, 0.0)
    reducing, all_reduce = [0.0], step.group.all_reduce

    def timed_all_reduce(array):
        began = time.perf_counter()
        all_reduce(array)
        reducing[0] += time.perf_counter() - began
    step.group.all_reduce = timed_all_reduce
    for iteration in range(50 + args.iters):
        marks = Marks()
        started = time.perf_counter()
        step(*batches[iteration % len(batches)], observer=marks)
        times = [started] + marks.times + [time.perf_counter()]
        if iteration == 49:
            reducing[0] = 0.0
        if iteration >= 50:
            for phase, start, end in zip(harness.PHASES, times, times[1:]):
                seconds[phase] += end - start
    milliseconds = {phase: total / args.iters * 1000 for phase, total in seconds.items()}
    total = sum(milliseconds.values())
    reduce_ms = reducing[0] / args.iters * 1000
    print(f"{args.config}, workers {args.workers}: {total:.2f} ms/iter = "
          + ", ".join(f"{phase} {value:.2f}" for phase, value in milliseconds.items())
          + f"; all-reduce {reduce_ms:.2f} ms ({reduce_ms / total:.1%})")
    step.close()


if __name__ == "__main__":
    main()
