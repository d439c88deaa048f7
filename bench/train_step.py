"""Time one full training iteration of our GPT, and with --vs-torch the same model in PyTorch eager.

One iteration is what nanoGPT's train.py does per step:
  forward → loss → backward → clip the global gradient norm to 1.0 → AdamW step → zero_grad
with nanoGPT's optimizer (gpt/step.py's configure_optimizers): weight decay 0.1 on the matrices only, lr 1e-3, betas
(0.9, 0.99).

    python bench/train_step.py --configs tiny,cpu,baby --vs-torch

How it measures, and why this way:
- Each engine runs in its own worker process (`python bench/train_step.py --worker ours|torch ...`, a step server of
  bench/harness.py), one pair of workers per config. A process's peak resident memory (ru_maxrss) is then that engine's alone, and neither engine's
  thread pools can disturb the other from inside one process: OpenBLAS threads spin ≈0.1 s after every GEMM, which
  in one process slowed PyTorch's tiny iteration from 2.9 to ≈7 ms.
- Our engine's iteration is bench/harness.py's OurStep: gpt/step.py's train_step, as every run calls it.
- Both workers stay alive and the parent alternates them (harness.in_turns): a chunk of iterations from one, then
  from the other, the order flipped every round. Load on the machine that comes and goes then hits both engines alike, which is what
  their ratio needs; timing one engine entirely after the other would not give that. The idle worker waits on a
  pipe, and OPENBLAS_THREAD_TIMEOUT=10 makes its BLAS threads sleep at once rather than spin on the shared cores.
- The same weights (our model's state_dict, written once by the parent and loaded by both), the same batches in the
  same order, the same thread count. The first iteration of each worker doubles as a cross-check: both write their
  loss, gradients and updated weights, and the parent compares them.
- Times are per iteration (perf_counter around the step, after a device synchronize on cuda); the table shows the
  median after warm-up and the interquartile range.

Legend: B = batch size, T = block size (time), C = n_embd, L = n_layer, V = vocabulary size.
"""
import argparse
import importlib.util
import os
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

import harness


# NOTE: tinygrad_ed.distributed.local.usable_cores says the same, but importing it would import numpy, which must wait until
# the thread counts are in the environment (below)
def _default_threads():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _set_thread_environment(argv):
    """Read --threads from argv and put the thread counts in the environment; return the count."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--threads", type=int, default=_default_threads())
    threads = parser.parse_known_args(argv)[0].threads
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = "10"  # BLAS threads sleep at once after a GEMM instead of spinning
    return threads


# NOTE: OpenBLAS, MKL and OpenMP read their thread counts once, when the library loads, so the environment is set
# here, before numpy is imported below; the workers inherit it, and torch (imported only by a torch worker) too.
_set_thread_environment(sys.argv[1:])
import numpy as np  # noqa: E402


# ----------------------------------------------------------------------------------------------------------
# what is measured

N_BATCHES = 8        # distinct batches, cycled; both engines see them in the same order
SEED = 1337          # initial weights (our GPT's seed) and batch sampling
WELL_CONDITIONED_GRAD = 100 * 1e-8    # 100·ε (both AdamWs' default eps): see compare_first_step
# per size: timed iterations per engine (enough for a stable median at that size), untimed warm-up iterations first
# (the first is also the cross-check step)
ITERATIONS = {"tiny": (60, 5), "cpu": (30, 3), "baby": (8, 2)}


def representative_matmul(size):
    """(B·T, C) @ (C, 4C): mlp.c_fc's forward GEMM, the largest of an iteration."""
    _, _, n_embd, block_size, batch_size = harness.dims(size)
    return batch_size * block_size, n_embd, 4 * n_embd


# ----------------------------------------------------------------------------------------------------------
# our engine, with the interface a worker drives (bench/torch_reference.py's TorchEngine has the same)

