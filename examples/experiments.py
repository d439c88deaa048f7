"""The chapter's "try it" list (实践建议 and 常见问题 FAQ), one subcommand each, on a small GPT and the real text.

  lr         实践建议 4 "故意制造问题：设置很大的lr，观察梯度爆炸" and FAQ Q4: a too-large learning rate, with and
             without gradient clipping (步骤4): the loss explodes to NaN, or stays bounded
  optim      实践建议 3 "尝试不同的learning_rate和优化器" and FAQ Q3: SGD against AdamW (步骤5), same start, same batches
  accum      FAQ Q2 and 步骤2: gradient accumulation over 4 micro-batches gives the gradient of one 4x batch
  init-loss  FAQ Q1 "为什么loss一开始很高？": the loss of a fresh model against ln 65 ≈ 4.17, over several seeds
  all        all four, in this order

Run:  python examples/experiments.py                    all four
      python examples/experiments.py lr [--iters 30] [--seed 1337] [--out-dir out-experiments]
Each experiment takes well under a minute on two CPU cores. Its curves are drawn with gpt.plot.text_plot, and with
matplotlib (pip install -e '.[plot]') also saved as one PNG per experiment: lr.png, optim.png, accum.png and
init-loss.png in --out-dir.
"""
import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's packages, installed or not

from gpt import GPT, CharDataset, GPTConfig  # noqa: E402
from gpt.data import Batches  # noqa: E402
from gpt.plot import PLOT_HINT, plot_available, save_png, text_plot  # noqa: E402
from gpt.step import configure_optimizers, train_step  # noqa: E402
from optim import SGD, global_grad_norm  # noqa: E402
from tinygrad_ed import Tensor, no_grad  # noqa: E402

# A small GPT (105k parameters) that trains at many iterations a second on a CPU: the behaviour each experiment
# shows (explosion, SGD vs AdamW, ...) is the same at nanoGPT's size, only slower to watch.
N_LAYER, N_HEAD, N_EMBD, BLOCK_SIZE = 2, 2, 64, 32
BATCH_SIZE = 8
SEED = 1337

# experiment lr: on plain SGD the step is lr·g, so a large lr with a large g is a huge step, and clipping the
# norm of g to 1.0 caps the step at lr. lr 2.0 explodes without clipping on every seed tried (0-5, 42, 1337: NaN
# by iteration 10-18, or a loss above 1e20 by iteration 30) and trains with clip 1.0 (loss 3.1-3.7 at iteration 30).
# With --optimizer adamw clipping changes little: AdamW's step is about lr per entry whatever the gradient's size,
# and clipping only rescales the gradient.
EXPLODING_LR = {"sgd": 2.0, "adamw": 0.1}
GRAD_CLIP = 1.0


def small_config(vocab_size, dtype="float32"):
    return GPTConfig(vocab_size=vocab_size, n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD, block_size=BLOCK_SIZE,
                     dtype=dtype)


def train_curves(model, optimizer, dataset, iters, grad_clip=0.0, seed=SEED):
    """`iters` iterations of the training step (gpt/step.py) at the optimizer's own learning rate, without a schedule
    and with one micro-batch each; returns the losses and the gradient norms (before clipping).

    The batches come from a generator seeded with `seed`, so two runs with one seed see the same batches. The run
    stops at a loss that is not finite, as part 5's health check does ("Loss is NaN! Training crashed!").
    """
    batches = Batches(dataset, BATCH_SIZE, model.config.block_size, seed)   # (B, T) each
    batch, lr = batches.next(), optimizer.param_groups[0]["lr"]
    losses, norms = [], []
    for _ in range(iters):
        step = train_step(model, optimizer, batch, batches.next, lr, grad_clip=grad_clip, measure_norm=True)
        batch = step.next_batch
        losses.append(step.loss.item())
        norms.append(step.grad_norm.item())
        if not math.isfinite(losses[-1]):
            break
    return losses, norms


def make_optimizer(name, model, lr):
    if name == "sgd":
        return SGD(model.parameters(), lr=lr)
    # nanoGPT's configure_optimizers, with betas (0.9, 0.95) as the chapter's example
    return configure_optimizers(model, weight_decay=0.1, learning_rate=lr, betas=(0.9, 0.95))


