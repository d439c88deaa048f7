"""One training iteration of the baby GPT on cuda: ours with the fused kernels, ours without them, and PyTorch eager.

    python bench/gpu_bench.py                      # batch 64, block 256, 6 layers, 6 heads, 384 wide
    python bench/gpu_bench.py --batch-size 8 --iters 20
    python bench/gpu_bench.py --device cpu --batch-size 2 --iters 2 --block-size 32   # a dry run of this script
    CUPY_TF32=1 python bench/gpu_bench.py          # the float32 matmuls on TF32 tensor cores (ours and torch's)

One iteration is bench/harness.py's OurStep: gpt/step.py's train_step (forward, loss, backward, clip the global
gradient norm to 1.0, AdamW with nanoGPT's groups, lr 1e-3, betas (0.9, 0.99), weight decay 0.1, zero_grad);
float32, dropout 0, no biases (as the GPU preset), vocab 65. All three engines run in this one process (bench/train_step.py, which runs
each engine in its own process, is the CPU benchmark), start from the same weights and see the same batches; the
engines take turns in chunks of iterations (harness.in_turns), and each iteration is timed up to a device
synchronize. The first batch's loss, before any update, is compared across engines as a check that they compute the
same function. Every engine first runs --warmup untimed iterations, so that kernel compiles are not timed.

TF32: cupy reads CUPY_TF32 once, at its first float32 matmul (cuBLAS's compute type; off unless CUPY_TF32=1), so
the setting is the process's: run the script once each way to compare. torch is set to match
(torch.backends.cuda.matmul.allow_tf32), so that both engines compare at the same precision.
"""
import argparse
import importlib.util
import json
import os
import statistics
import sys
from pathlib import Path

import harness
import numpy as np

from gpt import CharDataset
from tinygrad_ed import Tensor, no_grad
from tinygrad_ed.device import array_module, require_cuda
from tinygrad_ed.fast import plain_path

N_BATCHES = 4


def tf32_enabled():
    """Whether cupy runs float32 matmuls in TF32 in this process: CUPY_TF32 > 0, as cupy reads it."""
    try:
        return int(os.environ.get("CUPY_TF32", "0") or 0) > 0
    except ValueError:
        return False


class Ours:
    """harness.OurStep; `fused=False` runs every iteration inside plain_path() (the plain cupy code)."""

    def __init__(self, spec, device, fused, state_dict):
        self.device, self.fused = device, fused
        self.our_step = harness.OurStep(spec, 1, device, state_dict=state_dict)

    def batch(self, x, y):
        return Tensor(x, device=self.device), Tensor(y, device=self.device)

    def loss(self, x, y):
        with no_grad():
            return self.our_step.raw_model(x, y)[1].item()

    def step(self, x, y):
        if self.fused:
            self.our_step(x, y)
        else:
            with plain_path():
                self.our_step(x, y)

    def synchronize(self):
        if self.device == "cuda":
            array_module(self.device).cuda.Device().synchronize()

    def memory_bytes(self):
        return int(array_module(self.device).get_default_memory_pool().total_bytes()) if self.device == "cuda" else None