class OursEngine:
    name = "ours"

    def __init__(self, size, device, init_path, threads):
        from tinygrad_ed import Tensor
        from tinygrad_ed.device import array_module
        self.Tensor, self.device, self.xp, self.threads = Tensor, device, array_module(device), threads
        self.our_step = harness.OurStep(harness.model_spec(size), threads, device, state_dict=np.load(init_path))

    def batch(self, x, y):
        return self.Tensor(x, device=self.device), self.Tensor(y, device=self.device)

    def step(self, x, y):
        self.our_step(x, y)

    def first_step(self, x, y, save):
        """step() with its intermediate results handed to save(stage, {name: numpy array}) for the cross-check."""
        from gpt.step import StepObserver
        from tinygrad_ed.device import to_device
        named = list(self.our_step.raw_model.named_parameters())

        class SaveGradients(StepObserver):  # the gradients before clipping, as torch_reference saves them
            def after_backward(self, index, X, Y, logits, loss):
                save("grads", {name: to_device(p.grad, "cpu") for name, p in named})

        result = self.our_step(x, y, observer=SaveGradients())
        save("new", {name: p.numpy() for name, p in named})
        return result.loss.item(), result.grad_norm.item()

    def synchronize(self):
        if self.device == "cuda":
            self.xp.cuda.Device().synchronize()

    def matmul_seconds(self, m, k, n, reps):
        """Median seconds of one (m, k) @ (k, n) float32 matmul in the engine's array library, into a ready `out`,
        with BLAS on all the benchmark's threads: the machine's rate, which the floor is computed from (the
        data-parallel wrapper leaves BLAS on one thread in each of its processes, one process per core)."""
        from tinygrad_ed.fast.cpu_runtime import set_blas_threads
        previous = set_blas_threads(self.threads) if self.device == "cpu" else None
        try:
            return self._matmul_seconds(m, k, n, reps)
        finally:
            if previous is not None:
                set_blas_threads(previous)

    def _matmul_seconds(self, m, k, n, reps):
        rng = np.random.default_rng(0)
        a = self.xp.asarray(rng.standard_normal((m, k), dtype=np.float32))
        b = self.xp.asarray(rng.standard_normal((k, n), dtype=np.float32))
        out = self.xp.empty((m, n), dtype=np.float32)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            self.xp.matmul(a, b, out=out)
            self.synchronize()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    def device_memory_bytes(self):
        return int(self.xp.get_default_memory_pool().total_bytes()) if self.device == "cuda" else None

    @staticmethod
    def versions():
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return {"numpy": np.__version__, "blas": f"{blas.get('name')} {blas.get('version')}"}


# ----------------------------------------------------------------------------------------------------------
# worker: one engine, one config, driven over stdin/stdout with one JSON object per line

def _children_peak_kib():
    """Sum of the peak resident memory (VmHWM) of this process's live child processes, in KiB (Linux; 0 elsewhere).
    Memory they share with this process (the model's weights) is counted once more per child: an overestimate."""
    total = 0
    for pid in harness.child_pids(os.getpid()):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return total


