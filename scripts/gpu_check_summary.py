"""The summary table of scripts/gpu_check.sh: one row per part, PASS / FAIL / SKIP with the figure that says how it
went, read from the part's log.

    python scripts/gpu_check_summary.py PARTS.tsv      # prints the table; exit 1 when a part failed

PARTS.tsv has one line per part, tab-separated: name, exit status, seconds taken, time limit, log file. A part
passes when its command exited 0 (and, for the full training run, reached its target val loss); a timeout or any
other exit fails it, except where the log shows the machine cannot run that part at all (no mpiexec, no NCCL in
this cupy, NCCL refusing two ranks on one GPU): that is a SKIP with the reason, not a failure of the code.
"""
import re
import sys
from pathlib import Path

FULL_RUN_TARGET = 1.48   # val loss of the full GPU preset (nanoGPT's shakespeare_char reaches 1.4697)
TORCH_RATIO_TARGET = 1.0  # our baby-GPT iteration at most this many times PyTorch eager's

# (what the log shows, why the part cannot run here) for the parts that need more than the GPU
CANNOT_RUN = [
    (re.compile(r"Duplicate GPU detected", re.I), "NCCL refuses two ranks on one GPU: needs two GPUs"),
    (re.compile(r"the nccl transport needs NCCL"), "this cupy cannot load NCCL (pip install nvidia-nccl-cu12)"),
    (re.compile(r"mpiexec: (command )?not found|failed to run command .mpiexec.|No such file or directory: 'mpiexec'"),
     "no mpiexec (pip install -e '.[mpi]')"),
    (re.compile(r"No module named 'mpi4py'"), "no mpi4py (pip install -e '.[mpi]')"),
]


def read_parts(path):
    """[(name, status, seconds, limit, log path)] from PARTS.tsv."""
    parts = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            name, status, seconds, limit, log = line.split("\t")[:5]
            parts.append((name, int(status), int(seconds), int(limit), log))
    return parts


def read_log(path):
    """A part's output, progress bars' carriage returns as line ends; '' when there is none."""
    try:
        return Path(path).read_text(errors="replace").replace("\r", "\n")
    except OSError:
        return ""


def _last(pattern, text):
    matches = re.findall(pattern, text, re.M)
    return matches[-1] if matches else None


def pytest_figure(text):
    """'41 passed, 2 skipped in 12.3s': pytest's last summary line."""
    line = _last(r"^=*\s*(\d+ (?:passed|failed|errors?|skipped|deselected|xfailed|xpassed).*?)\s*=*\s*$", text)
    return line or ("no tests ran" if "no tests ran" in text else "")


def summary_line(text):
    """What follows `SUMMARY: ` on the script's last such line."""
    return _last(r"^SUMMARY: (.*)$", text) or ""


def bench_figures(text):
    """(ours ms/iter, torch ms/iter or None) from bench/gpu_bench.py's SUMMARY line, or None."""
    line = summary_line(text)
    ours = re.search(r"ours ([0-9.]+) ms/iter", line)
    torch = re.search(r"torch ([0-9.]+) ms/iter", line)
    if not ours:
        return None
    return float(ours.group(1)), float(torch.group(1)) if torch else None


def bench_figure(text):
    figures = bench_figures(text)
    if figures is None:
        return summary_line(text)
    ours, torch = figures
    if torch is None:
        return f"{ours:.1f} ms/iter (no torch to compare)"
    ratio = ours / torch
    met = "met" if ratio <= TORCH_RATIO_TARGET else "missed"
    return f"{ours:.1f} ms/iter = {ratio:.2f}× torch ({torch:.1f}); target ≤ {TORCH_RATIO_TARGET:g}×: {met}"


def train_figures(text):
    """(iteration, train loss, best val loss) of the run's final line, or None; and its last logged ms/iter."""
    final = re.findall(r"^final \(iteration (\d+)\): train loss ([0-9.]+), val loss ([0-9.]+)"
                       r"(?:, best val loss ([0-9.]+))?", text, re.M)
    logged = re.findall(r"^iter \d+: .*?([0-9.]+) ms/iter", text, re.M)
    result = None
    if final:  # the val loss the run keeps: the best of its evaluations (its checkpoint's)
        iteration, train_loss, val_loss, best = final[-1]
        result = int(iteration), float(train_loss), min(float(val_loss), float(best or val_loss))
    return result, (float(logged[-1]) if len(logged) >= 2 else None)  # the first log line includes the compiles


def train_figure(text, target=None):
    result, ms = train_figures(text)
    if result is None:
        return ""
    iteration, train_loss, val_loss = result
    figure = f"iteration {iteration}: train {train_loss:.4f}, val {val_loss:.4f}"
    if ms is not None:
        figure += f", {ms:.1f} ms/iter after warm-up"
    if target is not None:
        figure += f"; target val ≤ {target}: {'met' if val_loss <= target else 'missed'}"
    return figure


def figure_of(name, text):
    """The figure of part `name` from its log."""
    if name.startswith("bench"):
        return bench_figure(text)
    if name.startswith("equivalence"):
        return summary_line(text)
    if name == "train-full":
        return train_figure(text, FULL_RUN_TARGET)
    if name.startswith("train") or name.startswith("nccl-2-ranks"):
        return train_figure(text)
    return pytest_figure(text)


def verdict_of(name, status, limit, text):
    """(PASS, FAIL or SKIP, the reason when not PASS)."""
    for pattern, reason in CANNOT_RUN:
        if status != 0 and pattern.search(text):
            return "SKIP", reason
    if status in (124, 137):
        return "FAIL", f"timed out after {limit} s"
    if status != 0:
        return "FAIL", f"exit {status}"
    if name == "train-full":
        result, _ = train_figures(text)
        if result is None or result[2] > FULL_RUN_TARGET:
            return "FAIL", f"val loss above {FULL_RUN_TARGET}" if result else "no final line"
    return "PASS", ""


def tf32_row(rows):
    """A row comparing the two bench runs' float32 matmuls in TF32 and not, when both ran."""
    figures = {name: bench_figures(read_log(log)) for name, status, _, _, log in rows
               if name in ("bench-tf32-off", "bench-tf32-on") and status == 0}
    off, on = figures.get("bench-tf32-off"), figures.get("bench-tf32-on")
    if not off or not on:
        return None
    figure = f"ours {off[0]:.1f} → {on[0]:.1f} ms/iter ({off[0] / on[0]:.2f}× faster with TF32)"
    if off[1] and on[1]:
        figure += f"; torch {off[1]:.1f} → {on[1]:.1f}"
    return f"| tf32 on vs off | PASS | {figure} | |"


def table(parts):
    """The markdown lines of the summary and the number of failed parts."""
    lines = ["| part | verdict | figure | time |", "|---|---|---|---|"]
    failed = 0
    for name, status, seconds, limit, log in parts:
        text = read_log(log)
        verdict, reason = verdict_of(name, status, limit, text)
        failed += verdict == "FAIL"
        figure = figure_of(name, text).replace("|", "/")
        shown = f"{reason}: {figure}" if reason and figure else reason or figure
        lines.append(f"| {name} | {verdict} | {shown} | {seconds} s of {limit} |")
    extra = tf32_row(parts)
    if extra:
        lines.append(extra)
    return lines, failed


def main(argv):
    if len(argv) != 1:
        sys.exit(__doc__)
    lines, failed = table(read_parts(argv[0]))
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