def curve(losses):
    """(iterations, losses) for text_plot, iterations counted from 1."""
    return list(range(1, len(losses) + 1)), losses


def save_curves(out_dir, experiment, series, title, xlabel="iteration", log_y=False):
    """The experiment's curves as out_dir/<experiment>.png, where matplotlib is installed and out_dir is given."""
    if out_dir is None:
        return
    path = os.path.join(out_dir, f"{experiment}.png")
    if save_png(series, path, title=title, xlabel=xlabel, log_y=log_y):
        print(f"curves saved to {path}")


def describe(losses):
    """How a run ended: its last loss, or the iteration where the loss stopped being finite."""
    if not math.isfinite(losses[-1]):
        return f"loss {losses[-1]} at iteration {len(losses)}: training crashed"
    return f"loss {losses[-1]:.4g} at iteration {len(losses)}"


# ----------------------------------------------------------------------------------------------------------
# lr: a too-large learning rate, with and without clipping

def experiment_lr(dataset, iters=30, seed=SEED, optimizer="sgd", out_dir=None):
    lr = EXPLODING_LR[optimizer]
    print(f"== lr: {'AdamW' if optimizer == 'adamw' else 'SGD'} at lr = {lr}, without clipping and with grad_clip = {GRAD_CLIP} "
          f"(实践建议 4, 步骤4) ==")
    runs = {}
    for name, grad_clip in (("no clip", 0.0), (f"clip {GRAD_CLIP}", GRAD_CLIP)):
        model = GPT(small_config(dataset.tokenizer.vocab_size), seed=seed)       # the same initial weights
        # NOTE: the run without clipping overflows float32 on purpose; numpy's overflow warnings would bury the table
        with np.errstate(over="ignore", invalid="ignore"):
            runs[name] = train_curves(model, make_optimizer(optimizer, model, lr), dataset, iters, grad_clip, seed)

    (plain_losses, plain_norms), (clip_losses, clip_norms) = runs.values()
    print(f"{'iter':>5} | {'no clip: loss':>14} {'grad norm':>10} | {f'clip {GRAD_CLIP}: loss':>14} {'grad norm':>10}")
    for i in range(len(clip_losses)):
        plain = f"{plain_losses[i]:>14.4g} {plain_norms[i]:>10.4g}" if i < len(plain_losses) else f"{'(stopped)':>25}"
        print(f"{i + 1:>5} | {plain} | {clip_losses[i]:>14.4g} {clip_norms[i]:>10.4g}")
    print("(grad norm: the global norm before clipping; healthy training keeps it in about 0.1-10, FAQ Q4)\n")

    # the exploding loss spans many powers of ten, so the plot is of log10(loss)
    print(text_plot({name: curve([math.log10(loss) if loss > 0 else math.nan for loss in losses])
                     for name, (losses, _) in runs.items()}, title="log10(loss) against iteration"))
    save_curves(out_dir, "lr", {name: curve(losses) for name, (losses, _) in runs.items()}, "loss (log scale)",
                log_y=True)
    print(f"\nno clip:  {describe(plain_losses)}")
    print(f"clip {GRAD_CLIP}: {describe(clip_losses)}\n")
    return runs


# ----------------------------------------------------------------------------------------------------------
# optim: SGD against AdamW

def experiment_optim(dataset, iters=100, seed=SEED, out_dir=None):
    print(f"== optim: SGD against AdamW, same initial weights, same batches, grad_clip = {GRAD_CLIP} "
          f"(实践建议 3, FAQ Q3) ==")
    settings = {"SGD lr 1e-3": ("sgd", 1e-3),       # AdamW's learning rate: SGD barely moves
                "SGD lr 0.1": ("sgd", 0.1),         # a learning rate tuned by hand for SGD on this model
                "AdamW lr 1e-3": ("adamw", 1e-3)}   # nanoGPT's learning rate for Shakespeare
    runs = {}
    for name, (optimizer, lr) in settings.items():
        started = time.time()
        model = GPT(small_config(dataset.tokenizer.vocab_size), seed=seed)
        runs[name], _ = train_curves(model, make_optimizer(optimizer, model, lr), dataset, iters, GRAD_CLIP, seed)
        print(f"{name:14s}: loss {runs[name][0]:.4f} → {runs[name][-1]:.4f}, mean of the last 10 "
              f"{np.mean(runs[name][-10:]):.4f}   ({time.time() - started:.1f}s)")
    print()
    print(text_plot({name: curve(losses) for name, losses in runs.items()}, title="loss against iteration"))
    save_curves(out_dir, "optim", {name: curve(losses) for name, losses in runs.items()}, "loss")
    print("\nAdamW divides each entry's step by that entry's recent gradient size, so every parameter moves at "
          "about lr;\nSGD's step is lr × gradient, tiny where gradients are small: it needs a learning rate "
          "tuned for the model.\n")
    return runs


