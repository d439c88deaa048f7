"""The settings of a training run: TrainConfig, the CPU and GPU presets, and the command-line flags made from them.

Every field carries its reason in `setting(default, why)`: the one text that both this file and
`python examples/train_char_gpt.py --help` show. The defaults are nanoGPT's config/train_shakespeare_char.py;
cpu_preset() applies the CPU overrides from nanoGPT's README.
"""
import argparse
import copy
import math
import os
from dataclasses import dataclass, field, fields, replace
from typing import Optional

from gpt.checkpoint import CHECKPOINT_NAME, load_checkpoint
from gpt.model import GPTConfig
from tinygrad_ed.device import DEVICES, cuda_available
from tinygrad_ed.distributed import BACKENDS, default_backend, launched_by_mpi
from tinygrad_ed.distributed.local import usable_cores


DTYPES = ("float32", "float16")
INIT_FROM = ("scratch", "resume")
# what a resumed run takes from this machine (and this command line), not from the checkpoint
MACHINE_SETTINGS = ("device", "workers", "backend", "tensorboard")
# a rank slice smaller than this many tokens costs more in meeting the other ranks than its share of the work saves:
# an automatic worker count stays below batch_size × block_size / MIN_SLICE_TOKENS
MIN_SLICE_TOKENS = 256


def setting(default, why, choices=None):
    """A TrainConfig field: its default, why it exists (its --help text), and the values allowed, if a fixed set."""
    return field(default=default, metadata={"help": why, "choices": choices})


