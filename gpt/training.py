"""The training run, as the chapter's summary diagram draws it, after nanoGPT's train.py.

    1.  initialise: the model, AdamW, the loss scaler, the batches; or resume from a checkpoint
    2.  while iter_num < max_iters:
        2.6 every eval_interval iterations: estimate train/val loss, save a checkpoint when val improves
        2.1-2.5 one iteration (gpt/step.py): the learning rate, gradient accumulation (forward, loss / steps, the
            next batch, backward), clipping, the update, zeroing the gradients
        2.7 every log_interval iterations: print loss, learning rate, speed and the health numbers of part 5
        iter_num += 1

As in nanoGPT, 2.6 runs at the top of an iteration, before its update: the losses printed for "step N" are those
of the model after N updates, and a checkpoint saved there resumes with iteration N. One more evaluation runs
after the last iteration, so the final model is always measured (and saved, if it is the best).
The settings are gpt/config.py's TrainConfig; what is printed and timed is gpt/progress.py's RunLogger.
"""
import math
import os
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from gpt.checkpoint import (KEPT_PATTERN, CheckpointError, CheckpointSaveError, CheckpointSaver, load_checkpoint,
                            restore)
from gpt.data import Batches, CharDataset, CharTokenizer
from gpt.model import GPT
from gpt.plot import PLOT_HINT, plot_available
from gpt.progress import HEALTH_JSON, HEALTH_PNG, RunHealth, RunLogger
from gpt.tensorboard_log import check_log_dir
from gpt.step import configure_optimizers, train_step
from optim import AdamW, GradScaler, get_lr
from tinygrad_ed import no_grad
from tinygrad_ed.distributed import DistributedDataParallel, RankFailed, init_process_group, launch_rank
from tinygrad_ed.mixed_precision import HalfPrecision


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite: the run stops instead of saving a broken model."""

    def __init__(self, iter_num, problem, config, checkpoint_path):
        self.iter_num = iter_num
        super().__init__(
            f"training diverged at iteration {iter_num}: {problem}. No checkpoint was written from the broken "
            f"model; the last good one (if any) is untouched at {checkpoint_path}. Remedies (chapter part 5, "
            f"'loss becomes NaN'): lower learning_rate, e.g. to 1e-4 (now {config.learning_rate:g}); enable "
            f"gradient clipping with grad_clip=1.0 (now {config.grad_clip:g}); use dtype='float32' instead of "
            f"float16 (now {config.dtype})")


class NothingToTrain(Exception):
    """A resumed checkpoint already is at max_iters, and the run was not asked to only evaluate it."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a SIGTERM the program turned into one) ended the run; it says what is on disk."""

    def __init__(self, iter_num, last_saved_at, checkpoint_path, cause=None):
        self.iter_num, self.last_saved_at, self.checkpoint_path = iter_num, last_saved_at, checkpoint_path
        on_disk = (f"the last checkpoint this run saved is {checkpoint_path} (iteration {last_saved_at})"
                   if last_saved_at is not None else f"this run saved no checkpoint to {checkpoint_path}")
        super().__init__(f"interrupted at iteration {iter_num}" + (f" ({cause})" if cause else "") + f"; {on_disk}")


@dataclass
class TrainResult:
    iter_num: int           # iterations done; a resumed run would continue with this one
    evals: list             # (iter_num, train_loss, val_loss) for every evaluation
    logs: list              # (iter_num, loss) for every log line: the last micro-batch's loss at that iteration
    best_val_loss: float
    elapsed_s: float        # wall-clock seconds of this call, evaluations included
    ms_per_iter: float      # mean milliseconds of one training iteration, evaluations excluded (nan if none ran)
    model: GPT
    optimizer: AdamW
    tokenizer: CharTokenizer
    checkpoint_path: str
    saved_at: list = field(default_factory=list)  # iterations at which a checkpoint was written
    save_error: Optional[str] = None  # the last save, when it failed and no later one succeeded
    health: RunHealth = field(default_factory=RunHealth)  # part 5's numbers of every log line (what health.png draws)


