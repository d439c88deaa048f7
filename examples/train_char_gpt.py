"""Train a character GPT on tiny Shakespeare, the chapter's whole training loop (steps 2.1-2.7) end to end.

    python examples/train_char_gpt.py                     # cuda if available, else the CPU preset (~2000 iters)
    python examples/train_char_gpt.py --device cpu --max-iters 500 --eval-interval 100
    python examples/train_char_gpt.py --resume --max-iters 3000   # continue out-shakespeare-char/ckpt.npz
    python examples/train_char_gpt.py --explain --n-layer 2 --batch-size 4 --block-size 8 [--lang zh]

The preset follows the device: nanoGPT's config/train_shakespeare_char.py on cuda, its README's CPU overrides on
the CPU. Every TrainConfig field is a flag, spelled with dashes or underscores (--max-iters or --max_iters);
booleans are --flag / --no-flag. With --resume the run continues with the settings saved in the checkpoint, and
only the flags you pass change them. At the end it prints the losses, a text plot of the loss curve, and a sample;
with matplotlib it saves out_dir/loss.png and out_dir/health.png (part 5's checks against iteration), and with
--tensorboard DIR it writes TensorBoard event files there (tensorboard --logdir DIR shows them).
With --explain it runs only iteration 0 (with --resume: the checkpoint's next iteration) and prints it as the
chapter's part 3, steps 1-5, with the real numbers (gpt/explain.py); nothing is saved.
"""
import argparse
import math
import os
import signal
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's packages, installed or not

from gpt.checkpoint import CheckpointError  # noqa: E402
from gpt.config import TrainConfig, add_flags, make_config  # noqa: E402
from gpt.data import CharDataset  # noqa: E402
from gpt.explain import DEFAULT_PARAM, LABELS, explain_iteration  # noqa: E402
from gpt.plot import save_png, text_plot  # noqa: E402
from gpt.tensorboard_log import TensorBoardError  # noqa: E402
from gpt.training import NothingToTrain, TrainingDiverged, TrainingInterrupted, train  # noqa: E402
from tinygrad_ed import Tensor  # noqa: E402
from tinygrad_ed.device import require_cuda  # noqa: E402
from tinygrad_ed.distributed import RankFailed, launch_rank  # noqa: E402