def _resident_kib():
    """This process's resident memory now, in KiB (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return None


def run_worker(args):
    """One engine at one size, as a step server (bench/harness.py): ready with the first step's cross-check numbers,
    then 'run' (time n iterations), 'matmul' (the GEMM rate) and 'peak' (memory) on request."""
    baseline_kib = _resident_kib()  # after the imports, before any model exists
    size, workdir = args.worker_config, Path(args.workdir)
    if args.worker == "torch":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import torch
        from torch_reference import TorchEngine
        baseline_kib = _resident_kib()
        engine = TorchEngine(harness.model_spec(size), args.device, workdir / "init.npz", args.threads,
                             *harness.optimizer_settings())
        versions = {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    else:
        engine, versions = OursEngine(size, args.device, workdir / "init.npz", args.threads), OursEngine.versions()
    data = np.load(workdir / "batches.npz")
    batches = [engine.batch(x, y) for x, y in zip(data["x"], data["y"])]

    def save(stage, arrays):
        np.savez(workdir / f"check-{args.worker}-{stage}.npz", **arrays)

    loss, grad_norm = engine.first_step(*batches[0], save)
    harness.time_steps(engine.step, batches, args.warmup - 1, start=1, synchronize=engine.synchronize)
    done = {"iterations": args.warmup}

    def run(n):
        seconds = harness.time_steps(engine.step, batches, n, start=done["iterations"], synchronize=engine.synchronize)
        done["iterations"] += n
        return {"times": seconds}

    def matmul(shape):
        m, k, n = shape
        estimate = engine.matmul_seconds(m, k, n, reps=3)
        reps = int(min(max(0.3 / max(estimate, 1e-9), 10), 5000))   # ≈0.3 s of repetitions
        return {"seconds": engine.matmul_seconds(m, k, n, reps=reps), "reps": reps}

    def peak():
        # Linux: KiB; plus the peaks of this worker's own child processes (our data-parallel workers), so an
        # engine that splits its work over processes is charged for all of them
        return {"peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + _children_peak_kib(),
                "device_memory_bytes": engine.device_memory_bytes()}

    harness.serve({"run": run, "matmul": matmul, "peak": peak},
                  ready=dict(loss=loss, grad_norm=grad_norm, baseline_rss_kib=baseline_kib, versions=versions))


# ----------------------------------------------------------------------------------------------------------
# parent: prepare the inputs, alternate the workers, compare, report

def prepare_inputs(size, workdir):
    """Our model's initial state_dict and N_BATCHES training batches, written where both workers read them."""
    from gpt import GPT, CharDataset, GPTConfig
    model = GPT(GPTConfig(**harness.model_spec(size)), seed=SEED)
    np.savez(workdir / "init.npz", **model.state_dict())
    dataset = CharDataset()
    generator = np.random.default_rng(SEED)
    _, _, _, block_size, batch_size = harness.dims(size)
    batches = [dataset.get_batch("train", batch_size, block_size, generator) for _ in range(N_BATCHES)]
    np.savez(workdir / "batches.npz", x=np.stack([x.numpy() for x, _ in batches]),   # (N_BATCHES, B, T)
             y=np.stack([y.numpy() for _, y in batches]))
    return [name for name, _ in model.named_parameters()], model.num_parameters()


def compare_first_step(workdir, names, ready, tolerance):
    """Loss, gradients, grad norm and updated weights of the first iteration, ours against torch, in the order the
    computation produces them (gradients from the output end back); the first one over tolerance is named.

    The updated weights are compared only where AdamW's first step is well-conditioned. That step moves a weight by
    lr·g/(|g| + ε) (m̂ = g, v̂ = g² at t = 1), ≈ ±lr whatever |g|, so where the clipped gradient is near ε a rounding
    difference in g becomes a visible difference in the weight; and some gradients are pure rounding noise: with
    biases, the k-bias gradient is exactly 0 in exact arithmetic (softmax ignores a constant added to every score
    of a query), ≈1e-11 in float32, with a sign that differs between engines. With |g| ≥ 100·ε the step's relative
    sensitivity, (∂step/∂g)·g/step = ε/(|g| + ε) ≤ 1%, is small enough that the gradients' float32 agreement
    (≈1e-6 of each tensor's largest entry) carries over to the weights; on tiny, cpu and baby this leaves out 1–8%
    of the entries.
    """
    grads = {engine: np.load(workdir / f"check-{engine}-grads.npz") for engine in ("ours", "torch")}
    new = {engine: np.load(workdir / f"check-{engine}-new.npz") for engine in ("ours", "torch")}
    from optim import clip_factor
    factor = float(clip_factor(np, ready["torch"]["grad_norm"], harness.optimizer_settings()[3]))
    quantities = [("loss", harness.relative_difference(ready["ours"]["loss"], ready["torch"]["loss"]))]
    quantities += [(f"grad {name}", harness.relative_difference(grads["ours"][name], grads["torch"][name]))
                   for name in reversed(names)]
    quantities.append(("grad norm", harness.relative_difference(ready["ours"]["grad_norm"], ready["torch"]["grad_norm"])))
    excluded, total, worst_unmasked = 0, 0, ("", 0.0)
    for name in reversed(names):
        ours, reference = new["ours"][name], new["torch"][name]
        well_conditioned = np.abs(grads["torch"][name]) * factor >= WELL_CONDITIONED_GRAD
        excluded, total = excluded + int((~well_conditioned).sum()), total + well_conditioned.size
        scale = max(float(np.max(np.abs(reference))), 1e-30)
        difference = np.abs(ours.astype(np.float64) - reference)
        quantities.append((f"updated {name}", float(np.max(difference, where=well_conditioned, initial=0.0)) / scale))
        worst_unmasked = max(worst_unmasked, (f"updated {name}", float(difference.max()) / scale), key=lambda q: q[1])
    worst_grad = max((q for q in quantities if q[0].startswith("grad ") and q[0] != "grad norm"), key=lambda q: q[1])
    worst_new = max((q for q in quantities if q[0].startswith("updated ")), key=lambda q: q[1])
    first_over = next((q for q in quantities if q[1] > tolerance), None)
    return {"tolerance": tolerance, "loss_rel": quantities[0][1], "grad_norm_rel": quantities[len(names) + 1][1],
            "worst_grad": list(worst_grad), "worst_updated_weight": list(worst_new),
            "worst_updated_weight_all_entries": list(worst_unmasked),
            "updated_entries_excluded": excluded, "updated_entries_total": total,
            "first_over_tolerance": list(first_over) if first_over else None, "agree": first_over is None}


