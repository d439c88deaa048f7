"""Watching a long training run: its log lines and a one-line progress bar (the pictures are gpt/plot.py's).

RunLogger     everything train() prints and times: step 2.6's evaluation lines, step 2.7's log line with part 5's
              health numbers, the progress bar, the time per iteration; it records the health numbers (RunHealth)
              for health.png and, with --tensorboard, writes them to TensorBoard (gpt/tensorboard_log.py)
RunHealth     part 5's checks as series against the iteration: what health.png draws
update_ratio  part 5's update-to-parameter ratio of the step just taken
ProgressBar   iter/total, the last logged loss, time elapsed and an ETA, on one line that redraws itself (\r) in a
              terminal; where stderr is a file or a pipe (CI logs), a plain line every `plain_every_s` seconds
"""
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

from gpt.config import assumed_peak_flops
from gpt.checkpoint import write_atomically
from gpt.step import StepObserver
from optim import global_grad_norm
from tinygrad_ed.device import to_device

HEALTH_PNG = "health.png"    # in the run's out_dir, beside ckpt.npz
HEALTH_JSON = "health.json"  # the numbers health.png is drawn from, so that a resumed run draws the whole history
# health.png is redrawn at an evaluation only when its last drawing is this old (one drawing costs about half a
# second of matplotlib on a CPU core): a long run keeps a recent picture, a short one draws once, at its end
HEALTH_REDRAW_S = 30.0


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


@dataclass
class RunHealth:
    """Part 5's health checks of one run as series against the iteration, exactly as the log lines print them.

    The SERIES lists have one entry per log line (step 2.7); `skipped` lists every iteration whose float16
    update the loss scaler skipped (not only log iterations); `evals` every evaluation (step 2.6) as
    (iter_num, train loss, val loss); `grad_clip` is the run's clipping threshold (0.0: off).
    """
    SERIES = ("iters", "losses", "lrs", "grad_norms", "clipped_norms", "update_ratios", "ms_per_iter")

    iters: list = field(default_factory=list)
    losses: list = field(default_factory=list)         # the last micro-batch's loss
    lrs: list = field(default_factory=list)
    grad_norms: list = field(default_factory=list)     # the global gradient norm before clipping
    clipped_norms: list = field(default_factory=list)  # after clipping: measured again on the gradients the update
                                                       # used (not assumed to be min(norm, grad_clip))
    update_ratios: list = field(default_factory=list)  # 0.0 where the step was skipped: nothing moved
    ms_per_iter: list = field(default_factory=list)    # the mean since the previous log line
    skipped: list = field(default_factory=list)
    evals: list = field(default_factory=list)
    grad_clip: float = 0.0

    def before(self, iter_num):
        """The record of the iterations before `iter_num`: what a run resumed at `iter_num` continues."""
        kept = sum(1 for iteration in self.iters if iteration < iter_num)
        return RunHealth(**{name: getattr(self, name)[:kept] for name in self.SERIES},
                         skipped=[iteration for iteration in self.skipped if iteration < iter_num],
                         evals=[entry for entry in self.evals if entry[0] < iter_num], grad_clip=self.grad_clip)

    def then(self, later):
        """This record followed by `later`, the record of the run resumed where this one ends."""
        return RunHealth(**{name: getattr(self, name) + getattr(later, name) for name in self.SERIES},
                         skipped=self.skipped + later.skipped, evals=self.evals + later.evals,
                         grad_clip=later.grad_clip)

    def save(self, path):
        """Write the record as JSON (inf and nan as JSON's Infinity and NaN, which Python reads back), whole: a
        temporary file renamed over the old one (gpt/checkpoint.py's write_atomically, as for checkpoints)."""
        write_atomically(path, lambda file: file.write(json.dumps(asdict(self)).encode("utf-8")))

    @classmethod
    def load(cls, path):
        """A record saved by save(); ValueError (naming the file) when it is not one."""
        try:
            with open(path) as file:
                data = json.load(file)
            health = cls(**data)
            health.evals = [tuple(entry) for entry in health.evals]
            lengths = {len(getattr(health, name)) for name in cls.SERIES}
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path} is not a health record: {error}") from None
        if len(lengths) != 1 or any(len(entry) != 3 for entry in health.evals):
            raise ValueError(f"{path} is not a health record: its series have different lengths")
        return health