# ----------------------------------------------------------------------------------------------------------
# accum: gradient accumulation against one big batch

def gradients(model):
    return {name: param.grad.copy() for name, param in model.named_parameters()}


def accumulate(model, X, Y, micro_steps, divide):
    """Backward over `micro_steps` equal slices of the batch, gradients adding up; returns the norm after each.

    divide=True is nanoGPT's `loss = loss / gradient_accumulation_steps`; False leaves the loss as it is.
    """
    model.zero_grad()
    micro_batch = len(X) // micro_steps
    label = f"loss / {micro_steps}" if divide else "loss"
    norms = []
    for k in range(micro_steps):
        rows = slice(k * micro_batch, (k + 1) * micro_batch)
        _, loss = model(Tensor(X.data[rows]), Tensor(Y.data[rows]))               # a (4, T) micro-batch
        if divide:
            loss = loss / micro_steps            # scale the loss to account for gradient accumulation
        loss.backward()                          # gradients add up (+=) in every param.grad
        norms.append(global_grad_norm(model.parameters()).item())
        print(f"  micro_step {k + 1}: {label:>8} = {loss.item():.6f}, accumulated gradient norm {norms[-1]:.6f}")
    print()
    return norms


def experiment_accum(dataset, seed=SEED, micro_steps=4, micro_batch=4, out_dir=None):
    big_batch = micro_steps * micro_batch
    print(f"== accum: {micro_steps} micro-batches of {micro_batch} against one batch of {big_batch} "
          f"(步骤2, FAQ Q2), float64 ==")
    # float64 so that the two ways of summing agree to ~1e-16, far below anything that matters
    model = GPT(small_config(dataset.tokenizer.vocab_size, dtype="float64"), seed=seed)
    X, Y = dataset.get_batch("train", big_batch, BLOCK_SIZE, np.random.default_rng(seed))  # (16, T) each

    # one big batch: the mean loss over all 16 sequences
    _, loss = model(X, Y)
    loss.backward()
    big = gradients(model)
    big_norm = global_grad_norm(model.parameters()).item()
    print(f"one batch of {big_batch}: loss {loss.item():.6f}, gradient norm {big_norm:.6f}\n")

    # the same 16 sequences as micro-batches: with nanoGPT's division, then without it
    divided_norms = accumulate(model, X, Y, micro_steps, divide=True)
    accumulated = gradients(model)
    undivided_norms = accumulate(model, X, Y, micro_steps, divide=False)

    difference = max(float(np.abs(big[name] - accumulated[name]).max()) for name in big)
    relative = math.sqrt(sum(float(((big[name] - accumulated[name]) ** 2).sum()) for name in big)) / big_norm
    print(f"accumulated (loss / {micro_steps}) against one big batch: max abs difference {difference:.3e}, "
          f"relative error {relative:.3e}")
    print(f"without dividing, the accumulated norm is {undivided_norms[-1] / big_norm:.6f} times the big "
          f"batch's: {micro_steps}x too large\n")
    steps = list(range(1, micro_steps + 1))
    series = {f"loss / {micro_steps}": (steps, divided_norms), "loss, not divided": (steps, undivided_norms),
              "one big batch": ([1, micro_steps], [big_norm, big_norm])}
    print(text_plot(series, width=40, height=10, title="accumulated gradient norm against micro_step"))
    save_curves(out_dir, "accum", series, "accumulated gradient norm", xlabel="micro_step")
    print()
    return difference, relative


# ----------------------------------------------------------------------------------------------------------
# init-loss: the first loss against ln 65