def timing_summary(seconds, tokens):
    seconds = np.asarray(seconds)
    median = float(np.median(seconds))
    return {"iters": len(seconds), "ms_median": median * 1e3, "ms_p25": float(np.percentile(seconds, 25)) * 1e3,
            "ms_p75": float(np.percentile(seconds, 75)) * 1e3, "ms_min": float(seconds.min()) * 1e3,
            "tokens_per_s": tokens / median, "ms_all": [round(t * 1e3, 3) for t in seconds.tolist()]}


def bench_config(size, args, engines, workdir):
    workdir.mkdir()
    names, n_params = prepare_inputs(size, workdir)
    iters, warmup = ITERATIONS[size]
    workers = {}
    try:
        for engine in engines:   # they warm up side by side
            workers[engine] = harness.Server(engine, [
                sys.executable, str(Path(__file__).resolve()), "--worker", engine, "--worker-config", size,
                "--workdir", str(workdir), "--device", args.device, "--threads", str(args.threads),
                "--warmup", str(args.warmup or warmup)], env=os.environ.copy())
        ready = {engine: worker.receive() for engine, worker in workers.items()}
        pids = [worker.process.pid for worker in workers.values()]
        before = harness.cpu_snapshot(pids)
        times = harness.take_turns(engines, args.iters or iters, args.rounds,
                                   lambda engine, n: workers[engine].request(cmd="run", n=n)["times"])
        load = harness.other_load(before, harness.cpu_snapshot(pids))
        shape = representative_matmul(size)
        matmul = {engine: workers[engine].request(cmd="matmul", shape=shape) for engine in engines}
        closing = {engine: workers[engine].request(cmd="peak") for engine in engines}
    finally:
        for worker in workers.values():
            worker.close()

    flops = harness.flops_per_iter(size)
    n_layer, n_head, n_embd, block_size, batch_size = harness.dims(size)
    tokens = block_size * batch_size
    result = {"config": size, "n_layer": n_layer, "n_head": n_head, "n_embd": n_embd, "block_size": block_size,
              "batch_size": batch_size, "vocab_size": harness.VOCAB_SIZE, "params": n_params,
              "tokens_per_iter": tokens, "flops_per_iter": flops, "matmul_shape": list(shape),
              "other_load_cores": load, "engines": {}}
    for engine in engines:
        gflops = 2 * shape[0] * shape[1] * shape[2] / matmul[engine]["seconds"] / 1e9
        baseline = ready[engine]["baseline_rss_kib"]
        result["engines"][engine] = {
            **timing_summary(times[engine], tokens),
            "loss_first_batch": ready[engine]["loss"], "grad_norm_first_batch": ready[engine]["grad_norm"],
            "peak_rss_mib": closing[engine]["peak_rss_kib"] / 1024,
            "baseline_rss_mib": baseline / 1024 if baseline is not None else None,
            "device_memory_bytes": closing[engine]["device_memory_bytes"],
            "matmul_gflops": gflops, "matmul_reps": matmul[engine]["reps"], "versions": ready[engine]["versions"]}
    # the floor: the iteration's FLOPs at numpy's (our array library's) measured GEMM rate
    result["floor_ms"] = flops / (result["engines"]["ours"]["matmul_gflops"] * 1e9) * 1e3
    if "torch" in engines:
        result["check"] = compare_first_step(workdir, names, ready, args.tolerance)
    return result