def initialise(config, dataset, group):
    """Step 1 of the diagram (初始化), from config.seed: returns (raw_model, model, optimizer, scaler, batches).

    As in nanoGPT, the model has two names: raw_model is the GPT itself, which the optimizer updates and a checkpoint
    saves; model is what computes, raw_model behind the optional machinery this run uses. `group` is the run's
    process group (tinygrad_ed/distributed): this rank computes its slice of every batch.
    """
    raw_model = GPT(config.model_config(dataset.tokenizer.vocab_size), device=config.device, seed=config.seed)
    optimizer = configure_optimizers(raw_model, config.weight_decay, config.learning_rate, (config.beta1, config.beta2))
    # float16 only: the scaler lifts the tiny float16 gradients out of underflow; 2^15, not 2^16, because 65536
    # itself overflows float16 (max 65504)
    scaler = GradScaler(init_scale=2.0 ** 15, enabled=config.dtype == "float16")
    # the optional machinery, named once: float16 compute on the float32 weights (tinygrad_ed/mixed_precision.py),
    # then this rank's slice of each batch, the gradients summed over the ranks (tinygrad_ed/distributed). Also one
    # rank is wrapped: one process computes the same function as several
    model = DistributedDataParallel(HalfPrecision(raw_model) if config.dtype == "float16" else raw_model, group)
    batches = Batches(dataset, config.batch_size, config.block_size, config.seed, config.device)
    return raw_model, model, optimizer, scaler, batches


def scheduled_lr(config, iter_num):
    """Step 2.1's lr = get_lr(iter_num): linear warmup, then cosine decay to min_lr; constant without decay_lr."""
    if not config.decay_lr:
        return config.learning_rate
    return get_lr(iter_num, config.learning_rate, config.warmup_iters, config.decay_iters, config.min_lr)


@no_grad()
def estimate_loss(model, dataset, config):
    """{"train": mean loss, "val": mean loss}, each over eval_iters batches, with dropout off.

    NOTE: unlike nanoGPT, the batches come from a generator seeded the same way at every call: every evaluation
    scores the same text, so two evaluations differ only because the model changed, and a resumed run
    re-evaluates its checkpoint to exactly the numbers it was saved with.
    """
    model.eval()
    generator = np.random.default_rng(config.seed + 1)
    losses = {}
    for split in ("train", "val"):
        total = 0.0
        for _ in range(config.eval_iters):
            X, Y = dataset.get_batch(split, config.batch_size, config.block_size, generator, config.device)
            _, loss = model(X, Y)
            total += loss.item()
        losses[split] = total / config.eval_iters
    model.train()
    return losses


def train(config, dataset=None, log=print, progress=False):
    """Train (or resume, or only evaluate) as `config` says; returns a TrainResult.

    dataset   a CharDataset; tiny Shakespeare by default
    log       called with each line of text (print by default)
    progress  draw a progress bar on stderr
    Ctrl-C (KeyboardInterrupt) ends it with TrainingInterrupted, which says where the last checkpoint is.
    With matplotlib (and config.health_png) it draws out_dir/health.png, with config.tensorboard it writes
    TensorBoard events (gpt/tensorboard_log.py): both also when the run stops early, so a stopped run has them.

    Data parallel: config.worker_count() ranks run the loop below, each on its slice of every batch; rank 0 alone
    logs and saves, and is the one that returns. With the local backend the other ranks are forked here and exit
    when the run ends; under mpiexec every rank calls train(), and the ranks other than 0 return None.
    """
    config = config.resolved()  # lr_decay_iters and the ranks as this run uses them, and as it saves them
    master_process = launch_rank() == 0
    if master_process and config.tensorboard is not None:
        check_log_dir(config.tensorboard)  # tensorboardX and a writable folder, before any work (TensorBoardError)
    dataset = dataset if dataset is not None else CharDataset()
    # the out_dir is checked, locked and cleaned now, before any work (gpt/checkpoint.py), by the rank that saves
    with CheckpointSaver(config.out_dir, fresh_run=config.init_from == "scratch",
                         will_save=master_process and not config.eval_only) as saver:
        if master_process:
            for note in config.notes() + _kept_note(saver) + _plot_note(config):
                log(f"note: {note}")
        # from here on, every rank runs the same code (the local backend forks the other ranks now)
        with init_process_group(config.backend, config.worker_count()) as group:
            result = _train(config, dataset, log if group.master_process else _quiet,
                            progress and group.master_process, saver, group)
        return result if group.master_process else None


