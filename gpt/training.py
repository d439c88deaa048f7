"""The training loop, step by step as the chapter's summary diagram draws it (steps 2.1-2.7), after nanoGPT's train.py.

    1.  initialise: data, model, optimizer (AdamW), loss scaler, random generators; or resume from a checkpoint
    2.  while iter_num < max_iters:
        2.1 set the learning rate for this iteration (warmup, then cosine decay)
        2.6 every eval_interval iterations: estimate train/val loss, save a checkpoint when val improves
        2.2 gradient accumulation: forward, loss / steps, fetch the next batch, backward, gradients add up
        2.3 clip the global gradient norm
        2.4 update the parameters (AdamW)
        2.5 zero the gradients
        2.7 every log_interval iterations: print loss, learning rate, speed and the health numbers of part 5
        iter_num += 1

As in nanoGPT, 2.6 runs at the top of an iteration, before its update: the losses printed for "step N" are those
of the model after N updates, and a checkpoint saved there resumes with iteration N. One more evaluation runs
after the last iteration, so the final model is always measured (and saved, if it is the best).
"""
import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from gpt.checkpoint import CheckpointError, load_checkpoint, restore, save_checkpoint
from gpt.data import CharDataset, CharTokenizer
from gpt.model import GPT, GPTConfig
from gpt.progress import ProgressBar
from optim import AdamW, GradScaler, clip_grad_norm_, get_lr, global_grad_norm, weight_decay_groups
from tinygrad_ed import no_grad
from tinygrad_ed.parallel import usable_cores
from tinygrad_ed.process_parallel import data_parallel
from tinygrad_ed.device import DEVICES

CHECKPOINT_NAME = "ckpt.npz"


