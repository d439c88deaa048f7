"""The loss curve, or any curve, as a picture (chapter part 4's plot), with nothing but the standard library.

text_plot   series against the iteration, drawn with characters, for any terminal
save_png    the same plot as a PNG, only where matplotlib is installed (it is never required)
"""
import math
import os

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


def save_png(series, path, title="loss"):
    """Save the plot of `series` {name: (xs, ys)} as a PNG at `path`; returns False where matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")  # draw to a file: no window, works without a display
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4))
    for name, (xs, ys) in series.items():
        axes.plot(xs, ys, label=name, marker="o" if len(xs) < 30 else None)
    axes.set_xlabel("iteration")
    axes.set_ylabel(title)
    axes.legend()
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
    return True
