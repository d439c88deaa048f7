"""What every benchmark here shares, once: the model sizes, our training step at a size, taking turns, the machine's
load, the FLOP count, step servers in processes of their own, and the results files.

- Sizes: SIZES and dims() below, from the training presets; vocabulary 65 (tiny Shakespeare's characters), float32,
  dropout 0, no biases (as the presets and nanoGPT's shakespeare_char); the presets' optimizer settings.
- The step: OurStep is gpt/step.py's train_step, the one every run calls, with those settings and the batch split
  over data-parallel workers as train() splits it.
- Turns: a shared machine is faster or slower for minutes at a time, more than most changes move a step. So what is
  compared runs side by side and takes turns (`in_turns`), the order flipped every round; a slow spell then slows
  both alike, and the ratio of their medians is what the difference did.
- Load: `cpu_snapshot` / `other_load` measure how many cores processes outside the benchmark kept busy.
- FLOPs: nanoGPT's estimate_mfu count, gpt/model.py's GPT.flops_per_token.

Run a benchmark as python bench/NAME.py from anywhere: importing this module puts the repository on sys.path.
"""
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(1, str(REPO_ROOT))  # gpt, optim and tinygrad_ed, for a script run from anywhere (after bench/)

SIZES = ("tiny", "cpu", "baby")
VOCAB_SIZE = 65
PHASES = ("forward", "backward", "clip", "update")
QUIET_LOAD = 0.2  # cores busy with other processes above which timings are flagged as disturbed


def dims(size):
    """(n_layer, n_head, n_embd, block_size, batch_size) of a size. The gpt imports are here, not at the top (see
    OurStep).
      tiny  the chapter's debugging GPT (examples/debug_training.py: 2 layers, 2 heads, 64 wide, 16 characters), batch 4
      cpu   cpu_preset(), nanoGPT's CPU recipe: examples/train_char_gpt.py's default run
      baby  gpu_preset(), nanoGPT's shakespeare_char model, at batch 8 instead of 64 (a CPU takes seconds per step)"""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}: choose from {', '.join(SIZES)}")
    if size == "tiny":
        return 2, 2, 64, 16, 4
    from gpt.config import cpu_preset, gpu_preset
    preset = cpu_preset() if size == "cpu" else gpu_preset()
    return preset.n_layer, preset.n_head, preset.n_embd, preset.block_size, preset.batch_size if size == "cpu" else 8


def optimizer_settings():
    """(lr, betas, weight_decay, grad_clip): the presets' (TrainConfig's defaults), nanoGPT's shakespeare_char."""
    from gpt.config import TrainConfig
    config = TrainConfig()
    return config.learning_rate, (config.beta1, config.beta2), config.weight_decay, config.grad_clip


def model_spec(size, bias=False):
    """GPTConfig's fields for a size, as a dict: both engines (ours, bench/torch_reference.py) build from it."""
    n_layer, n_head, n_embd, block_size, _ = dims(size)
    return dict(block_size=block_size, vocab_size=VOCAB_SIZE, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                dropout=0.0, bias=bias)


def flops_per_iter(size):
    """FLOPs of one iteration (forward + backward) at a size, by nanoGPT's count."""
    from gpt import GPT, GPTConfig
    tokens = dims(size)[3] * dims(size)[4]
    return GPT(GPTConfig(**model_spec(size))).flops_per_token() * tokens


