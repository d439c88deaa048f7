"""The loss curve, or any curve, as a picture (chapter part 4's plot), with nothing but the standard library.

text_plot        series against the iteration, drawn with characters, for any terminal
save_png         the same plot as a PNG, only where matplotlib is installed (it is never required)
save_health_png  part 5's health checks of a run (gpt/progress.py's RunHealth) as one figure, health.png
plot_available   whether matplotlib is there to draw PNGs
"""
import importlib.util
import math
import os

from gpt.checkpoint import write_atomically

PLOT_HINT = "pip install -e '.[plot]'"
# part 5, 监控训练健康度 2: a healthy step moves each weight by about 0.1% to 1% of its size
HEALTHY_UPDATE_RATIO = (1e-3, 1e-2)

MARKERS = ".*o+x"  # one per series, in order: later series are drawn over earlier ones


def text_plot(series, width=60, height=15, title="loss"):
    """Plot `series` {name: (xs, ys)} on a shared grid of characters; returns the plot as a string.

    Points that are not finite (a diverged loss) are left out. The y axis is labelled at its top, middle and
    bottom, the x axis at both ends, and a legend names each series' marker.
    """
    if width < 10 or height < 3:
        raise ValueError(f"text_plot needs width >= 10 and height >= 3, got width={width}, height={height}")
    if len(series) > len(MARKERS):
        raise ValueError(f"text_plot draws at most {len(MARKERS)} series, got {len(series)}")
    points = {}
    for name, (xs, ys) in series.items():
        if len(xs) != len(ys):
            raise ValueError(f"series {name!r} has {len(xs)} x values and {len(ys)} y values")
        points[name] = [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    everything = [point for pairs in points.values() for point in pairs]
    if not everything:
        return f"{title}: nothing to plot yet"
    x_low, x_high = min(x for x, _ in everything), max(x for x, _ in everything)
    y_low, y_high = min(y for _, y in everything), max(y for _, y in everything)
    if y_high == y_low:  # a flat line still needs a y range: centre it
        y_low, y_high = y_low - 0.5, y_high + 0.5
    x_span = x_high - x_low or 1.0  # a single x value is drawn in the first column
    y_span = y_high - y_low

    grid = [[" "] * width for _ in range(height)]
    for marker, pairs in zip(MARKERS, points.values()):
        for x, y in pairs:
            column = round((x - x_low) / x_span * (width - 1))
            row = round((y_high - y) / y_span * (height - 1))  # row 0 is the top: the highest loss
            grid[row][column] = marker

    labels = {0: y_high, (height - 1) // 2: y_high - (height - 1) // 2 / (height - 1) * y_span, height - 1: y_low}
    label_width = max(len(f"{value:.3f}") for value in labels.values())
    lines = [title]
    for row, cells in enumerate(grid):
        label = f"{labels[row]:.3f}" if row in labels else ""
        lines.append(f"{label:>{label_width}} |" + "".join(cells))
    lines.append(" " * label_width + " +" + "-" * width)
    left, right = f"{x_low:g}", f"{x_high:g}"
    lines.append(" " * (label_width + 2) + left + right.rjust(width - len(left)))
    lines.append(" " * (label_width + 2) + "   ".join(f"{marker} {name}" for marker, name in zip(MARKERS, points)))
    return "\n".join(lines)


def plot_available():
    """Whether matplotlib is installed (asked without importing it: the import alone takes about a second)."""
    return importlib.util.find_spec("matplotlib") is not None


def save_png(series, path, title="loss", xlabel="iteration", log_y=False):
    """Save the plot of `series` {name: (xs, ys)} as a PNG at `path`; returns False where matplotlib is missing.

    log_y draws the y axis in powers of ten (an exploding loss); points that are not finite are left out."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")  # draw to a file: no window, works without a display
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4))
    for name, (xs, ys) in series.items():
        axes.plot(xs, _finite(ys), label=name, marker="o" if len(xs) < 30 else None)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(title)
    if log_y and any(y > 0 for _, ys in series.values() for y in _finite(ys)):
        axes.set_yscale("log")
    axes.legend()
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
    return True


def save_health_png(health, path):
    """Draw a run's health (a RunHealth, gpt/progress.py) into one PNG at `path`; returns False where matplotlib is
    missing. Four panels against the iteration, part 5's checks: the losses (each log line's batch and the
    evaluations), the learning rate, the gradient norm before and after clipping (with the threshold), and the
    update-to-parameter ratio with its healthy band shaded. A float16 step the loss scaler skipped is a red line
    across every panel. The file is replaced whole (a reader never sees half a picture)."""
    try:
        from matplotlib.figure import Figure  # no pyplot: nothing global changes, nothing to close
    except ImportError:
        return False
    figure = Figure(figsize=(7, 9), dpi=80)
    loss_axes, lr_axes, norm_axes, ratio_axes = figure.subplots(4, 1, sharex=True)

    loss_axes.plot(health.iters, _finite(health.losses), color="0.6", linewidth=1, label="train (one batch)")
    if health.evals:
        iters = [iteration for iteration, _, _ in health.evals]
        loss_axes.plot(iters, _finite([train for _, train, _ in health.evals]), "o-", label="train (estimate)")
        loss_axes.plot(iters, _finite([val for _, _, val in health.evals]), "s-", label="val (estimate)")
    loss_axes.set_ylabel("loss")
    loss_axes.set_title("training health (chapter part 5)")

    lr_axes.plot(health.iters, health.lrs, color="tab:purple")
    lr_axes.set_ylabel("learning rate")

    norm_axes.plot(health.iters, _finite(health.grad_norms), label="before clipping")
    norm_axes.plot(health.iters, _finite(health.clipped_norms), "--", label="after clipping")
    if health.grad_clip:
        norm_axes.axhline(health.grad_clip, color="0.4", linewidth=0.8, linestyle=":",
                          label=f"grad_clip {health.grad_clip:g}")
    norm_axes.set_ylabel("gradient norm")
    _log_scale_if_positive(norm_axes, health.grad_norms)

    low, high = HEALTHY_UPDATE_RATIO
    ratio_axes.axhspan(low, high, color="tab:green", alpha=0.15, label=f"healthy {low:g} to {high:g}")
    ratio_axes.plot(health.iters, [ratio if ratio > 0 else math.nan for ratio in _finite(health.update_ratios)],
                    color="tab:orange", label="update / parameter")
    ratio_axes.set_yscale("log")  # the band is always there: the axis has positive values to scale
    ratio_axes.set_ylabel("update / parameter")
    ratio_axes.set_xlabel("iteration")

    for number, iteration in enumerate(health.skipped):
        for axes in (loss_axes, lr_axes, norm_axes, ratio_axes):
            axes.axvline(iteration, color="tab:red", alpha=0.4, linewidth=0.8,
                         label="float16 step skipped" if number == 0 and axes is loss_axes else None)
    for axes in (loss_axes, norm_axes, ratio_axes):
        axes.legend(fontsize="small", loc="best")
    for axes in (loss_axes, lr_axes, norm_axes, ratio_axes):
        axes.grid(True, alpha=0.3)
    figure.tight_layout()

    write_atomically(path, lambda file: figure.savefig(file, format="png"))
    return True


def _finite(values):
    """The values with inf and nan as nan: a gap in a matplotlib line, not an axis stretched to infinity."""
    return [value if math.isfinite(value) else math.nan for value in values]


def _log_scale_if_positive(axes, values):
    """A log y axis where there is a positive value to draw on it, its ticks as plain numbers (0.5, 2, 30)."""
    if any(value > 0 for value in _finite(values)):
        from matplotlib.ticker import LogFormatter
        axes.set_yscale("log")
        # plain numbers; minor ticks are labelled only over a narrow range, where there are few decade labels
        axes.yaxis.set_major_formatter(LogFormatter())
        axes.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