def torch_engine(spec, device, initial):
    """bench/torch_reference.py's TorchEngine from our model's initial weights, or (None, why not)."""
    if importlib.util.find_spec("torch") is None:
        return None, "torch is not installed"
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        return None, "torch sees no CUDA device"
    torch.backends.cuda.matmul.allow_tf32 = tf32_enabled()  # the same float32 matmul precision as cupy's
    from torch_reference import TorchEngine
    engine = TorchEngine(spec, device, initial, torch.get_num_threads(), *harness.optimizer_settings())

    def loss(x, y):
        with torch.no_grad():
            return float(engine.model(x, y)[1].item())

    engine.loss = loss
    engine.memory_bytes = lambda: int(torch.cuda.max_memory_allocated()) if device == "cuda" else None
    return engine, None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--model", default="baby", choices=harness.SIZES,
                        help="the model's size (bench/harness.py); tiny: a dry run on the CPU stand-in for cupy")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per engine")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per engine first")
    parser.add_argument("--rounds", type=int, default=2, help="how often the engines take turns")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        try:
            require_cuda("gpu_bench --device cuda")
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return 2

    spec = {**harness.model_spec(args.model), "block_size": args.block_size}
    dataset, generator = CharDataset(), np.random.default_rng(1337)
    batches = [dataset.get_batch("train", args.batch_size, args.block_size, generator) for _ in range(N_BATCHES)]
    batches = [(np.ascontiguousarray(x.numpy()), np.ascontiguousarray(y.numpy())) for x, y in batches]  # Y is a view

    initial = harness.OurStep(spec, 1, "cpu").raw_model.state_dict()
    engines = {"ours (fused)": Ours(spec, args.device, True, initial),
               "ours (plain cupy)": Ours(spec, args.device, False, initial)}
    torch_note = "skipped (--no-torch)"
    if not args.no_torch:
        engine, torch_note = torch_engine(spec, args.device, initial)
        if engine is not None:
            engines["torch eager"] = engine
    on_device = {name: [engine.batch(x, y) for x, y in batches] for name, engine in engines.items()}
    first_loss = {name: engine.loss(*on_device[name][0]) for name, engine in engines.items()}

    done = {name: args.warmup for name in engines}
    for name, engine in engines.items():
        harness.time_steps(engine.step, on_device[name], args.warmup, synchronize=engine.synchronize)

    def run(name, n):
        seconds = harness.time_steps(engines[name].step, on_device[name], n, start=done[name],
                                     synchronize=engines[name].synchronize)
        done[name] += n
        return seconds

    times = harness.take_turns(engines, args.iters, args.rounds, run)

    tokens = args.batch_size * args.block_size
    reference_loss = first_loss.get("torch eager", first_loss["ours (fused)"])
    results = {name: {"ms_median": statistics.median(t) * 1e3, "ms_min": min(t) * 1e3, "iters": len(t),
                      "tokens_per_s": tokens / statistics.median(t), "first_loss": first_loss[name],
                      "first_loss_rel_diff": abs(first_loss[name] - reference_loss) / abs(reference_loss),
                      "device_memory_bytes": engines[name].memory_bytes()}
               for name, t in times.items()}
    tf32 = "TF32 on" if tf32_enabled() else "TF32 off"
    lines = [f"### one training iteration, {args.model} GPT ({spec['n_layer']}/{spec['n_head']}/{spec['n_embd']}), "
             f"block {args.block_size}, batch {args.batch_size}, "
             f"{args.device}, float32, {tf32} (CUPY_TF32)", ""]
    lines += harness.markdown_table(
        ["engine", "ms/iter (median)", "ms/iter (min)", "tokens/s", "first-batch loss", "rel. diff to torch"],
        [[name, f"{r['ms_median']:.1f}", f"{r['ms_min']:.1f}", f"{r['tokens_per_s']:,.0f}", f"{r['first_loss']:.6f}",
          f"{r['first_loss_rel_diff']:.1e}"] for name, r in results.items()])
    lines += ["", f"torch: {torch_note or 'ran'}; {args.iters} timed iterations per engine after {args.warmup} "
              f"warm-up, in {args.rounds} rounds"]
    print("\n".join(lines))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "tf32": tf32_enabled(), "results": results,
                                               "torch": torch_note or "ran"}, indent=1) + "\n")
    fused, plain = results["ours (fused)"]["ms_median"], results["ours (plain cupy)"]["ms_median"]
    summary = f"{tf32}: ours {fused:.1f} ms/iter (plain cupy {plain:.1f})"
    if "torch eager" in results:
        summary += f", torch {results['torch eager']['ms_median']:.1f} ms/iter, ours/torch " \
                   f"{fused / results['torch eager']['ms_median']:.2f}"
    print(f"SUMMARY: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
