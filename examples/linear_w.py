"""The chapter's part 2 (第二部分：数学原理): learn the w of y_pred = w·x from data made by y = 2x.

Every gradient below comes from the engine's autodiff, not from the hand-derived formula: w is a Tensor with
requires_grad, each iteration runs the chapter's four steps

  1. forward    y_pred = w × x
  2. loss       loss = (y_pred − y_true)²
  3. gradient   loss.backward() fills w.grad = ∂loss/∂w (the chapter derives it by hand: 2(w×x − y)×x)
  4. update     w ← w − learning_rate × w.grad

on one sample (x, y_true) at a time, cycling through x = 1..5 (per-sample SGD, as the chapter does).

Why the learning rate decides everything here: with y = 2x the update is
  w_new − 2 = (w − 2) − lr·2x²·(w − 2) = (1 − lr·2x²)·(w − 2)
so each step multiplies the error (w − 2) by (1 − lr·2x²). The error shrinks iff |1 − lr·2x²| < 1, i.e.
0 < lr·2x² < 2; it shrinks without overshooting past 2 iff lr·2x² < 1.

Run:  python examples/linear_w.py                      the chapter's numbers, then a run that reaches w = 2.00
      python examples/linear_w.py --show-divergence    the chapter's lr = 0.1 over all five samples, many passes
      python examples/linear_w.py --graph w.svg        also draw iteration 1's autograd graph (.dot, or .svg/.png
                                                       with Graphviz), with its numbers: y_pred 0.5, loss 2.25,
                                                       ∂loss/∂w = −3.0
      python examples/linear_w.py --plot w.png         also save the converging run's w against iteration as a PNG
                                                       (needs matplotlib: pip install -e '.[plot]')
"""
import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's packages, installed or not

from gpt.plot import PLOT_HINT, plot_available, save_png, text_plot  # noqa: E402
from tinygrad_ed import Tensor  # noqa: E402
from tinygrad_ed.graph import output_format, render, trace  # noqa: E402

X_TRAIN = [1.0, 2.0, 3.0, 4.0, 5.0]
Y_TRAIN = [2.0, 4.0, 6.0, 8.0, 10.0]  # the true rule y = 2x, which the model does not know
TARGET_W = 2.0
INITIAL_W = 0.5                       # the chapter's "random" starting guess
CHAPTER_LR = 0.1                      # the chapter's learning rate
CONVERGING_LR = 0.01                  # lr·2x² ≤ 0.5 for every x ≤ 5: each step closes part of the gap, none overshoots
TOLERANCE = 0.005                     # "w = 2.00" to two decimals


def error_factor(lr, x):
    """What one per-sample step at input x multiplies (w − 2) by: 1 − lr·2x²."""
    return 1.0 - lr * 2.0 * x * x


def new_w(w0=INITIAL_W):
    """The one parameter, float64 for the chapter's exact decimals."""
    return Tensor(np.array(w0, dtype=np.float64), requires_grad=True)


def forward_and_loss(w, x, y_true):
    """Steps 1 and 2 of an iteration: the prediction and its squared error (x and y_true numbers or tensors)."""
    y_pred = w * x                      # 1. forward: the prediction
    loss = (y_pred - y_true) ** 2       # 2. loss: squared error
    return y_pred, loss


def run_sgd(lr, samples, w0=INITIAL_W, tolerance=None):
    """Per-sample SGD on loss = (w·x − y)², one row per iteration.

    samples    an iterable of (x, y_true); it may be endless when `tolerance` is given
    tolerance  stop after the first iteration that leaves |w − 2| < tolerance
    Each row is a dict: iteration, x, y_true, y_pred, loss, gradient, w (the new w after the update).
    """
    w = new_w(w0)
    rows = []
    for iteration, (x, y_true) in enumerate(samples, start=1):
        y_pred, loss = forward_and_loss(w, x, y_true)   # 1. forward, 2. loss
        loss.backward()                     # 3. gradient: the chain rule fills w.grad = ∂loss/∂w
        gradient = w.grad.item()
        w.data -= lr * w.grad               # 4. update: w ← w − lr × gradient
        w.grad = None                       # zero_grad: backward() accumulates (+=), so clear before the next one
        rows.append(dict(iteration=iteration, x=x, y_true=y_true, y_pred=y_pred.item(), loss=loss.item(),
                         gradient=gradient, w=w.item()))
        if tolerance is not None and abs(w.item() - TARGET_W) < tolerance:
            break
    return rows