def _quiet(line):
    """The log of a rank other than 0: rank 0 says it all."""


def _train(config, dataset, log, progress, saver, group):
    started_at = time.time()
    iter_num, saved_at, logger = 0, [], None
    try:
        # ---- 1. initialisation ----
        raw_model, model, optimizer, scaler, batches = initialise(config, dataset, group)
        log(f"number of parameters: {raw_model.num_parameters() / 1e6:.2f}M ({raw_model.num_parameters():,})")
        best_val_loss = best_on_disk = math.inf  # the best evaluation, and that of the checkpoint on disk
        if config.init_from == "resume":
            iter_num, best_val_loss = _resume(saver.path, raw_model, optimizer, scaler, batches, dataset)
            best_on_disk = best_val_loss
            if iter_num >= config.max_iters and not config.eval_only:
                raise NothingToTrain(f"the checkpoint {saver.path} is at iteration {iter_num} and max_iters is "
                                     f"{config.max_iters}: nothing to train; to go on, resume with a larger "
                                     f"--max-iters (and --lr-decay-iters, to stretch the schedule); to evaluate "
                                     f"it, add --eval-only")
            log(f"resumed from {saver.path} at iteration {iter_num} (best val loss {best_val_loss:.4f})")
        # the pictures and the TensorBoard events are rank 0's, as the log is; eval_only leaves the training's be
        draws_health = group.master_process and _wants_health(config) and plot_available()
        logger = RunLogger(config, raw_model, log, progress, start=iter_num,
                           health_png=os.path.join(config.out_dir, HEALTH_PNG) if draws_health else None,
                           tensorboard=config.tensorboard if group.master_process else None,
                           earlier_health=_earlier_health(config, iter_num, log) if draws_health else None)
        save_error = None
        X, Y = batches.next()  # the first batch; every later one is fetched during the step before it

        # ---- 2. the main loop ----
        while True:
            # step 2.6: evaluate every eval_interval iterations and after the last; checkpoint when val loss improves
            if iter_num % config.eval_interval == 0 or iter_num == config.max_iters or config.eval_only:
                losses = estimate_loss(model, dataset, config)
                logger.evaluated(iter_num, losses)
                if not (math.isfinite(losses["train"]) and math.isfinite(losses["val"])):
                    raise TrainingDiverged(iter_num, f"the estimated loss is train {losses['train']}, val "
                                           f"{losses['val']}", config, saver.path)
                best_val_loss = min(best_val_loss, losses["val"])
                # nothing is learned at iteration 0, and eval_only must not touch the checkpoint it evaluates
                improved = losses["val"] < best_on_disk
                if (improved or config.always_save_checkpoint) and iter_num > 0 and not config.eval_only \
                        and group.master_process:
                    generators = {"batch": batches.state, "dropout": _generator_state(raw_model.dropout_generator)}
                    best_after = min(best_on_disk, losses["val"])
                    try:
                        kept_as = saver.save(raw_model, optimizer, scaler, iter_num, best_after, config,
                                             raw_model.config, dataset.tokenizer, generators)
                    except CheckpointSaveError as error:
                        # a full disk may clear: training goes on, and the next evaluation that improves on the
                        # checkpoint on disk tries again
                        save_error = f"iteration {iter_num}: {error}"
                        logger.say(f"warning: {error}. Training goes on; the next evaluation that improves on the "
                                   f"checkpoint on disk saves again")
                    else:
                        save_error, best_on_disk = None, best_after
                        saved_at.append(iter_num)
                        logger.saved(saver.path, kept_as)
            if iter_num >= config.max_iters or config.eval_only:
                break

            # steps 2.1-2.5: one iteration, with this iteration's learning rate
            lr = scheduled_lr(config, iter_num)
            observer = logger.start_step(iter_num)
            step = train_step(model, optimizer, (X, Y), batches.next, lr, config.gradient_accumulation_steps,
                              config.grad_clip, scaler, measure_norm=observer is not None, observer=observer)
            X, Y = step.next_batch

            # step 2.7: log (reading the loss back waits for the device, so only every log_interval iterations),
            # with part 5's health check: a float16 step the scaler skipped has an inf norm by design, not divergence
            health = logger.end_step(iter_num, step, lr)
            if health is not None and step.stepped and not all(math.isfinite(number) for number in health):
                raise TrainingDiverged(iter_num, f"loss {health[0]}, gradient norm {health[1]}", config, saver.path)
            iter_num += 1
    except KeyboardInterrupt as interrupt:  # Ctrl-C, SIGTERM, or another rank stopped by one (RankInterrupted)
        raise TrainingInterrupted(iter_num, saved_at[-1] if saved_at else None, saver.path,
                                  cause=str(interrupt) if isinstance(interrupt, RankFailed) else None) from None
    finally:  # on every way out (the end, Ctrl-C, divergence): the bar's last line, health.png, the last events
        if logger is not None:
            logger.close()

    return TrainResult(iter_num=iter_num, evals=logger.evals, logs=logger.logs, best_val_loss=best_val_loss,
                       elapsed_s=time.time() - started_at, ms_per_iter=logger.ms_per_iter, model=raw_model,
                       optimizer=optimizer, tokenizer=dataset.tokenizer, checkpoint_path=saver.path,
                       saved_at=saved_at, save_error=save_error, health=logger.health)