# how a setting given as None or 0 is decided, for the printed config
_FOLLOWS = {"lr_decay_iters": "follows max_iters", "workers": "one per usable CPU core, or mpiexec's -n",
            "backend": "nccl on cuda, mpi under mpiexec, else local"}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows the module docstring as written, and each flag's default."""


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_flags(parser)  # every TrainConfig field, with its reason as the help (gpt/config.py)
    parser.add_argument("--resume", action="store_true", help="continue from out_dir/ckpt.npz (init_from=resume)")
    parser.add_argument("--sample-tokens", "--sample_tokens", type=int, default=300,
                        help="characters to generate after training")
    parser.add_argument("--start", default="\n", help="the text the final sample continues (default: %(default)r)")
    parser.add_argument("--explain", action="store_true",
                        help="run one iteration and print it as the chapter's steps 1-5 with the real numbers")
    parser.add_argument("--explain-param", "--explain_param", default=DEFAULT_PARAM, metavar="NAME[INDEX]",
                        help="with --explain: the weight entry to follow, "
                             "e.g. transformer.h.0.attn.c_attn.weight[3,5]")
    parser.add_argument("--lang", choices=sorted(LABELS), default="en", help="with --explain: the language")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sample_tokens < 0:
        parser.error(f"--sample-tokens must be >= 0, got {args.sample_tokens}")
    if args.resume and getattr(args, "init_from", "resume") != "resume":
        parser.error(f"--resume and --init-from {args.init_from} contradict each other: give one of them")
    overrides = {item.name: getattr(args, item.name) for item in fields(TrainConfig) if hasattr(args, item.name)}
    if args.resume:
        overrides["init_from"] = "resume"
    try:
        config = make_config(overrides)
    except ValueError as error:  # a setting out of range, e.g. --dtype float16 on the CPU
        parser.error(str(error))
    except CheckpointError as error:
        sys.exit(f"error: {error}")
    if config.device == "cuda":
        try:
            require_cuda()
        except RuntimeError as error:  # why: no cupy, no GPU, no NVRTC or no cuBLAS, with the fix
            parser.error(str(error))

    dataset = CharDataset()
    try:  # the model's own checks (n_embd divisible by n_head, ...) and memory, before any time is spent
        config.model_config(dataset.tokenizer.vocab_size)
        config.check_memory(dataset.tokenizer.vocab_size)
    except ValueError as error:
        parser.error(str(error))
    if args.explain:  # one iteration, printed step by step; no training run, no checkpoint
        try:
            explain_iteration(config, args.explain_param, args.lang, dataset)
        except ValueError as error:  # an unknown --explain-param name, an index outside the shape, float16
            parser.error(f"--explain: {error}")
        return

    # the sample's start text is checked now, not after the whole run
    try:
        start = dataset.tokenizer.encode(args.start)
    except ValueError as error:
        parser.error(f"--start: {error}")
    if args.sample_tokens and len(start) == 0:
        parser.error("--start needs at least one character for the model to continue")

    master_process = launch_rank() == 0  # under mpiexec every rank runs this program: rank 0 alone prints
    if master_process:
        print("config:")
        used = config.resolved()  # the settings that follow others, as this run uses them
        for field in fields(config):
            given, value = getattr(config, field.name), getattr(used, field.name)
            print(f"  {field.name} = {value!r}" + ("" if given == value else f"   ({given!r}: {_FOLLOWS[field.name]})"))
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM ends the run as Ctrl-C does (see the end of this file)
    try:
        result = train(config, dataset, progress=True)
    except (CheckpointError, NothingToTrain, TrainingDiverged, RankFailed, TensorBoardError) as error:
        sys.exit(f"error: {error}")
    if result is None:  # a rank other than 0 under mpiexec: rank 0 reports the run
        return

    # the losses, the time, and the loss curve (chapter part 4)
    if result.evals:
        iteration, train_loss, val_loss = result.evals[-1]
        print(f"final (iteration {iteration}): train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
              f"best val loss {result.best_val_loss:.4f}")
    print(f"time: {result.elapsed_s:.2f} s in all, " + (f"{result.ms_per_iter:.1f} ms per training iteration"
                                                        if math.isfinite(result.ms_per_iter) else
                                                        "no training iteration ran"))
    series = {"train (one batch)": ([i for i, _ in result.logs], [loss for _, loss in result.logs]),
              "train": ([i for i, _, _ in result.evals], [loss for _, loss, _ in result.evals]),
              "val": ([i for i, _, _ in result.evals], [loss for _, _, loss in result.evals])}
    print(text_plot(series, title="loss against iteration"))
    png = os.path.join(config.out_dir, "loss.png")
    if save_png(series, png):
        print(f"loss plot saved to {png}")

    # a sample from the model as training left it
    if args.sample_tokens:
        model, tokenizer = result.model.eval(), result.tokenizer
        idx = Tensor(start[None, :], device=config.device)  # (1, T)
        out = model.generate(idx, args.sample_tokens, temperature=0.8, top_k=200,
                             generator=np.random.default_rng(config.seed))
        print(f"sample ({args.sample_tokens} characters after {args.start!r}):")
        print(tokenizer.decode(out.numpy()[0]))
    if result.save_error:  # the run trained to the end, but its best model is not on disk
        sys.exit(f"error: the last checkpoint save failed ({result.save_error}); the model of this run is not saved")


_signal = signal.SIGINT  # what ended the run: Ctrl-C, or SIGTERM through _interrupt


def _interrupt(signum, frame):
    """SIGTERM (a scheduler, `kill`) ends a run as Ctrl-C does: train() turns either into TrainingInterrupted."""
    global _signal
    _signal = signum
    raise KeyboardInterrupt


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as interrupted:  # one line instead of a traceback; the exit code says which signal
        message = str(interrupted) or "interrupted"
        if isinstance(interrupted, TrainingInterrupted) and os.path.isfile(interrupted.checkpoint_path):
            message += (f"; resume with: python examples/train_char_gpt.py --resume --out-dir "
                        f"{os.path.dirname(interrupted.checkpoint_path)}")
        print(f"\n{message}", file=sys.stderr)
        sys.exit(128 + _signal)