def chapter_rows(lr=CHAPTER_LR):
    """The chapter's setting: w = 0.5, lr = 0.1, one pass over x = 1, 2, 3, 4, 5."""
    return run_sgd(lr, zip(X_TRAIN, Y_TRAIN))


def converging_rows(lr=CONVERGING_LR, tolerance=TOLERANCE, max_iterations=10_000):
    """Cycle over the data at a learning rate small enough to converge, until |w − 2| < tolerance."""
    if not all(0 < lr * 2 * x * x < 2 for x in X_TRAIN):
        raise ValueError(f"lr = {lr} does not converge: it needs 0 < lr·2x² < 2 for every x, i.e. "
                         f"0 < lr < {1 / max(X_TRAIN) ** 2}")
    samples = itertools.islice(itertools.cycle(zip(X_TRAIN, Y_TRAIN)), max_iterations)
    return run_sgd(lr, samples, tolerance=tolerance)


def divergence_rows(lr=CHAPTER_LR, passes=20):
    """The chapter's lr = 0.1 cycling over all five samples for `passes` passes: the error grows."""
    return run_sgd(lr, list(zip(X_TRAIN, Y_TRAIN)) * passes)


# ----------------------------------------------------------------------------------------------------------
# printing: the table, and w against iteration as a text plot like the chapter's "w的变化过程"

def print_table(rows):
    print(f"{'iter':>5} | {'x':>3} | {'y_true':>6} | {'y_pred':>9} | {'loss':>10} | {'gradient':>10} | {'new w':>9}")
    print("-" * 72)
    for row in rows:
        print(f"{row['iteration']:>5} | {row['x']:>3g} | {row['y_true']:>6g} | {row['y_pred']:>9.4f} | "
              f"{row['loss']:>10.4f} | {row['gradient']:>+10.4f} | {row['w']:>9.4f}")


def w_series(rows):
    """w against iteration (the starting guess is iteration 0), and the target w = 2, as plot series."""
    iterations = [0] + [row["iteration"] for row in rows]
    ws = [INITIAL_W] + [row["w"] for row in rows]
    return {"target w = 2": (iterations, [TARGET_W] * len(ws)), "w": (iterations, ws)}


def plot_w(rows, width=60, height=12):
    """The chapter's plot "w的变化过程" in characters, the target w = 2 as a dotted line."""
    print(text_plot(w_series(rows), width=min(width, 2 * len(rows) + 2), height=height,
                    title="w的变化过程: w against iteration"))


# ----------------------------------------------------------------------------------------------------------
# pictures: iteration 1's autograd graph (tinygrad_ed/graph.py), and w against iteration as a PNG (gpt/plot.py)

def iteration_1_graph():
    """Iteration 1 of the chapter's run as the graph backward() walks, as DOT text with its real numbers:
    x = 1, y_true = 2, w = 0.5 → y_pred 0.5 → loss 2.25, and after backward ∂loss/∂w = −3.0."""
    w, x, y_true = new_w(), Tensor(np.float64(X_TRAIN[0])), Tensor(np.float64(Y_TRAIN[0]))
    y_pred, loss = forward_and_loss(w, x, y_true)
    graph = trace(loss, names=dict(w=w, x=x, y_true=y_true, y_pred=y_pred, loss=loss))  # before backward frees it
    loss.backward()
    return graph.to_dot(title="iteration 1 of the chapter's run: loss = (w·x − y_true)²; grad = ∂loss/∂node")