def _resume(path, raw_model, optimizer, scaler, batches, dataset):
    """Load a checkpoint into the fresh objects; returns (iter_num, best_val_loss)."""
    checkpoint = load_checkpoint(path, model_config=raw_model.config)
    if checkpoint.tokenizer.chars != dataset.tokenizer.chars:
        raise CheckpointError(f"checkpoint {path!r} was trained on another vocabulary "
                              f"({checkpoint.tokenizer.vocab_size} characters) than this data set's "
                              f"({dataset.tokenizer.vocab_size}): its token ids would mean other characters")
    restore(checkpoint, raw_model, optimizer, scaler)
    dropout_generator = raw_model.dropout_generator
    try:
        batches.restore(checkpoint.generators["batch"])
        # a numpy dropout generator continues its stream; a cupy one (cuda) cannot be saved and starts afresh
        if checkpoint.generators["dropout"] is not None and isinstance(dropout_generator, np.random.Generator):
            dropout_generator.bit_generator.state = checkpoint.generators["dropout"]
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path!r} has unusable random generator states: {error}") from error
    return checkpoint.iter_num, checkpoint.best_val_loss


def _kept_note(saver):
    """A note naming the earlier runs' checkpoints kept in the out_dir, if any."""
    kept = saver.kept()
    if not kept:
        return []
    whose = "1 earlier run's checkpoint" if len(kept) == 1 else f"{len(kept)} earlier runs' checkpoints"
    return [f"{saver.out_dir} keeps {whose} ({KEPT_PATTERN}; the newest: {os.path.basename(kept[-1])})"]


def _earlier_health(config, iter_num, log):
    """A resumed run's health record of the iterations before its checkpoint's (out_dir/health.json), to draw the
    whole run; None for a fresh run or where there is none. An unreadable record only costs the picture's past."""
    path = os.path.join(config.out_dir, HEALTH_JSON)
    if config.init_from != "resume" or not os.path.exists(path):
        return None
    try:
        return RunHealth.load(path).before(iter_num)
    except (OSError, ValueError) as error:
        log(f"note: {error}; {HEALTH_PNG} starts at iteration {iter_num}")
        return None


def _wants_health(config):
    """Whether the run draws health.png (where matplotlib is): asked for, and a run that trains."""
    return config.health_png and not config.eval_only


def _plot_note(config):
    """A note when health.png would be drawn but matplotlib is missing (the run itself needs nothing of it)."""
    if _wants_health(config) and not plot_available():
        return [f"matplotlib is not installed, so {HEALTH_PNG} is not drawn ({PLOT_HINT})"]
    return []


def _generator_state(generator):
    """A numpy generator's state (JSON-able); None for a cupy generator, whose state cannot be saved."""
    return generator.bit_generator.state if isinstance(generator, np.random.Generator) else None