@dataclass
class TrainConfig:
    """Every knob of the run. The defaults are nanoGPT's config/train_shakespeare_char.py (a small GPT, sized for
    a GPU); cpu_preset() applies the CPU overrides from nanoGPT's README."""
    # I/O
    out_dir: str = "out-shakespeare-char"  # where ckpt.npz goes, relative to the current directory
    eval_interval: int = 250               # estimate train/val loss (and maybe checkpoint) every this many iterations
    log_interval: int = 10                 # print a log line every this many iterations (loss is read back only then)
    eval_iters: int = 200                  # batches per split averaged by one estimate: more = less noisy, slower
    eval_only: bool = False                # evaluate once (e.g. a resumed checkpoint) and stop, without training
    always_save_checkpoint: bool = False   # save at every evaluation, not only when val loss improves (nanoGPT
                                           # keeps False for Shakespeare: the small data set overfits later on)
    init_from: str = "scratch"             # "scratch": a new model; "resume": continue from out_dir/ckpt.npz
    # data
    gradient_accumulation_steps: int = 1   # micro-batches summed into one update: a larger batch in less memory
    batch_size: int = 64                   # sequences per micro-batch (B)
    block_size: int = 256                  # characters of context per sequence (T)
    # model
    n_layer: int = 6                       # transformer blocks
    n_head: int = 6                        # attention heads per block
    n_embd: int = 384                      # width of every token's vector (C)
    dropout: float = 0.2                   # regularisation against overfitting; 0.0 when the model is small
    bias: bool = False                     # biases in Linear and LayerNorm; nanoGPT trains without (better, faster)
    # AdamW (step 2.4)
    learning_rate: float = 1e-3            # peak learning rate; a small model can take a large one
    max_iters: int = 5000                  # total number of updates
    weight_decay: float = 1e-1             # AdamW's decoupled shrinkage of the weight matrices
    beta1: float = 0.9                     # momentum: how long AdamW remembers the gradient's direction
    beta2: float = 0.99                    # how long it remembers the gradient's size (0.99: few tokens per step)
    grad_clip: float = 1.0                 # clip the global gradient norm to this (step 2.3); 0.0 turns clipping off
    # learning-rate schedule (step 2.1)
    decay_lr: bool = True                  # warmup + cosine decay; False keeps learning_rate constant
    warmup_iters: int = 100                # linear warmup while AdamW's running averages are still poor estimates
    lr_decay_iters: int = 5000             # the cosine ends here; nanoGPT sets it to about max_iters
    min_lr: float = 1e-4                   # the rate at the end of the decay, about learning_rate / 10
    # system
    device: str = "cpu"                    # "cpu" (numpy) or "cuda" (cupy); train_char_gpt.py picks cuda if it sees a GPU
    dtype: str = "float32"                 # "float16" runs forward/backward in half precision with loss scaling (cuda)
    seed: int = 1337                       # seeds the weights, the batches and dropout: the same seed, the same run
    workers: int = 0                       # processes that split each batch; 0 = one per CPU core (1 on cuda)
                                           # (tinygrad_ed/process_parallel.py: on cuda one GPU is one worker)
    peak_flops: Optional[float] = None     # the device's peak FLOP/s for the MFU in the log; None: assumed_peak_flops()
                                           # e.g. 312e12 (A100 bf16 tensor cores, nanoGPT's reference), 19.5e12
                                           # (A100 plain float32): an assumption you state, not a measurement

    def __post_init__(self):
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', got {self.dtype!r}")
        if self.dtype == "float16" and self.device != "cuda":
            raise ValueError("dtype='float16' needs device='cuda': numpy emulates float16 arithmetic in software, "
                             "so on the CPU it is many times slower than float32 and saves nothing worth it; "
                             "use dtype='float32' on the CPU")
        if self.init_from not in ("scratch", "resume"):
            raise ValueError(f"init_from must be 'scratch' or 'resume', got {self.init_from!r}")
        for name in ("eval_interval", "log_interval", "eval_iters", "gradient_accumulation_steps", "batch_size",
                     "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_iters < 0:
            raise ValueError(f"max_iters must be >= 0, got {self.max_iters}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = one per CPU core), got {self.workers}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0.0 turns clipping off), got {self.grad_clip}")
        if self.decay_lr and self.lr_decay_iters <= self.warmup_iters:
            raise ValueError(f"lr_decay_iters ({self.lr_decay_iters}) must be greater than warmup_iters "
                             f"({self.warmup_iters}) when decay_lr is on")
        if self.decay_lr and not 0 <= self.min_lr <= self.learning_rate:
            raise ValueError(f"need 0 <= min_lr <= learning_rate, got min_lr={self.min_lr}, "
                             f"learning_rate={self.learning_rate}")
        if self.peak_flops is not None and not self.peak_flops > 0:
            raise ValueError(f"peak_flops must be positive (or None for the device's assumed peak), got "
                             f"{self.peak_flops}")

    def worker_count(self):
        """How many data-parallel workers train() uses: `workers`, or one per usable core on the cpu, 1 on cuda."""
        if self.workers:
            return self.workers
        return usable_cores() if self.device == "cpu" else 1

    def check_memory(self, vocab_size):
        """Raise a clear error when one micro-batch's activations cannot fit in this machine's memory (cpu).

        A rough count of the float32 arrays forward keeps for backward: per layer the attention weights
        (B·H·T², twice with dropout's copy) and about 34 numbers per token and channel (q, k, v, the MLP's 4C
        activations and GELU's saved values, LayerNorm outputs...), plus the logits and their softmax (B·T·V, twice).
        """
        if self.device != "cpu" or not hasattr(os, "sysconf"):
            return
        B, T, C, L, H = self.batch_size, self.block_size, self.n_embd, self.n_layer, self.n_head
        needed = 4 * (L * (2 * B * H * T * T + 34 * B * T * C) + 2 * B * T * vocab_size)
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if needed > available:
            raise ValueError(f"batch_size {B} × block_size {T} with {L} layers needs about {needed / 2**30:.0f} GiB "
                             f"for one micro-batch's activations (attention alone grows as block_size²), more than "
                             f"this machine's {available / 2**30:.0f} GiB: lower --block-size or --batch-size")

    def model_config(self, vocab_size):
        """The GPTConfig these settings describe, for a vocabulary of `vocab_size` characters."""
        return GPTConfig(block_size=self.block_size, vocab_size=vocab_size, n_layer=self.n_layer, n_head=self.n_head,
                         n_embd=self.n_embd, dropout=self.dropout, bias=self.bias)


# nanoGPT's README, "I only have a macbook": the same recipe, scaled down to run on a CPU in minutes
CPU_OVERRIDES = dict(eval_iters=20, log_interval=10, block_size=64, batch_size=12, n_layer=4, n_head=4, n_embd=128,
                     max_iters=2000, lr_decay_iters=2000, dropout=0.0)


def gpu_preset():
    """nanoGPT's shakespeare_char config: 6 layers, 6 heads, 384 wide, 256 characters of context, on cuda."""
    return TrainConfig(device="cuda")


def cpu_preset():
    """nanoGPT's CPU version of it: 4 layers, 4 heads, 128 wide, 64 characters of context, 2000 iterations
    (nanoGPT reports a val loss of about 1.88 at the end)."""
    return TrainConfig(device="cpu", **CPU_OVERRIDES)


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


def assumed_peak_flops(config):
    """The peak the MFU is measured against when config.peak_flops is not given. Assumptions, stated here:
      cpu   100 GFLOP/s per usable core: the float32 matrix-multiply rate bench/train_step.py measured for numpy's
            OpenBLAS on this project's 2-core AMD EPYC machine (AVX2 FMA at about 3 GHz); close to PyTorch's
      cuda  67 TFLOP/s: NVIDIA H200 float32 without tensor cores (datasheet), the dtype this engine trains in
    """
    return config.peak_flops or (100e9 * usable_cores() if config.device == "cpu" else 67e12)


def estimate_mfu(model, config, seconds_per_iter):
    """Model FLOPs utilisation: achieved FLOP/s over the peak (nanoGPT's estimate_mfu, PaLM appendix B).

    Per token, forward + backward cost about 6N FLOPs for the N weights (2 per multiply-add forward, 4 backward)
    plus 12·L·H·Q·T for attention over T positions (L layers, H heads, Q head size).
    """
    cfg = model.config
    N = model.num_parameters() - model.transformer.wpe.weight.size  # nanoGPT counts without position embeddings
    L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.block_size
    flops_per_token = 6 * N + 12 * L * H * Q * T
    flops_per_iter = flops_per_token * T * config.batch_size * config.gradient_accumulation_steps
    return flops_per_iter / seconds_per_iter / assumed_peak_flops(config)


def train(config, dataset=None, log=print, progress=False):
    """Train (or resume, or only evaluate) as `config` says; returns a TrainResult.

    dataset   a CharDataset; tiny Shakespeare by default
    log       called with each line of text (print by default)
    progress  draw a progress bar on stderr
    """
    started_at = time.time()
    checkpoint_path = os.path.join(config.out_dir, CHECKPOINT_NAME)
    if os.path.exists(config.out_dir) and not os.path.isdir(config.out_dir):
        raise CheckpointError(f"out_dir {config.out_dir!r} is a file, not a folder: checkpoints could not be saved")
    # a fresh run's first save would overwrite an earlier run's checkpoint: that one is then kept under a dated name
    keep_earlier_checkpoint = config.init_from == "scratch" and os.path.exists(checkpoint_path)

    # ---- 1. initialisation ----
    dataset = dataset if dataset is not None else CharDataset()
    model_config = config.model_config(dataset.tokenizer.vocab_size)
    model = GPT(model_config, device=config.device, seed=config.seed)
    log(f"number of parameters: {model.num_parameters() / 1e6:.2f}M ({model.num_parameters():,})")
    # nanoGPT's configure_optimizers: weight decay for matrices, none for biases and LayerNorm gains
    optimizer = AdamW(weight_decay_groups(model.named_parameters(), config.weight_decay), lr=config.learning_rate,
                      betas=(config.beta1, config.beta2))
    # float16: the forward and backward run on a float16 copy of the model, while the optimizer updates the float32
    # weights (float16 cannot hold a small update to a weight: 1 - lr·wd rounds to 1). The scaler lifts the tiny
    # float16 gradients out of underflow; 2^15, not 2^16, because 65536 itself overflows float16 (max 65504).
    scaler = GradScaler(init_scale=2.0 ** 15, enabled=config.dtype == "float16")
    half_model = GPT(replace(model_config, dtype="float16"), config.device, config.seed) \
        if config.dtype == "float16" else None
    compute_model = half_model if half_model is not None else model
    # use every CPU core: each worker (a process, tinygrad_ed/process_parallel.py) runs forward and backward on a
    # slice of the batch, and their gradients are summed into the model's, as one big forward and backward would be
    runner = data_parallel(compute_model, config.worker_count())
    batch_generator = np.random.default_rng(config.seed)  # which windows of text each training batch holds
    iter_num, best_val_loss = 0, math.inf
    if config.init_from == "resume":
        iter_num, best_val_loss = _resume(checkpoint_path, model, optimizer, scaler, batch_generator,
                                          compute_model.dropout_generator, model_config, dataset)
        log(f"resumed from {checkpoint_path} at iteration {iter_num} (best val loss {best_val_loss:.4f})")
    params = model.parameters()

    bar = ProgressBar(config.max_iters, start=iter_num) if progress else None

    def say(message):  # a log line must not land in the middle of the progress bar's line
        if bar is not None:
            bar.clear()
        log(message)

    evals, logs, saved_at = [], [], []
    last_loss = None
    step_seconds, steps_timed, total_step_seconds, total_steps = 0.0, 0, 0.0, 0
    # the first batch; every later one is fetched during the step before it. The generator's state before the
    # draw is what a checkpoint stores, so that a resumed run draws this same pending batch again
    batch_state, X, Y = _next_batch(dataset, config, batch_generator)

    # ---- 2. the main loop ----
    while True:
        # step 2.1: this iteration's learning rate, on every parameter group
        lr = get_lr(iter_num, config.learning_rate, config.warmup_iters, config.lr_decay_iters, config.min_lr) \
            if config.decay_lr else config.learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr

        # step 2.6: evaluate every eval_interval iterations and after the last; checkpoint when val loss improves
        if iter_num % config.eval_interval == 0 or iter_num == config.max_iters or config.eval_only:
            losses = estimate_loss(runner if half_model is None else model, dataset, config)
            say(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            evals.append((iter_num, losses["train"], losses["val"]))
            if not (math.isfinite(losses["train"]) and math.isfinite(losses["val"])):
                raise TrainingDiverged(iter_num, f"the estimated loss is train {losses['train']}, val "
                                       f"{losses['val']}", config, checkpoint_path)
            improved = losses["val"] < best_val_loss
            best_val_loss = min(best_val_loss, losses["val"])
            # nothing is learned at iteration 0, and eval_only must not touch the checkpoint it evaluates
            if (improved or config.always_save_checkpoint) and iter_num > 0 and not config.eval_only:
                if keep_earlier_checkpoint:
                    kept_as = os.path.join(config.out_dir, time.strftime("ckpt-previous-%Y%m%d-%H%M%S.npz"))
                    os.replace(checkpoint_path, kept_as)
                    keep_earlier_checkpoint = False
                    say(f"{checkpoint_path} held an earlier run's checkpoint: kept as {kept_as}")
                generators = {"batch": batch_state, "dropout": _generator_state(compute_model.dropout_generator)}
                save_checkpoint(checkpoint_path, model, optimizer, scaler, iter_num, best_val_loss, config,
                                model_config, dataset.tokenizer, generators)
                saved_at.append(iter_num)
                say(f"saved checkpoint to {checkpoint_path}")
        if iter_num >= config.max_iters or config.eval_only:
            break

        step_started = time.time()
        log_now = iter_num % config.log_interval == 0
        if half_model is not None:  # float16: the forward pass uses float16 copies of the current float32 weights
            _copy_weights(model, half_model)

        # step 2.2: gradient accumulation over gradient_accumulation_steps micro-batches
        for _ in range(config.gradient_accumulation_steps):
            # a) forward (the logits are not needed here). Divide the loss so that the summed gradients are the
            #    mean over the micro-batches, not their sum
            _, loss = runner(X, Y)
            loss = loss / config.gradient_accumulation_steps
            # b) fetch the next batch now: on a GPU the host prepares it while the device still computes
            batch_state, X, Y = _next_batch(dataset, config, batch_generator)
            # c) backward: gradients add up (+=) across micro-steps. The scaling happens in float32, where
            #    S·loss cannot overflow (float32(x) is x itself when the loss is float32 already)
            scaler.scale(loss.float()).backward()
        if half_model is not None:  # float16: the float32 weights take the float16 gradients
            _move_gradients(half_model, model)

        # step 2.3: clip the global gradient norm, on unscaled gradients; on log iterations measure it regardless
        grad_norm = None
        if config.grad_clip != 0.0 or log_now:
            scaler.unscale_(optimizer)
            grad_norm = clip_grad_norm_(params, config.grad_clip) if config.grad_clip != 0.0 \
                else global_grad_norm(params)
        weights_before = [param.data.copy() for param in params] if log_now else None  # for the update ratio

        # step 2.4: the update (the scaler skips it when a float16 gradient overflowed), then adapt the scale
        stepped = scaler.step(optimizer)
        scaler.update()
        # step 2.5: drop the gradients, so the next backward starts from zero
        optimizer.zero_grad(set_to_none=True)

        # step 2.7: log. Reading the loss back waits for the device, so it happens only on log iterations
        if log_now:
            last_loss = loss.item() * config.gradient_accumulation_steps  # undo the division of step 2.2
            norm = grad_norm.item()
            # health check (part 5): a float16 step the scaler skipped has an inf norm by design, not divergence
            if stepped and not (math.isfinite(last_loss) and math.isfinite(norm)):
                raise TrainingDiverged(iter_num, f"loss {last_loss}, gradient norm {norm}", config,
                                       checkpoint_path)
        seconds = time.time() - step_started  # measured after the read-back, so it includes the device's work
        step_seconds, steps_timed = step_seconds + seconds, steps_timed + 1
        total_step_seconds, total_steps = total_step_seconds + seconds, total_steps + 1
        if log_now:
            ratio = update_ratio(params, weights_before) if stepped else 0.0
            seconds_per_iter = step_seconds / steps_timed  # the mean since the last log line
            tokens_per_iter = config.batch_size * config.block_size * config.gradient_accumulation_steps
            mfu = estimate_mfu(model, config, seconds_per_iter)
            say(f"iter {iter_num}: loss {last_loss:.4f}, lr {lr:.2e}, {seconds_per_iter * 1000:.1f} ms/iter, "
                f"{tokens_per_iter / seconds_per_iter:.0f} tok/s, grad norm {norm:.3f}, update/param {ratio:.1e}"
                + f", mfu {mfu * 100:.1f}% of {assumed_peak_flops(config) / 1e9:,.0f} GFLOP/s"
                + ("" if stepped else " (float16 overflow: step skipped, loss scale lowered)"))
            logs.append((iter_num, last_loss))
            step_seconds, steps_timed = 0.0, 0

        iter_num += 1
        if bar is not None:
            bar.update(iter_num, last_loss)

    if bar is not None:
        bar.close()
    return TrainResult(iter_num=iter_num, evals=evals, logs=logs, best_val_loss=best_val_loss,
                       elapsed_s=time.time() - started_at,
                       ms_per_iter=total_step_seconds / total_steps * 1000 if total_steps else math.nan,
                       model=model, optimizer=optimizer, tokenizer=dataset.tokenizer,
                       checkpoint_path=checkpoint_path, saved_at=saved_at)


def _next_batch(dataset, config, generator):
    """(the generator's state before the draw, X, Y): a training batch, and how to draw it again."""
    state = generator.bit_generator.state
    X, Y = dataset.get_batch("train", config.batch_size, config.block_size, generator, config.device)
    return state, X, Y


def _resume(path, model, optimizer, scaler, batch_generator, dropout_generator, model_config, dataset):
    """Load a checkpoint into the fresh objects; returns (iter_num, best_val_loss)."""
    checkpoint = load_checkpoint(path, model_config=model_config)
    if checkpoint.tokenizer.chars != dataset.tokenizer.chars:
        raise CheckpointError(f"checkpoint {path!r} was trained on another vocabulary "
                              f"({checkpoint.tokenizer.vocab_size} characters) than this data set's "
                              f"({dataset.tokenizer.vocab_size}): its token ids would mean other characters")
    restore(checkpoint, model, optimizer, scaler)
    try:
        batch_generator.bit_generator.state = checkpoint.generators["batch"]
        # a numpy dropout generator continues its stream; a cupy one (cuda) cannot be saved and starts afresh
        if checkpoint.generators["dropout"] is not None and isinstance(dropout_generator, np.random.Generator):
            dropout_generator.bit_generator.state = checkpoint.generators["dropout"]
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path!r} has unusable random generator states: {error}") from error
    return checkpoint.iter_num, checkpoint.best_val_loss


def _generator_state(generator):
    """A numpy generator's state (JSON-able); None for a cupy generator, whose state cannot be saved."""
    return generator.bit_generator.state if isinstance(generator, np.random.Generator) else None


def _copy_weights(source, target):
    """target's weights = source's, cast to target's dtype (float32 -> float16)."""
    for (_, source_param), (_, target_param) in zip(source.named_parameters(), target.named_parameters()):
        target_param.data[...] = source_param.data


def _move_gradients(source, target):
    """target's gradients = source's, cast to target's dtype (float16 -> float32); source's are dropped."""
    for (_, source_param), (_, target_param) in zip(source.named_parameters(), target.named_parameters()):
        target_param.grad = None if source_param.grad is None else source_param.grad.astype(target_param.dtype)
        source_param.grad = None


def update_ratio(params, weights_before):
    """Mean over parameters of ‖Δp‖ / ‖p‖ for the step just taken (part 5: healthy is about 1e-3 to 1e-2).

    A parameter that was all zeros (a fresh bias) has no size to compare its step with, and is left out.
    """
    xp = params[0].xp
    sizes = xp.stack([xp.linalg.norm(before) for before in weights_before])                          # ‖p‖
    steps = xp.stack([xp.linalg.norm(param.data - old) for param, old in zip(params, weights_before)])  # ‖Δp‖
    nonzero = sizes > 0
    return float((steps[nonzero] / sizes[nonzero]).mean()) if bool(nonzero.any()) else math.nan