class OurStep:
    """Our GPT of a model_spec and the training step every benchmark times: train_step (forward, backward, clip,
    AdamW over configure_optimizers' groups with optimizer_settings(), zero_grad), the batch split over `workers`
    ranks on the cpu as train() splits it (DistributedDataParallel, local backend). `state_dict` starts it from
    given weights (else seed 1337's).

    The other ranks are forked here and follow rank 0's calls: each call first hands them its batch through the
    group (a broadcast of the token ids, which a training run does not need, since every rank draws the batch
    itself: tens of microseconds). close() ends them, as does the end of this process.
    The imports happen here, not at the top: a caller may first choose which checkout's code it measures."""

    def __init__(self, spec, workers, device="cpu", state_dict=None):
        from gpt import GPT, GPTConfig
        from gpt.step import configure_optimizers
        from tinygrad_ed.distributed import DistributedDataParallel, init_process_group
        self.raw_model = GPT(GPTConfig(**spec), device=device)
        if state_dict is not None:
            self.raw_model.load_state_dict(state_dict)
        self.lr, betas, weight_decay, self.grad_clip = optimizer_settings()
        self.optimizer = configure_optimizers(self.raw_model, weight_decay, self.lr, betas)
        self.group = init_process_group("local", workers if device == "cpu" else 1)
        self.model = DistributedDataParallel(self.raw_model, self.group)
        if self.group.rank != 0:
            self._follow()

    def __call__(self, X, Y, observer=None):
        from gpt.step import train_step
        if self.group.world_size > 1:
            import numpy as np
            self.group.broadcast(np.array([1, *X.shape], dtype=np.int64))   # 1: a step of this shape follows
            self.group.broadcast(np.ascontiguousarray(X.numpy(), dtype=np.int64))
            self.group.broadcast(np.ascontiguousarray(Y.numpy(), dtype=np.int64))
        return train_step(self.model, self.optimizer, (X, Y), lambda: (X, Y), self.lr, grad_clip=self.grad_clip,
                          observer=observer)

    def _follow(self):
        """A forked rank's life: the steps rank 0 is asked for, on the batches it hands over, until it closes."""
        import numpy as np
        from tinygrad_ed import Tensor
        from gpt.step import train_step
        with self.group:
            while True:
                header = np.zeros(3, dtype=np.int64)
                self.group.broadcast(header)
                if header[0] == 0:
                    break
                X, Y = np.empty(header[1:], dtype=np.int64), np.empty(header[1:], dtype=np.int64)
                self.group.broadcast(X)
                self.group.broadcast(Y)
                X, Y = Tensor(X), Tensor(Y)
                train_step(self.model, self.optimizer, (X, Y), lambda: (X, Y), self.lr, grad_clip=self.grad_clip)

    def close(self):
        """End the other ranks."""
        if self.group.world_size > 1:
            import numpy as np
            self.group.broadcast(np.zeros(3, dtype=np.int64))
        self.group.close()


def training_step(size, workers, batches=8):
    """(step, batches): step(X, Y) is one OurStep iteration; `batches` fixed training batches (X, Y), seed 0.
    (bench/compare_revisions.py asks every checkout it measures for this function, under this name.)"""
    import numpy as np
    from gpt import CharDataset
    step, dataset, generator = OurStep(model_spec(size), workers), CharDataset(), np.random.default_rng(0)
    _, _, _, block_size, batch_size = dims(size)
    return step, [dataset.get_batch("train", batch_size, block_size, generator) for _ in range(batches)]


def in_turns(names, rounds):
    """For each round, the order in which `names` take their turn: rotated by one every round (A B, B A, ...)."""
    names = list(names)
    for turn in range(rounds):
        shift = turn % len(names)
        yield names[shift:] + names[:shift]


def chunk_sizes(total, rounds):
    """`total` iterations split into `rounds` nearly equal chunks, one per turn."""
    rounds = max(1, min(rounds, total))
    return [total // rounds + (1 if r < total % rounds else 0) for r in range(rounds)]


def take_turns(names, total, rounds, run):
    """`total` iterations of each of `names`, in `rounds` turns each (in_turns' order, chunk_sizes' chunks):
    run(name, n) times n iterations of one and returns their seconds. Returns {name: every iteration's seconds}."""
    seconds = {name: [] for name in names}
    for order, n in zip(in_turns(names, rounds), chunk_sizes(total, rounds)):
        for name in order:
            seconds[name] += run(name, n)
    return seconds


def quiet_blas_threads():
    """Idle OpenBLAS threads spin for ~0.1 s after each matmul, on the cores the other side of a comparison needs;
    OPENBLAS_THREAD_TIMEOUT=10, set before numpy is imported, makes them sleep at once without slowing matmuls."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "10")


# ----------------------------------------------------------------------------------------------------------
# step servers: a benchmark's side in a process of its own, speaking one JSON object per line

class Server:
    """The parent's handle on a process that answers JSON commands on stdin with JSON replies on stdout."""

    def __init__(self, name, command, cwd=None, env=None):
        self.name = name
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, bufsize=1)

    def receive(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} server exited with code {self.process.wait()} "
                               f"(its traceback is above)")
        return json.loads(line)

    def request(self, **command):
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.receive()

    def close(self, timeout=60):
        """Close its input (a server ends when its input does); stop it if it has not ended by `timeout`."""
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()