@dataclass
class TrainConfig:
    """Every knob of the run. The defaults are nanoGPT's config/train_shakespeare_char.py (a small GPT, sized for
    a GPU); cpu_preset() applies the CPU overrides from nanoGPT's README."""
    # I/O
    out_dir: str = setting("out-shakespeare-char", "where ckpt.npz goes, relative to the current directory")
    eval_interval: int = setting(250, "estimate train/val loss (and maybe checkpoint) every this many iterations")
    log_interval: int = setting(10, "print a log line every this many iterations (the loss is read back only then)")
    eval_iters: int = setting(200, "batches per split averaged by one estimate: more is less noisy, and slower")
    eval_only: bool = setting(False, "evaluate once (e.g. a resumed checkpoint) and stop, without training")
    always_save_checkpoint: bool = setting(False, "save at every evaluation, not only when val loss improves "
                                                  "(nanoGPT keeps it off for Shakespeare: the small data set "
                                                  "overfits later on)")
    health_png: bool = setting(True, "draw out_dir/health.png, part 5's checks against iteration, at evaluations "
                                     "and at the end (needs matplotlib: pip install -e '.[plot]')")
    tensorboard: Optional[str] = setting(None, "write TensorBoard event files into this folder (rank 0 only): the "
                                               "log line's numbers, the evaluations, and every eval_interval each "
                                               "parameter's weight and gradient histograms under nanoGPT's names "
                                               "(needs tensorboardX: pip install -e '.[tensorboard]'); view them "
                                               "with tensorboard --logdir DIR. Not restored on --resume")
    init_from: str = setting("scratch", "scratch: a new model; resume: continue from out_dir/ckpt.npz",
                             choices=INIT_FROM)
    # data
    gradient_accumulation_steps: int = setting(1, "micro-batches summed into one update: a larger batch in less "
                                                  "memory")
    batch_size: int = setting(64, "sequences per micro-batch (B)")
    block_size: int = setting(256, "characters of context per sequence (T)")
    # model
    n_layer: int = setting(6, "transformer blocks")
    n_head: int = setting(6, "attention heads per block")
    n_embd: int = setting(384, "width of every token's vector (C)")
    dropout: float = setting(0.2, "regularisation against overfitting; 0.0 when the model is small")
    bias: bool = setting(False, "biases in Linear and LayerNorm; nanoGPT trains without (better, faster)")
    # the updates, grouped as nanoGPT's config does: how many, AdamW (step 2.4), clipping (step 2.3)
    learning_rate: float = setting(1e-3, "peak learning rate; a small model can take a large one")
    max_iters: int = setting(5000, "total number of updates")
    weight_decay: float = setting(1e-1, "AdamW's decoupled shrinkage of the weight matrices")
    beta1: float = setting(0.9, "momentum: how long AdamW remembers the gradient's direction")
    beta2: float = setting(0.99, "how long AdamW remembers the gradient's size (0.99: few tokens per step)")
    grad_clip: float = setting(1.0, "clip the global gradient norm to this (step 2.3); 0.0 turns clipping off")
    # learning-rate schedule (step 2.1)
    decay_lr: bool = setting(True, "warmup + cosine decay; off keeps learning_rate constant")
    warmup_iters: int = setting(100, "linear warmup while AdamW's running averages are still poor estimates")
    lr_decay_iters: Optional[int] = setting(None, "the cosine ends here; none: at max_iters (at least warmup_iters "
                                                  "+ 1), as nanoGPT sets it")
    min_lr: float = setting(1e-4, "the rate at the end of the decay, about learning_rate / 10")
    # system
    device: str = setting("cpu", "cpu (numpy) or cuda (cupy); train_char_gpt.py picks cuda if it sees a GPU",
                          choices=DEVICES)
    dtype: str = setting("float32", "float16 runs forward/backward in half precision with loss scaling (cuda)",
                         choices=DTYPES)
    seed: int = setting(1337, "seeds the weights, the batches and dropout: the same seed, the same run")
    workers: int = setting(0, "ranks (processes) that split each batch, with the local backend; 0 = one per CPU "
                              "core (fewer for a small batch; 1 on cuda). Under mpiexec, its -n decides")
    backend: str = setting("auto", "how the ranks meet (tinygrad_ed/distributed): local = processes this program "
                                   "starts, mpi = the processes mpiexec starts, nccl = one process per GPU; auto: "
                                   "nccl on cuda, mpi under mpiexec, else local", choices=("auto",) + BACKENDS)
    peak_flops: Optional[float] = setting(None, "the device's peak FLOP/s for the MFU in the log; none: "
                                                "assumed_peak_flops(). An assumption you state, not a "
                                                "measurement: e.g. 312e12 (A100 bf16 tensor cores, nanoGPT's "
                                                "reference), 19.5e12 (A100 plain float32)")

    def __post_init__(self):
        """Check every setting (type, finiteness, range, combinations) before any work, naming the flag."""
        for item in fields(self):
            _check_type(self, item)
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float16', got {self.dtype!r}")
        if self.init_from not in INIT_FROM:
            raise ValueError(f"init_from must be 'scratch' or 'resume', got {self.init_from!r}")
        if self.dtype == "float16" and self.device != "cuda":
            raise ValueError("dtype='float16' needs device='cuda': numpy emulates float16 arithmetic in software, "
                             "so on the CPU it is many times slower than float32 and saves nothing worth it; "
                             "use dtype='float32' on the CPU")
        _require(self, "out_dir", self.out_dir.strip() != "", "a folder's path, not empty")
        if self.tensorboard is not None:
            _require(self, "tensorboard", self.tensorboard.strip() != "", "a folder's path, not empty")
        for name in ("eval_interval", "log_interval", "eval_iters", "gradient_accumulation_steps", "batch_size",
                     "block_size", "n_layer", "n_head", "n_embd"):
            _require(self, name, getattr(self, name) >= 1, "at least 1")
        for name in ("max_iters", "warmup_iters", "seed"):
            _require(self, name, getattr(self, name) >= 0, ">= 0")
        _require(self, "seed", self.seed < 2 ** 63, "below 2**63")
        _require(self, "workers", self.workers >= 0, ">= 0 (0 = one per CPU core)")
        _require(self, "backend", self.backend in ("auto",) + BACKENDS, f"one of auto, {', '.join(BACKENDS)}")
        backend = self.backend_used()
        if backend == "nccl" and self.device != "cuda":
            raise ValueError("backend 'nccl' sums gradients on GPUs: it needs device='cuda'; on the cpu use 'local' "
                             "or 'mpi'")
        if backend in ("local", "mpi") and self.device == "cuda":
            raise ValueError(f"backend {backend!r} sums numpy arrays on the cpu; on cuda use 'nccl' (several GPUs: "
                             f"mpiexec -n <GPUs> python examples/train_char_gpt.py --device cuda)")
        if backend == "local" and self.worker_count() > 1 and not hasattr(os, "fork"):
            raise ValueError(f"workers {self.workers}: the local backend forks its ranks, and this OS has no "
                             f"os.fork; use --workers 1 (one process), or start the ranks with mpiexec")
        _require(self, "workers", self.worker_count() <= self.batch_size,
                 f"at most batch_size ({self.batch_size}): every rank needs at least one sequence of each batch")
        _require(self, "dropout", 0 <= self.dropout < 1, "in [0, 1)")
        _require(self, "learning_rate", self.learning_rate > 0, "> 0")
        _require(self, "weight_decay", self.weight_decay >= 0, ">= 0")
        _require(self, "beta1", 0 <= self.beta1 < 1, "in [0, 1)")
        _require(self, "beta2", 0 <= self.beta2 < 1, "in [0, 1)")
        _require(self, "grad_clip", self.grad_clip >= 0, ">= 0 (0.0 turns clipping off)")
        if self.lr_decay_iters is not None:
            _require(self, "lr_decay_iters", self.lr_decay_iters >= 1, "at least 1 (or none: at max_iters)")
        if self.decay_lr and self.decay_iters <= self.warmup_iters:
            raise ValueError(f"lr_decay_iters ({self.lr_decay_iters}) must be greater than warmup_iters "
                             f"({self.warmup_iters}) when decay_lr is on")
        if self.decay_lr and not 0 <= self.min_lr <= self.learning_rate:
            raise ValueError(f"need 0 <= min_lr <= learning_rate, got min_lr={self.min_lr}, "
                             f"learning_rate={self.learning_rate}")
        if self.peak_flops is not None and not self.peak_flops > 0:
            raise ValueError(f"peak_flops must be positive (or None for the device's assumed peak), got "
                             f"{self.peak_flops}")

    @property
    def decay_iters(self):
        """Where the cosine ends: lr_decay_iters, or when none is set max_iters (but after the warmup)."""
        if self.lr_decay_iters is not None:
            return self.lr_decay_iters
        return max(self.max_iters, self.warmup_iters + 1)

    def resolved(self):
        """These settings with the defaults that depend on others (or on the machine) filled in as this run uses
        them: lr_decay_iters, the world size and the backend. A checkpoint saves these."""
        used = copy.copy(self)  # not replace(): these settings were checked when they were made
        used.lr_decay_iters, used.workers, used.backend = self.decay_iters, self.worker_count(), self.backend_used()
        return used

    def notes(self):
        """What these settings do that a user may not expect, one sentence each (train() prints them)."""
        notes = []
        if self.decay_lr and self.max_iters <= self.warmup_iters:
            notes.append(f"max_iters {self.max_iters} <= warmup_iters {self.warmup_iters}: the whole run is warmup, "
                         f"and the learning rate never reaches learning_rate {self.learning_rate:g}; lower "
                         f"--warmup-iters for a short run")
        cores = usable_cores()
        if self.backend_used() == "local" and self.worker_count() > cores:
            notes.append(f"workers {self.worker_count()} on {cores} usable CPU cores: the workers take turns on the "
                         f"cores, and each step is slower than with --workers {cores}")
        return notes

    def backend_used(self):
        """The transport the ranks meet through: `backend`, or for auto, tinygrad_ed.distributed's default."""
        return default_backend(self.device) if self.backend == "auto" else self.backend

    def worker_count(self):
        """The run's world size: mpiexec's -n under mpiexec; else `workers`, or on the cpu one per usable core (but
        no rank slice under MIN_SLICE_TOKENS tokens, and 1 where the OS cannot fork), 1 on cuda."""
        if launched_by_mpi():
            return int(os.environ.get("PMI_SIZE") or os.environ["OMPI_COMM_WORLD_SIZE"])
        if self.workers:
            return self.workers
        if self.device != "cpu" or not hasattr(os, "fork"):
            return 1
        return max(1, min(usable_cores(), self.batch_size, self.batch_size * self.block_size // MIN_SLICE_TOKENS))

    def tokens_per_iter(self):
        """Tokens one update learns from: batch_size × block_size × gradient_accumulation_steps."""
        return self.batch_size * self.block_size * self.gradient_accumulation_steps

    def check_memory(self, vocab_size):
        """Raise a clear error when the run cannot fit in the memory this process may use (cpu), before any work.

        A rough count of float32 arrays: the weights, AdamW's m and v, and a gradient per data-parallel worker plus
        the summed one; and what one micro-batch's forward keeps for backward: per layer the attention weights
        (B·H·T², twice with dropout's copy) and about 34 numbers per token and channel (q, k, v, the MLP's 4C
        activations and GELU's saved values, LayerNorm outputs...), plus the logits and their softmax (B·T·V, twice).
        """
        if self.device != "cpu" or not hasattr(os, "sysconf"):
            return
        B, T, C, L, H = self.batch_size, self.block_size, self.n_embd, self.n_layer, self.n_head
        parameters = vocab_size * C + T * C + L * 12 * C * C
        state = 4 * parameters * (3 + self.worker_count() + 1)
        activations = 4 * (L * (2 * B * H * T * T + 34 * B * T * C) + 2 * B * T * vocab_size)
        available, limit = available_memory()
        if state + activations > available:
            raise ValueError(f"this model and batch need about {(state + activations) / 2**30:.1f} GiB, more than the "
                             f"{available / 2**30:.1f} GiB {limit}: {parameters / 1e6:,.0f}M parameters with their "
                             f"gradients and AdamW state take {state / 2**30:.1f} GiB (lower --n-embd or --n-layer), "
                             f"one micro-batch's activations {activations / 2**30:.1f} GiB (attention grows as "
                             f"block_size²: lower --block-size or --batch-size)")

    def model_config(self, vocab_size):
        """The GPTConfig these settings describe, for a vocabulary of `vocab_size` characters."""
        return GPTConfig(block_size=self.block_size, vocab_size=vocab_size, n_layer=self.n_layer, n_head=self.n_head,
                         n_embd=self.n_embd, dropout=self.dropout, bias=self.bias)


# the Python type a field's value must have; int is accepted where a float is meant (1 for 1.0), bool nowhere else
_NUMBER_TYPES = {int: (int,), float: (int, float), Optional[float]: (int, float), Optional[int]: (int,)}


def _flag(name):
    return "--" + name.replace("_", "-")


def _require(config, name, condition, requirement):
    if not condition:
        raise ValueError(f"{name} must be {requirement}, got {getattr(config, name)!r} ({_flag(name)})")


def _check_type(config, item):
    """A field's value has its declared type, and a number is finite (nan and inf are refused: they would only show
    up later, as a diverged run)."""
    value = getattr(config, item.name)
    if item.type in (Optional[float], Optional[int], Optional[str]) and value is None:
        return
    if item.type in (bool, str, Optional[str]):
        kind = bool if item.type is bool else str
        if not isinstance(value, kind):
            raise TypeError(f"{item.name} must be a {kind.__name__}, got {value!r} ({_flag(item.name)})")
        return
    if isinstance(value, bool) or not isinstance(value, _NUMBER_TYPES[item.type]):
        kind = "an integer" if item.type in (int, Optional[int]) else "a number"
        raise TypeError(f"{item.name} must be {kind}, got {value!r} ({_flag(item.name)})")
    if not math.isfinite(value):
        raise ValueError(f"{item.name} must be a finite number, got {value!r} ({_flag(item.name)})")


def available_memory():
    """(bytes, what limits them): the least of this machine's memory, this process's address-space limit
    (ulimit -v) and its cgroup's limit (a container's)."""
    import resource  # POSIX, as os.sysconf: check_memory asks only where sysconf exists
    limits = [(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "of this machine's memory")]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append((soft, "this process may address (ulimit -v)"))
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as file:
                text = file.read().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append((int(text), "its container allows (cgroup)"))
    return min(limits)


def assumed_peak_flops(config):
    """The peak the MFU is measured against when config.peak_flops is not given. Assumptions, stated here:
      cpu   100 GFLOP/s per usable core: the float32 matrix-multiply rate bench/train_step.py measured for numpy's
            OpenBLAS on this project's 2-core AMD EPYC machine (AVX2 FMA at about 3 GHz); close to PyTorch's
      cuda  67 TFLOP/s: NVIDIA H200 float32 without tensor cores (datasheet), the dtype this engine trains in
    """
    return config.peak_flops or (100e9 * usable_cores() if config.device == "cpu" else 67e12)


# nanoGPT's README, "I only have a macbook": the same recipe, scaled down to run on a CPU in minutes
CPU_OVERRIDES = dict(eval_iters=20, log_interval=10, block_size=64, batch_size=12, n_layer=4, n_head=4, n_embd=128,
                     max_iters=2000, dropout=0.0)


def gpu_preset():
    """nanoGPT's shakespeare_char config: 6 layers, 6 heads, 384 wide, 256 characters of context, on cuda."""
    return TrainConfig(device="cuda")


def cpu_preset():
    """nanoGPT's CPU version of it: 4 layers, 4 heads, 128 wide, 64 characters of context, 2000 iterations
    (nanoGPT reports a val loss of about 1.88 at the end)."""
    return TrainConfig(device="cpu", **CPU_OVERRIDES)


# ----------------------------------------------------------------------------------------------------------
# the command line: one flag per field

def _optional_float(text):
    """A number, or "none" for None (peak_flops)."""
    return None if text.lower() == "none" else float(text)


def _optional_int(text):
    """An integer, or "none" for None (lr_decay_iters)."""
    return None if text.lower() == "none" else int(text)


_FLAG_TYPES = {int: int, float: float, str: str, Optional[float]: _optional_float, Optional[int]: _optional_int,
               Optional[str]: str}  # a folder (tensorboard): None, the default, is the flag not given


def add_flags(parser):
    """One flag per TrainConfig field, spelled with dashes (--max-iters) or, as nanoGPT's, underscores (--max_iters);
    booleans are --flag / --no-flag. Each help is the field's reason and both presets' values. A flag that is not
    given stays out of the parsed arguments, so that the preset (or the resumed checkpoint) decides."""
    cpu, gpu = cpu_preset(), gpu_preset()
    for item in fields(TrainConfig):
        names = ["--" + item.name.replace("_", "-")] + (["--" + item.name] if "_" in item.name else [])
        on_cpu, on_gpu = getattr(cpu, item.name), getattr(gpu, item.name)
        presets = f"both presets: {on_cpu!r}" if on_cpu == on_gpu else f"cpu preset: {on_cpu!r}, cuda preset: " \
                                                                           f"{on_gpu!r}"
        options = dict(default=argparse.SUPPRESS, dest=item.name, choices=item.metadata["choices"],
                       help=f"{item.metadata['help']} ({presets})".replace("%", "%%"))
        if item.type is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = _FLAG_TYPES[item.type]
        parser.add_argument(*names, **options)


def make_config(overrides):
    """The TrainConfig for a command line: the preset of the device (cuda where cupy sees a GPU, else cpu), or when
    resuming the settings saved in the checkpoint, with `overrides` ({field: value}, the flags given) on top."""
    overrides = dict(overrides)
    device = overrides.pop("device", None) or ("cuda" if cuda_available() else "cpu")
    if overrides.get("init_from") == "resume":
        # continue with the settings the run was saved with; the device and the ranks are this machine's
        path = os.path.join(overrides.get("out_dir", TrainConfig.out_dir), CHECKPOINT_NAME)
        saved = load_checkpoint(path).train_config  # the whole file is checked here, before any work
        known = {item.name for item in fields(TrainConfig)}
        base = {name: value for name, value in saved.items() if name in known and name not in MACHINE_SETTINGS}
        return TrainConfig(**{**base, "device": device, **overrides})
    return replace(cpu_preset() if device == "cpu" else gpu_preset(), **{"device": device, **overrides})