# ----------------------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lr", type=float, default=CONVERGING_LR,
                        help="learning rate of the converging run (needs lr < 1/25 = 0.04)")
    parser.add_argument("--show-divergence", action="store_true",
                        help="also run the chapter's lr = 0.1 over all five samples, many passes")
    parser.add_argument("--passes", type=int, default=20, help="passes over the data for --show-divergence")
    parser.add_argument("--graph", metavar="PATH",
                        help="draw iteration 1's autograd graph to PATH: .dot writes the DOT text, .svg or .png "
                             "run Graphviz's dot (apt install graphviz)")
    parser.add_argument("--plot", metavar="PATH",
                        help="save the converging run's w against iteration as a PNG at PATH (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.graph is not None:
        try:
            output_format(args.graph)
        except (ValueError, RuntimeError) as error:
            parser.error(f"--graph: {error}")
    if args.plot is not None:
        if not args.plot.lower().endswith(".png"):
            parser.error(f"--plot {args.plot}: the picture is a PNG, give a path ending in .png")
        if not plot_available():
            parser.error(f"--plot needs matplotlib, which is not installed: {PLOT_HINT}")

    print("第二部分：数学原理 — model y_pred = w·x, data x = 1..5, y = 2x, target w = 2")
    print(f"\nRun 1: the chapter's setting: w = {INITIAL_W}, lr = {CHAPTER_LR}, one sample per iteration")
    rows = chapter_rows()
    print_table(rows)
    factors = ", ".join(f"x={x:g}: {error_factor(CHAPTER_LR, x):+.1f}" for x in X_TRAIN)
    print(f"""
NOTE: iterations 1 and 2 are the chapter's numbers exactly (w: 0.5 → 0.8 → 1.76). The chapter's continuation
"1.76 → 1.88 → 1.94 → 1.97 → 1.99 → 2.00" is illustrative, not what this update computes. Each step multiplies
the error (w − 2) by (1 − lr·2x²): {factors}.
At x = 3 the factor is negative (w overshoots past 2 to {rows[2]['w']:.4f}); at x = 4 and x = 5 its size exceeds 1, so
the error grows: after one pass w = {rows[-1]['w']:.4f}, further from 2 than the starting guess {INITIAL_W}.
lr = {CHAPTER_LR} is too large for this data: a step shrinks the error only when lr·2x² < 2, and x = 5 needs lr < 0.04.""")

    print(f"\nRun 2: a learning rate that converges: w = {INITIAL_W}, lr = {args.lr}, cycling over x = 1..5 "
          f"until |w − 2| < {TOLERANCE}")
    try:
        rows = converging_rows(args.lr)
    except ValueError as error:
        parser.error(str(error))
    print_table(rows)
    largest = args.lr * 2 * max(X_TRAIN) ** 2
    print(f"\nWhy it converges: lr·2x² is at most {largest:g} (at x = 5). That is below 2, so every step shrinks "
          f"the error; " + ("below 1 too, so no step overshoots past 2." if largest < 1 else
                            "not below 1, so the steps at x = 5 land on or past 2."))
    if abs(rows[-1]["w"] - TARGET_W) < TOLERANCE:
        print(f"w = {rows[-1]['w']:.4f} ≈ 2.00 after {len(rows)} iterations.\n")
    else:
        print(f"w = {rows[-1]['w']:.4f} after {len(rows)} iterations: converging, but too slowly to reach 2.00.\n")
    plot_w(rows)
    if args.plot is not None:
        save_png(w_series(rows), args.plot, title="w")
        print(f"w against iteration saved to {args.plot}")
    if args.graph is not None:
        render(iteration_1_graph(), args.graph)
        print(f"iteration 1's autograd graph drawn to {args.graph}")

    if args.show_divergence:
        passes = args.passes
        print(f"\nRun 3 (--show-divergence): the chapter's lr = {CHAPTER_LR}, cycling over all five samples, "
              f"{passes} passes")
        rows = divergence_rows(passes=passes)
        print_table(rows)
        per_pass = float(np.prod([error_factor(CHAPTER_LR, x) for x in X_TRAIN]))
        beyond = next((row["iteration"] for row in rows if abs(row["w"]) > 10), None)
        print(f"\nOne pass multiplies the error (w − 2) by the product of the five factors, {per_pass:+.4f}: its size "
              f"grows {abs(per_pass):.4f}× per pass and its sign flips. "
              + (f"|w| first exceeds 10 at iteration {beyond}." if beyond else "") + "\n")
        plot_w(rows)


if __name__ == "__main__":
    main()