# ----------------------------------------------------------------------------------------------------------
# reporting

def _mib(engine):
    base = f" ({engine['peak_rss_mib'] - engine['baseline_rss_mib']:.0f})" if engine["baseline_rss_mib"] else ""
    return f"{engine['peak_rss_mib']:.0f}{base}"


def markdown_report(report):
    machine, results = report["machine"], report["results"]
    versions = {k: v for r in results for e in r["engines"].values() for k, v in e["versions"].items()}
    has_torch = any("torch" in r["engines"] for r in results)
    lines = [f"# Training-step benchmark, {report['date']}", "",
             f"- command: `{report['command']}`",
             f"- machine: {machine['cpu']}, {machine['cores']} cores; threads: {machine['threads']} for every engine; "
             f"device: {report['device']}; code: {machine['code']}",
             "- " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + f", Python {machine['python']}",
             f"- load average (1 min, this benchmark's processes included) at start {report['load_start'][0]:.2f}, "
             f"at end {report['load_end'][0]:.2f}; the 'other load' column below is the precise measure",
             "- one iteration = forward, loss, backward, clip_grad_norm_(1.0), AdamW step (nanoGPT groups, lr 1e-3, "
             "betas (0.9, 0.99), weight decay 0.1), zero_grad; float32, dropout 0, no biases (as the training presets), vocab 65",
             "- ms/iter: median of the timed iterations after warm-up, [25th–75th percentile]; the engines ran in "
             "separate processes, alternating chunks of iterations on the same batches; ours/torch is the ratio of "
             "medians (below 1: ours is faster), (min) the ratio of the fastest iterations, less sensitive to other "
             "load",
             "- other load: cores kept busy by processes outside this benchmark while it timed (machine-wide busy "
             f"time from /proc/stat minus the benchmark's own), averaged; above {harness.QUIET_LOAD} the engines shared the "
             f"cores with others and the timings are flagged",
             "- floor: the iteration's FLOPs (nanoGPT's estimate_mfu count, GPT.flops_per_token: 6·N per token for the "
             "N weights, position embeddings left out, plus 12·L·C·T for attention) at numpy's measured float32 GEMM "
             "rate for (B·T, C) @ (C, 4C) with BLAS on all threads; ×floor = ms/iter ÷ floor", ""]
    disturbed = [r["config"] for r in results if (r["other_load_cores"] or 0) > harness.QUIET_LOAD]
    if disturbed:
        lines += [f"**Warning: other processes kept more than {harness.QUIET_LOAD} cores busy while {', '.join(disturbed)} "
                  f"ran (column 'other load'): those timings measure contention as much as the engines, and are "
                  f"not a clean baseline.**", ""]
    header = ["config", "params", "tokens/iter", "GFLOP/iter", "other load", "ours ms/iter"]
    if has_torch:
        header += ["torch ms/iter", "ours/torch", "ours/torch (min)", "ours tok/s", "torch tok/s"]
    else:
        header += ["ours tok/s"]
    header += ["numpy GEMM GFLOP/s", "floor ms", "ours ×floor"] + (["torch ×floor", "torch GEMM GFLOP/s"]
                                                                   if has_torch else [])
    rows = []
    for r in results:
        ours, torch = r["engines"]["ours"], r["engines"].get("torch")
        row = [f"{r['config']} ({r['n_layer']}/{r['n_head']}/{r['n_embd']}, T {r['block_size']}, B {r['batch_size']})",
               f"{r['params'] / 1e6:.3f} M", str(r["tokens_per_iter"]), f"{r['flops_per_iter'] / 1e9:.3f}",
               f"{r['other_load_cores']:.2f}" if r["other_load_cores"] is not None else "n/a",
               f"{ours['ms_median']:.2f} [{ours['ms_p25']:.2f}–{ours['ms_p75']:.2f}]"]
        if torch:
            row += [f"{torch['ms_median']:.2f} [{torch['ms_p25']:.2f}–{torch['ms_p75']:.2f}]",
                    f"**{ours['ms_median'] / torch['ms_median']:.2f}**", f"{ours['ms_min'] / torch['ms_min']:.2f}",
                    f"{ours['tokens_per_s']:,.0f}",
                    f"{torch['tokens_per_s']:,.0f}"]
        else:
            row += [f"{ours['tokens_per_s']:,.0f}"]
        row += [f"{ours['matmul_gflops']:.1f}", f"{r['floor_ms']:.2f}", f"{ours['ms_median'] / r['floor_ms']:.1f}"]
        if torch:
            row += [f"{torch['ms_median'] / r['floor_ms']:.1f}", f"{torch['matmul_gflops']:.1f}"]
        rows.append(row)
    lines += harness.markdown_table(header, rows)
    lines += ["", "Memory: peak resident set of each engine's own worker process (ru_maxrss), MiB; in brackets the "
              "part above the process's resident set right after its imports (what the model and training added).", ""]
    header = ["config", "ours peak RSS"] + (["torch peak RSS", "ours/torch (peak)", "ours/torch (added)",
                                             "loss ours", "loss torch", "loss rel. diff", "worst grad rel. diff",
                                             "worst updated-weight rel. diff (|g| ≥ 100ε)", "same function?"]
                                            if has_torch else ["loss ours"])
    rows = []
    for r in results:
        ours, torch = r["engines"]["ours"], r["engines"].get("torch")
        row = [r["config"], _mib(ours)]
        if torch:
            check = r["check"]
            added = ((ours["peak_rss_mib"] - ours["baseline_rss_mib"])
                     / (torch["peak_rss_mib"] - torch["baseline_rss_mib"]))
            verdict = "yes" if check["agree"] else (f"**NO**: first over {check['tolerance']:g}: "
                                                    f"{check['first_over_tolerance'][0]} "
                                                    f"({check['first_over_tolerance'][1]:.2e})")
            row += [_mib(torch), f"{ours['peak_rss_mib'] / torch['peak_rss_mib']:.2f}", f"{added:.2f}",
                    f"{ours['loss_first_batch']:.7f}", f"{torch['loss_first_batch']:.7f}", f"{check['loss_rel']:.1e}",
                    f"{check['worst_grad'][1]:.1e} ({check['worst_grad'][0][5:]})",
                    f"{check['worst_updated_weight'][1]:.1e} ({check['worst_updated_weight'][0][8:]}; "
                    f"{check['updated_entries_excluded']} of {check['updated_entries_total']} entries excluded)",
                    verdict]
        else:
            row += [f"{ours['loss_first_batch']:.7f}"]
        rows.append(row)
    lines += harness.markdown_table(header, rows)
    if has_torch:
        worst_all = max((r["check"]["worst_updated_weight_all_entries"] for r in results if "check" in r),
                        key=lambda q: q[1])
        lines += ["", "Rel. diff = max |ours − torch| / max |torch| per tensor, on the first iteration from the same "
                  "weights and batch; gradients before clipping. Updated weights are compared where the clipped "
                  "gradient is ≥ 100·ε (ε = 1e-8): AdamW's first step moves a weight by lr·g/(|g| + ε), about ±lr "
                  "whatever |g|, so where |g| is near ε, or is pure rounding noise, float32 rounding "
                  "decides the step. Over all entries the worst was "
                  f"{worst_all[1]:.1e} ({worst_all[0][8:]})."]
    return "\n".join(lines) + "\n"