def serve(handlers, ready):
    """A server's side: send `ready`, then for each command line {"cmd": name, ...} reply handlers[name](**rest),
    until the input ends or a handler returns None after replying. Library output is sent to stderr, so that
    nothing a library prints can corrupt the protocol on stdout."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    protocol.write(json.dumps(ready) + "\n")
    for line in sys.stdin:
        command = json.loads(line)
        reply = handlers[command.pop("cmd")](**command)
        protocol.write(json.dumps(reply) + "\n")


def time_steps(step, batches, count, start=0, synchronize=lambda: None):
    """Seconds of each of `count` calls step(X, Y), cycling through `batches` from index `start`, each timed up to
    synchronize() (a device synchronize on cuda)."""
    seconds = []
    for index in range(start, start + count):
        began = time.perf_counter()
        step(*batches[index % len(batches)])
        synchronize()
        seconds.append(time.perf_counter() - began)
    return seconds


# ----------------------------------------------------------------------------------------------------------
# the machine's load

def machine_busy_seconds():
    """CPU-seconds all cores together have spent busy since boot (Linux /proc/stat; None elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, stat.readline().split()[1:9])
    except OSError:
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid):
    """User + system CPU-seconds process `pid` has used (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()   # after the command name, which may hold spaces
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid):
    """The live child processes of `pid` (Linux /proc; [] elsewhere): an engine's data-parallel workers."""
    pids = []
    for children_file in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids += [int(child) for child in children_file.read_text().split()]
        except OSError:
            continue
    return pids


def cpu_snapshot(pids):
    """(wall time, machine busy, the benchmark's own CPU): the differences of two give the other processes' load.
    Own CPU is this process's, the `pids`' and their children's (an engine's data-parallel workers)."""
    own = [process_cpu_seconds(pid) for pid in pids + [child for pid in pids for child in child_pids(pid)]]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    busy = machine_busy_seconds()
    if busy is None or None in own:
        return None
    return time.perf_counter(), busy, sum(own) + usage.ru_utime + usage.ru_stime


def other_load(before, after):
    """Average number of cores that processes outside the benchmark kept busy between two snapshots."""
    if before is None or after is None:
        return None
    wall, busy, own = (b - a for a, b in zip(before, after))
    return max(busy - own, 0.0) / wall


def wait_for_quiet(max_seconds, threshold=QUIET_LOAD, window=2.0):
    """Wait, up to max_seconds, until other processes keep fewer than `threshold` cores busy over `window` seconds.
    Returns (seconds waited, the last window's load); the caller itself sleeps meanwhile, so all load is others'."""
    start = time.perf_counter()
    while True:
        busy, began = machine_busy_seconds(), time.perf_counter()
        if busy is None:
            return 0.0, None
        time.sleep(window)
        load = (machine_busy_seconds() - busy) / (time.perf_counter() - began)
        if load < threshold or time.perf_counter() - start >= max_seconds:
            return time.perf_counter() - start, load


# ----------------------------------------------------------------------------------------------------------
# results

def code_version():
    """The commit measured, and whether the working tree had uncommitted changes."""
    try:
        git = ["git", "-C", str(REPO_ROOT)]
        commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" with uncommitted changes" if dirty else "")


def machine_info(threads=None):
    """The CPU, core and thread counts, Python, platform and code version, for a report's header."""
    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "platform": platform.platform(), "code": code_version()}


def write_results(stem, markdown, data):
    """bench/results/<stem>.md and .json (a rerun the same day replaces them; git history keeps the earlier)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{stem}.md").write_text(markdown)
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(data, indent=1) + "\n")
    return RESULTS_DIR / f"{stem}.md"


def relative_difference(a, b):
    """max |a − b| / max |b| over one tensor: a rounding error measured against the tensor's own scale (inf when the
    shapes differ, 0 for empty tensors)."""
    import numpy as np
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)) if b.size else 0.0


def markdown_table(header, rows):
    """Lines of a markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
           ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
