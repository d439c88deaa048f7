"""The default CPU training run, ours against the same run in PyTorch eager: same val loss in no more wall time?

Both runs train nanoGPT's CPU shakespeare_char config (examples/train_char_gpt.py's defaults) from the same initial
weights, on the same batches, with the same learning-rate schedule, AdamW groups, clipping and evaluation batches.
Each run is a process of its own with all cores (ours: one data-parallel worker per core; torch: its intra-op
threads). The engines take turns (bench/harness.py), ours-torch-torch-ours-..., so that a machine that is faster or
slower for a while (a shared host is) slows both alike; the ratio is of the median wall times. PyTorch is a
benchmark-only reference (pip install torch==2.13.0).

    python bench/train_run.py                      # two runs per engine (four in all) of 2000 iterations: ~6 minutes
    python bench/train_run.py --repeats 1          # one run each
    python bench/train_run.py --max-iters 200      # a quick look
"""
import argparse
import json
import os
import platform
import subprocess
import statistics
import sys
import time

import harness

ROOT = harness.REPO_ROOT
harness.quiet_blas_threads()


def run_ours(max_iters, out_dir):
    from gpt.config import cpu_preset
    from gpt.training import train
    config = cpu_preset()
    config.max_iters, config.out_dir = max_iters, out_dir  # lr_decay_iters follows max_iters
    result = train(config, log=lambda line: None)
    return dict(final_train=result.evals[-1][1], final_val=result.evals[-1][2], seconds=result.elapsed_s,
                ms_per_iter=result.ms_per_iter, evals=result.evals)


def run_torch(max_iters):
    """The loop of gpt/training.py (steps 2.1-2.7, without checkpoints and logs), with bench/torch_reference.py's
    engine doing each iteration."""
    from dataclasses import asdict

    import numpy as np
    import torch
    sys.path.insert(0, str(ROOT / "bench"))
    from torch_reference import TorchEngine
    from gpt import GPT, CharDataset
    from gpt.config import cpu_preset
    from gpt.training import scheduled_lr

    started = time.time()
    config = cpu_preset()
    config.max_iters = max_iters  # lr_decay_iters follows it
    dataset = CharDataset()
    model_config = config.model_config(dataset.tokenizer.vocab_size)
    spec = {name: value for name, value in asdict(model_config).items() if name != "dtype"}
    engine = TorchEngine(spec, "cpu", GPT(model_config, seed=config.seed).state_dict(),  # our run's initial weights
                         torch.get_num_threads(), config.learning_rate, (config.beta1, config.beta2),
                         config.weight_decay, config.grad_clip)
    model, batches = engine.model, np.random.default_rng(config.seed)

    def batch(split, generator):
        X, Y = dataset.get_batch(split, config.batch_size, config.block_size, generator)
        return torch.from_numpy(np.ascontiguousarray(X.numpy())), torch.from_numpy(np.ascontiguousarray(Y.numpy()))

    @torch.no_grad()
    def estimate_loss():  # the same fixed evaluation batches as gpt/training.py's estimate_loss
        model.eval()
        generator, losses = np.random.default_rng(config.seed + 1), {}
        for split in ("train", "val"):
            losses[split] = sum(model(*batch(split, generator))[1].item() for _ in range(config.eval_iters)) \
                / config.eval_iters
        model.train()
        return losses

    evals = []
    X, Y = batch("train", batches)
    for iter_num in range(config.max_iters + 1):
        if iter_num % config.eval_interval == 0 or iter_num == config.max_iters:
            losses = estimate_loss()
            evals.append((iter_num, losses["train"], losses["val"]))
        if iter_num == config.max_iters:
            break
        engine.step(X, Y, lr=scheduled_lr(config, iter_num))
        X, Y = batch("train", batches)
    return dict(final_train=evals[-1][1], final_val=evals[-1][2], seconds=time.time() - started, evals=evals,
                torch_threads=torch.get_num_threads())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-iters", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2, help="runs per engine, in turns (ABBA order)")
    parser.add_argument("--worker", choices=("ours", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", default="/tmp/tinygrad_ed-train-run", help="where our run's checkpoint goes")
    args = parser.parse_args()
    if args.worker:
        result = run_ours(args.max_iters, args.out_dir) if args.worker == "ours" else run_torch(args.max_iters)
        print(json.dumps(result))
        return

    runs = {"ours": [], "torch": []}
    order = [engine for turn in harness.in_turns(runs, args.repeats) for engine in turn]
    for number, engine in enumerate(order, 1):
        print(f"run {number}/{len(order)}: {engine} ...", flush=True)
        completed = subprocess.run([sys.executable, __file__, "--worker", engine, "--max-iters", str(args.max_iters),
                                    "--out-dir", f"{args.out_dir}-{time.strftime('%H%M%S')}"],
                                   capture_output=True, text=True, cwd=ROOT)
        if completed.returncode != 0:
            sys.exit(f"{engine} run failed:\n{completed.stderr}")
        runs[engine].append(json.loads(completed.stdout.strip().splitlines()[-1]))
        print(f"  {runs[engine][-1]['seconds']:.1f} s, val loss {runs[engine][-1]['final_val']:.4f}", flush=True)
    median = {engine: statistics.median(run["seconds"] for run in results) for engine, results in runs.items()}

    date = time.strftime("%Y-%m-%d")
    command = "python bench/train_run.py" + ("" if args.max_iters == 2000 else f" --max-iters {args.max_iters}") \
        + ("" if args.repeats == 2 else f" --repeats {args.repeats}")
    lines = [f"# Default CPU training run, ours vs PyTorch eager, {date}", "",
             f"- command: `{command}`; {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"torch threads {runs['torch'][0]['torch_threads']}",
             "- config: examples/train_char_gpt.py's CPU preset (4/4/128, block 64, batch 12, lr 1e-3 with warmup 100 "
             "and cosine decay, AdamW betas (0.9, 0.99), weight decay 0.1, clip 1.0, eval 20 batches every 250)",
             f"- runs in this order: {', '.join(order)}; wall time from the start of train() (ours) or of the model's "
             "construction (torch) to the last evaluation, imports excluded",
             ""]
    seen, rows = {"ours": 0, "torch": 0}, []
    for number, engine in enumerate(order, 1):
        result, seen[engine] = runs[engine][seen[engine]], seen[engine] + 1
        rows.append([number, engine, f"{result['final_train']:.4f}", f"{result['final_val']:.4f}",
                     f"{result['seconds']:.1f}"])
    lines += harness.markdown_table(["run", "engine", "final train loss", "final val loss", "wall time (s)"], rows)
    ratio = median["ours"] / median["torch"]
    lines += ["", f"median wall time ours {median['ours']:.1f} s, torch {median['torch']:.1f} s: ours/torch "
              f"**{ratio:.2f}**; val loss ours − torch: "
              f"{runs['ours'][0]['final_val'] - runs['torch'][0]['final_val']:+.4f}"]
    report = "\n".join(lines) + "\n"
    print(report)
    harness.write_results(f"train-run-{date}", report, dict(order=order, runs=runs, machine=harness.machine_info()))


if __name__ == "__main__":
    main()