def run_parent(args):
    sizes = args.configs.split(",")
    unknown = [name for name in sizes if name not in harness.SIZES]
    if unknown:
        raise SystemExit(f"unknown config {unknown[0]!r}: choose from {', '.join(harness.SIZES)}")
    engines = ["ours"]
    if args.vs_torch:
        if importlib.util.find_spec("torch") is None:
            print("--vs-torch: torch is not importable here, timing our engine only", file=sys.stderr)
        else:
            engines.append("torch")
    report = {"date": time.strftime("%Y-%m-%d"), "time": time.strftime("%H:%M:%S %Z"),
              "command": shlex.join(["python", os.path.relpath(sys.argv[0])] + sys.argv[1:]),
              "device": args.device, "machine": harness.machine_info(args.threads), "load_start": os.getloadavg(),
              "results": []}
    with tempfile.TemporaryDirectory(prefix="bench-train-step-") as scratch:
        for size in sizes:
            waited, load = harness.wait_for_quiet(args.wait_quiet) if args.wait_quiet > 0 else (0.0, None)
            start = time.perf_counter()
            result = bench_config(size, args, engines, Path(scratch) / size)
            result["wall_s"] = time.perf_counter() - start
            result["waited_for_quiet_s"], result["other_load_before_cores"] = waited, load
            report["results"].append(result)
            ours = result["engines"]["ours"]
            line = f"{size}: ours {ours['ms_median']:.2f} ms/iter"
            if "torch" in result["engines"]:
                torch = result["engines"]["torch"]
                line += (f", torch {torch['ms_median']:.2f} ms/iter, ratio {ours['ms_median'] / torch['ms_median']:.2f}"
                         f", same function: {result['check']['agree']}")
            print(line + f" ({result['wall_s']:.0f} s)", file=sys.stderr)
    report["load_end"] = os.getloadavg()
    markdown = markdown_report(report)
    if not args.no_save:
        suffix = "" if args.threads == _default_threads() else f"-threads{args.threads}"
        written = harness.write_results(f"{args.device}-{report['date']}{suffix}", markdown, report)
        print(f"wrote {written} and its .json", file=sys.stderr)
    print(markdown)
    failed = [r["config"] for r in report["results"] if "check" in r and not r["check"]["agree"]]
    if failed:
        print(f"engines disagree on the first iteration for {', '.join(failed)}: see the table", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="tiny,cpu,baby", help=f"comma-separated, from {', '.join(harness.SIZES)}")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=_default_threads(),
                        help="BLAS/OpenMP threads for every engine (default: all cores)")
    parser.add_argument("--vs-torch", action="store_true", help="also time nanoGPT's model in PyTorch eager")
    parser.add_argument("--iters", type=int, help="timed iterations per engine (default: per config, 60/30/8)")
    parser.add_argument("--warmup", type=int, help="untimed iterations first, at least 1 (default: 5/3/2)")
    parser.add_argument("--rounds", type=int, default=6, help="alternations between the engines per config")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help=f"before each config, wait up to this long for other processes to keep fewer than "
                             f"{harness.QUIET_LOAD} cores busy (a shared machine)")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="largest relative difference for the engines to count as the same function")
    parser.add_argument("--no-save", action="store_true", help="print the table but write nothing to bench/results")
    # a worker's arguments, given by the parent
    parser.add_argument("--worker", choices=["ours", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-config", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup is not None and args.warmup < 1:
        parser.error("--warmup must be at least 1: the first iteration is the cross-check")
    if args.worker:
        run_worker(args)
        return 0
    return run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