class RunLogger:
    """What train() prints and times, so that its loop body stays the chapter's diagram.

    config, raw_model  the run's settings and its GPT (the update ratio reads its weights, the MFU counts its FLOPs,
                       the histograms name its parameters)
    log                called with each line of text
    progress           draw a ProgressBar on stderr, starting at iteration `start`
    health_png         where to draw the health figure (gpt/plot.py), or None: at evaluations (at most every
                       HEALTH_REDRAW_S seconds) and at close(), so that a stopped run has its picture too; its
                       numbers go beside it as HEALTH_JSON
    earlier_health     the RunHealth of the iterations before `start` (a resumed run's), drawn before this one's
    tensorboard        a folder to write TensorBoard events into (gpt/tensorboard_log.py), or None
    It collects what TrainResult reports: `evals`, `logs`, `health` and the mean time of an iteration. close() it
    on every way out of the run: it ends the bar, draws the last picture and writes the last events.
    """

    def __init__(self, config, raw_model, log, progress, start=0, health_png=None, tensorboard=None,
                 earlier_health=None):
        self.config, self.log = config, log
        self.flops_per_iter = raw_model.flops_per_token() * config.tokens_per_iter()
        self.bar = ProgressBar(config.max_iters, start=start) if progress else None
        self.evals, self.last_loss = [], None
        self.health = RunHealth(evals=self.evals, grad_clip=config.grad_clip)
        self.health_png, self._drawn_at = health_png, time.time()
        self.earlier_health = earlier_health if earlier_health is not None else RunHealth()
        self._seconds, self._steps = 0.0, 0                # since the last log line: its ms/iter is their mean
        self._total_seconds, self._total_steps = 0.0, 0    # the whole run's
        self._watch = _WeightsBeforeUpdate(raw_model)
        self._raw_model = raw_model
        self.events = None
        if tensorboard is not None:
            from gpt.tensorboard_log import TensorBoardLog
            self.events = TensorBoardLog(tensorboard)

    def say(self, message):
        """Print a line; never in the middle of the progress bar's line."""
        if self.bar is not None:
            self.bar.clear()
        self.log(message)

    def evaluated(self, iter_num, losses):
        """Step 2.6's line."""
        self.say(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        self.evals.append((iter_num, losses["train"], losses["val"]))
        if self.events is not None:
            self.events.scalars(iter_num, {"eval/train": losses["train"], "eval/val": losses["val"]})
            self.events.histograms(iter_num, "weights", ((name, param.numpy()) for name, param
                                                         in self._raw_model.named_parameters()))
        if self.health_png is not None and time.time() - self._drawn_at >= HEALTH_REDRAW_S:
            self.draw_health()

    def saved(self, path, kept_as):
        if kept_as is not None:
            self.say(f"{path} held an earlier run's checkpoint: kept as {kept_as}")
        self.say(f"saved checkpoint to {path}")

    def start_step(self, iter_num):
        """Call before the iteration; returns the observer train_step should show it to."""
        self._started = time.time()
        self._log_now = iter_num % self.config.log_interval == 0
        # TensorBoard's gradient histograms: the update of each evaluated iteration
        keep_gradients = self.events is not None and iter_num % self.config.eval_interval == 0
        self._watch.prepare(measure=self._log_now, keep_gradients=keep_gradients)
        return self._watch if self._log_now or keep_gradients else None

    def end_step(self, iter_num, step, lr):
        """Call after the iteration. On log iterations (step 2.7) it reads the loss and the gradient norm back,
        which waits for the device, prints the log line and returns (loss, norm); otherwise None."""
        health = None
        if self._log_now:
            self.last_loss = step.loss.item()
            health = (self.last_loss, step.grad_norm.item())
            clipped_norm = self._watch.clipped_norm.item()
        seconds = time.time() - self._started  # measured after the read-back, so it includes the device's work
        self._seconds, self._steps = self._seconds + seconds, self._steps + 1
        self._total_seconds, self._total_steps = self._total_seconds + seconds, self._total_steps + 1
        if not step.stepped:
            self.health.skipped.append(iter_num)
        if self._watch.gradients is not None:
            self.events.histograms(iter_num, "grads", self._watch.gradients)
            self._watch.gradients = None
        if self._log_now:
            ratio = update_ratio(self._watch.parameters, self._watch.weights) if step.stepped else 0.0
            seconds_per_iter = self._seconds / self._steps  # the mean since the last log line
            peak = assumed_peak_flops(self.config)
            mfu = self.flops_per_iter / seconds_per_iter / peak
            tokens_per_s = self.config.tokens_per_iter() / seconds_per_iter
            self.say(f"iter {iter_num}: loss {self.last_loss:.4f}, lr {lr:.2e}, {seconds_per_iter * 1000:.1f} ms/iter, "
                     f"{tokens_per_s:.0f} tok/s, grad norm {health[1]:.3f}, "
                     f"update/param {ratio:.1e}, mfu {mfu * 100:.1f}% of {peak / 1e9:,.0f} GFLOP/s"
                     + ("" if step.stepped else " (float16 overflow: step skipped, loss scale lowered)"))
            self._record(iter_num, self.last_loss, lr, health[1], clipped_norm, ratio, seconds_per_iter * 1000)
            if self.events is not None:
                self.events.scalars(iter_num, {
                    "train/loss": self.last_loss, "train/lr": lr, "train/grad_norm": health[1],
                    "train/grad_norm_clipped": clipped_norm, "train/update_ratio": ratio,
                    "train/ms_per_iter": seconds_per_iter * 1000, "train/tokens_per_s": tokens_per_s,
                    "train/mfu": mfu, "train/skipped_steps": len(self.health.skipped)})
            self._seconds, self._steps = 0.0, 0
        if self.bar is not None:
            self.bar.update(iter_num + 1, self.last_loss)
        return health

    @property
    def logs(self):
        """(iter_num, loss) of every log line: the health record's first two series."""
        return list(zip(self.health.iters, self.health.losses))

    @property
    def ms_per_iter(self):
        """Mean milliseconds of one iteration, evaluations excluded (nan if none ran)."""
        return self._total_seconds / self._total_steps * 1000 if self._total_steps else math.nan

    def _record(self, iter_num, loss, lr, grad_norm, clipped_norm, ratio, ms_per_iter):
        health = self.health
        for series, value in ((health.iters, iter_num), (health.losses, loss), (health.lrs, lr),
                              (health.grad_norms, grad_norm), (health.clipped_norms, clipped_norm),
                              (health.update_ratios, ratio), (health.ms_per_iter, ms_per_iter)):
            series.append(value)

    def draw_health(self):
        """Draw health.png now, with its numbers beside it (a failed drawing is a warning: the run goes on, its
        numbers are in the log)."""
        from gpt.plot import save_health_png
        record = self.earlier_health.then(self.health)
        try:
            record.save(os.path.join(os.path.dirname(self.health_png), HEALTH_JSON))
            save_health_png(record, self.health_png)
        except (OSError, ValueError) as error:
            self.say(f"warning: could not draw {self.health_png}: {error}")
        self._drawn_at = time.time()

    def close(self):
        """End the progress bar, draw the last health.png, write and close the TensorBoard events; once."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.health_png is not None:
            self.draw_health()
            self.health_png = None
        if self.events is not None:
            self.events.close()
            self.events = None


class _WeightsBeforeUpdate(StepObserver):
    """What a logged step shows just before its update: a copy of the weights the update is about to change (for
    the update ratio) and the norm of the gradients it will use (after clipping); on an evaluated iteration with
    TensorBoard on, those gradients themselves, on the host, under nanoGPT's parameter names."""

    def __init__(self, raw_model):
        self.raw_model = raw_model
        self.gradients = None

    def prepare(self, measure, keep_gradients):
        self.measure, self.keep_gradients = measure, keep_gradients
        self.weights = self.clipped_norm = self.gradients = None

    def before_update(self, model, grad_norm):
        if self.measure:
            self.parameters = model.parameters()
            self.weights = [param.data.copy() for param in self.parameters]
            self.clipped_norm = global_grad_norm(self.parameters)  # read back with the loss, on the log line
        if self.keep_gradients:
            self.gradients = [(name, to_device(param.grad, "cpu")) for name, param
                              in self.raw_model.named_parameters() if param.grad is not None]


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
