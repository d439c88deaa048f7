"""Watching a long training run: its log lines and a one-line progress bar (the loss curve is gpt/plot.py's).

RunLogger     everything train() prints and times: step 2.6's evaluation lines, step 2.7's log line with part 5's
              health numbers, the progress bar, the time per iteration
update_ratio  part 5's update-to-parameter ratio of the step just taken
ProgressBar   iter/total, the last logged loss, time elapsed and an ETA, on one line that redraws itself (\r) in a
              terminal; where stderr is a file or a pipe (CI logs), a plain line every `plain_every_s` seconds
"""
import math
import sys
import time

from gpt.config import assumed_peak_flops
from gpt.step import StepObserver


def format_duration(seconds):
    """12s, 3m05s, 1h02m03s: short enough for a progress line."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{seconds:02d}s"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


class RunLogger:
    """What train() prints and times, so that its loop body stays the chapter's diagram.

    config, raw_model  the run's settings and its GPT (the update ratio reads its weights, the MFU counts its FLOPs)
    log                called with each line of text
    progress           draw a ProgressBar on stderr, starting at iteration `start`
    It collects what TrainResult reports: `evals`, `logs` and the mean time of an iteration.
    """

    def __init__(self, config, raw_model, log, progress, start=0):
        self.config, self.log = config, log
        self.flops_per_iter = raw_model.flops_per_token() * config.tokens_per_iter()
        self.bar = ProgressBar(config.max_iters, start=start) if progress else None
        self.evals, self.logs, self.last_loss = [], [], None
        self._seconds, self._steps = 0.0, 0                # since the last log line: its ms/iter is their mean
        self._total_seconds, self._total_steps = 0.0, 0    # the whole run's
        self._watch = _WeightsBeforeUpdate()

    def say(self, message):
        """Print a line; never in the middle of the progress bar's line."""
        if self.bar is not None:
            self.bar.clear()
        self.log(message)

    def evaluated(self, iter_num, losses):
        """Step 2.6's line."""
        self.say(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        self.evals.append((iter_num, losses["train"], losses["val"]))

    def saved(self, path, kept_as):
        if kept_as is not None:
            self.say(f"{path} held an earlier run's checkpoint: kept as {kept_as}")
        self.say(f"saved checkpoint to {path}")

    def start_step(self, iter_num):
        """Call before the iteration; returns the observer train_step should show it to."""
        self._started = time.time()
        self._log_now = iter_num % self.config.log_interval == 0
        self._watch.weights = None
        return self._watch if self._log_now else None

    def end_step(self, iter_num, step, lr):
        """Call after the iteration. On log iterations (step 2.7) it reads the loss and the gradient norm back,
        which waits for the device, prints the log line and returns (loss, norm); otherwise None."""
        health = None
        if self._log_now:
            self.last_loss = step.loss.item()
            health = (self.last_loss, step.grad_norm.item())
        seconds = time.time() - self._started  # measured after the read-back, so it includes the device's work
        self._seconds, self._steps = self._seconds + seconds, self._steps + 1
        self._total_seconds, self._total_steps = self._total_seconds + seconds, self._total_steps + 1
        if self._log_now:
            ratio = update_ratio(self._watch.parameters, self._watch.weights) if step.stepped else 0.0
            seconds_per_iter = self._seconds / self._steps  # the mean since the last log line
            peak = assumed_peak_flops(self.config)
            mfu = self.flops_per_iter / seconds_per_iter / peak
            self.say(f"iter {iter_num}: loss {self.last_loss:.4f}, lr {lr:.2e}, {seconds_per_iter * 1000:.1f} ms/iter, "
                     f"{self.config.tokens_per_iter() / seconds_per_iter:.0f} tok/s, grad norm {health[1]:.3f}, "
                     f"update/param {ratio:.1e}, mfu {mfu * 100:.1f}% of {peak / 1e9:,.0f} GFLOP/s"
                     + ("" if step.stepped else " (float16 overflow: step skipped, loss scale lowered)"))
            self.logs.append((iter_num, self.last_loss))
            self._seconds, self._steps = 0.0, 0
        if self.bar is not None:
            self.bar.update(iter_num + 1, self.last_loss)
        return health

    @property
    def ms_per_iter(self):
        """Mean milliseconds of one iteration, evaluations excluded (nan if none ran)."""
        return self._total_seconds / self._total_steps * 1000 if self._total_steps else math.nan

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _WeightsBeforeUpdate(StepObserver):
    """Keeps a copy of the weights the update is about to change, for the update ratio."""

    def before_update(self, model, grad_norm):
        self.parameters = model.parameters()
        self.weights = [param.data.copy() for param in self.parameters]


def update_ratio(params, weights_before):
    """Mean over parameters of ‖Δp‖ / ‖p‖ for the step just taken (part 5: healthy is about 1e-3 to 1e-2).

    A parameter that was all zeros (a fresh bias) has no size to compare its step with, and is left out.
    """
    xp = params[0].xp
    sizes = xp.stack([xp.linalg.norm(before) for before in weights_before])                          # ‖p‖
    steps = xp.stack([xp.linalg.norm(param.data - old) for param, old in zip(params, weights_before)])  # ‖Δp‖
    nonzero = sizes > 0
    return float((steps[nonzero] / sizes[nonzero]).mean()) if bool(nonzero.any()) else math.nan


class ProgressBar:
    """`[#####.....] 250/2000 loss 2.0321 elapsed 1m12s eta 8m24s` on stderr.

    start  the iteration this session begins at (a resumed run starts past 0; the ETA uses this session's pace)
    total  the iteration the run ends at (max_iters)
    """

    def __init__(self, total, start=0, stream=None, width=24, plain_every_s=30.0):
        self.total, self.start, self.width = total, start, width
        self.stream = stream if stream is not None else sys.stderr
        # a terminal can redraw a line in place; a log file would collect every redraw, so it gets a line now and then
        self.redraw = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.plain_every_s = plain_every_s
        self.started_at = time.time()
        self.last_shown_at = self.started_at  # the first line waits one interval: an ETA needs some history
        self.line = ""

    def update(self, iter_num, loss=None):
        """Show that `iter_num` iterations are done; `loss` is the last loss read back (None before the first log)."""
        now = time.time()
        finished = iter_num >= self.total
        # redraw at most 10 times a second (writing is not free), plain lines every plain_every_s; always the last
        interval = 0.1 if self.redraw else self.plain_every_s
        if now - self.last_shown_at < interval and not finished:
            return
        self.last_shown_at = now
        self.line = self.describe(iter_num, loss, now - self.started_at)
        if self.redraw:
            self.stream.write("\r" + self.line)
        else:
            self.stream.write(self.line + "\n")
        self.stream.flush()

    def describe(self, iter_num, loss, elapsed):
        done = iter_num - self.start                      # iterations run in this session
        remaining = self.total - iter_num
        eta = elapsed / done * remaining if done > 0 else math.nan
        fraction = iter_num / self.total if self.total > 0 else 1.0
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        loss_text = f" last logged loss {loss:.4f}" if loss is not None else ""
        return (f"[{bar}] {iter_num}/{self.total}{loss_text} elapsed {format_duration(elapsed)} "
                f"eta {format_duration(eta)}")

    def clear(self):
        """Blank the bar's line, so a log line printed next starts at column 0 (the next update() redraws it)."""
        if self.redraw and self.line:
            self.stream.write("\r" + " " * len(self.line) + "\r")
            self.stream.flush()
            self.line = ""

    def close(self):
        """End the bar's line (a terminal keeps the final bar on screen)."""
        if self.redraw and self.line:
            self.stream.write("\n")
            self.stream.flush()
            self.line = ""