def experiment_init_loss(dataset, seeds=5, seed=SEED, out_dir=None):
    vocab_size = dataset.tokenizer.vocab_size
    uniform = math.log(vocab_size)
    print(f"== init-loss: the loss of a freshly initialised model against ln {vocab_size} = {uniform:.4f} (FAQ Q1) ==")
    print("Weights start as N(0, 0.02²), so the logits are small and nearly equal: softmax is nearly uniform and")
    print(f"-log P(correct) ≈ -log(1/{vocab_size}). For small logits of spread σ the expected loss is "
          f"about ln {vocab_size} + σ²/2.\n")
    configs = {"small (2 layers, 64 wide)": (small_config(vocab_size), BATCH_SIZE),
               "chapter (6 layers, 384 wide)": (GPTConfig(vocab_size=vocab_size), 4)}   # the nanoGPT char model
    results = {}
    print(f"{'model':30s} {'seed':>5} {'loss':>8} {'loss - ln V':>12} {'σ (logits)':>11} {'ln V + σ²/2':>12}")
    for label, (config, batch_size) in configs.items():
        losses = []
        for model_seed in range(seed, seed + seeds):
            model = GPT(config, seed=model_seed)
            X, Y = dataset.get_batch("train", batch_size, config.block_size, np.random.default_rng(model_seed))
            with no_grad():
                logits, loss = model(X, Y)                                   # (B, T, V), scalar
            sigma = float(logits.numpy().std())
            losses.append(loss.item())
            print(f"{label:30s} {model_seed:>5} {loss.item():>8.4f} {loss.item() - uniform:>+12.4f} {sigma:>11.4f} "
                  f"{uniform + sigma ** 2 / 2:>12.4f}")
        results[label] = losses
    print()
    seed_axis = list(range(seed, seed + seeds))
    series = {f"ln {vocab_size}": (seed_axis, [uniform] * seeds)}
    series.update({label: (seed_axis, losses) for label, losses in results.items()})
    print(text_plot(series, width=40, height=10, title="initial loss against model seed"))
    save_curves(out_dir, "init-loss", series, "initial loss", xlabel="model seed")
    print()
    return results


# ----------------------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description="the chapter's 'try it' experiments")
    parser.add_argument("experiment", nargs="?", default="all", choices=["lr", "optim", "accum", "init-loss", "all"],
                        help="which experiment (default: all four, in this order)")
    parser.add_argument("--iters", type=int, default=None,
                        help="training iterations for lr (default 30) and optim (default 100)")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the initial weights and of the batches")
    parser.add_argument("--seeds", type=int, default=5, help="how many model seeds init-loss tries")
    parser.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd",
                        help="the optimizer of the lr experiment (clipping matters for sgd; see EXPLODING_LR)")
    parser.add_argument("--out-dir", "--out_dir", default="out-experiments",
                        help="where each experiment's curves are saved as <experiment>.png, with matplotlib "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    if args.iters is not None and args.iters < 1:
        parser.error(f"--iters must be at least 1, got {args.iters}")
    if not args.out_dir.strip():
        parser.error("--out-dir must be a folder's path, not empty")
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        parser.error(f"--out-dir {args.out_dir!r} is a file, not a folder: the curves could not be saved there")
    out_dir = args.out_dir
    if not plot_available():
        print(f"note: matplotlib is not installed, so the curves are not saved as PNGs ({PLOT_HINT})\n")
        out_dir = None

    dataset = CharDataset()   # data/tinyshakespeare.txt, 65 distinct characters
    chosen = ["lr", "optim", "accum", "init-loss"] if args.experiment == "all" else [args.experiment]
    for name in chosen:
        started = time.time()
        if name == "lr":
            experiment_lr(dataset, args.iters or 30, args.seed, args.optimizer, out_dir=out_dir)
        elif name == "optim":
            experiment_optim(dataset, args.iters or 100, args.seed, out_dir=out_dir)
        elif name == "accum":
            experiment_accum(dataset, args.seed, out_dir=out_dir)
        else:
            experiment_init_loss(dataset, args.seeds, args.seed, out_dir=out_dir)
        print(f"({name}: {time.time() - started:.1f}s)\n")


if __name__ == "__main__":
    main()
