"""Does the GPU compute what the CPU computes? Prints a table, writes JSON, exits 1 if a comparison fails.

    python bench/gpu_equivalence.py                          # every section, on cuda
    python bench/gpu_equivalence.py --sections kernels,model
    python bench/gpu_equivalence.py --device cpu             # a dry run of this script: the CPU against itself
    python bench/gpu_equivalence.py --quick                  # every section at the tiny GPT's sizes (seconds)

Sections:
  kernels  each fused kernel (GELU, LayerNorm, cross-entropy, attention softmax, AdamW) three ways from the same
           inputs: fused on cuda, the plain cupy code on cuda (the same ops inside plain_path()), and the CPU; forward
           output and every input's gradient. Then the time of the fused and the plain path on cuda at the baby
           model's shapes with batch 64.
  model    the baby GPT (6 layers, 6 heads, 384 wide, block 256, float32) from the same weights and batch on cpu and
           on cuda, fused and plain: the loss and every parameter's gradient.
  float16  train --float16-iters iterations of the GPU preset in float16 and in float32 from the same seed: final
           train/val loss and ms per iteration of each.
A difference is max |a − b| / max |b| over one tensor (so rounding is measured against the tensor's own scale).
Times are medians after warm-up iterations, so that cupy's kernel compiles at first use are not in them. The last
line, `SUMMARY: ...`, gives each section's verdict with its figure (scripts/gpu_check.sh puts it in its table).
--quick runs every section at the tiny GPT's sizes (2 layers, 64 wide, context 16): for a dry run of the script on
the CPU stand-in for cupy (tests/test_gpu_check.py), not for numbers.
"""
import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import harness
import numpy as np

from gpt import GPT, CharDataset, GPTConfig
from gpt.config import gpu_preset
from gpt.training import train
from optim import AdamW
from tinygrad_ed import Tensor, cross_entropy, layer_norm, scaled_dot_product_attention
from tinygrad_ed.device import array_module, require_cuda, to_device
from tinygrad_ed.fast import plain_path

relative_difference = harness.relative_difference

KERNEL_TOLERANCE = 1e-5    # one op in float32: its paths differ by a few roundings
MODEL_TOLERANCE = 1e-4     # a whole forward and backward: ~100 ops' roundings add up
FLOAT16_TOLERANCE = 0.1    # |val loss float16 − val loss float32| after the same run: loss scaling works
BABY = harness.model_spec("baby")  # 6 layers, 6 heads, 384 wide, block 256, as the GPU preset (no biases)
TINY = harness.model_spec("tiny")  # 2 layers, 2 heads, 64 wide, block 16: --quick


def synchronize(device):
    if device == "cuda":
        array_module(device).cuda.Device().synchronize()


def median_ms(step, device, reps=10, warmup=2):
    """Median milliseconds of step(), waiting for the device after each call."""
    harness.time_steps(step, [()], warmup, synchronize=lambda: synchronize(device))
    return statistics.median(harness.time_steps(step, [()], reps, synchronize=lambda: synchronize(device))) * 1e3


# ----------------------------------------------------------------------------------------------------------
# kernels

def op_cases(batch, spec=BABY):
    """name -> (input arrays, each requiring grad; function of their Tensors), at the model's shapes."""
    rng = np.random.default_rng(0)
    T, C, H, V = spec["block_size"], spec["n_embd"], spec["n_head"], spec["vocab_size"]

    def data(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    targets = rng.integers(0, V, (batch, T))
    return {
        "gelu (B, T, 4C)": ([data(batch, T, 4 * C, scale=2)], lambda x: x.gelu()),
        "layer_norm (B, T, C)": ([data(batch, T, C, scale=2), data(C), data(C)],
                                 lambda x, w, b: layer_norm(x, w, b)),
        "cross_entropy (B, T, V)": ([data(batch, T, V, scale=3)],
                                    lambda logits: cross_entropy(logits, Tensor(targets, device=logits.device))),
        "attention, causal (B, H, T, D)": ([data(batch, H, T, C // H) for _ in range(3)],
                                           lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True)),
    }


def forward_backward(case, device):
    """The op's output and every input's gradient (numpy), for a fixed upstream gradient. It is random (seeded), not
    a ramp: a ramp's column sums (a bias's gradient) nearly cancel, and their rounding then differs from one summation
    order to another by 1e-3 of their largest, which would fail a perfect GPU."""
    inputs, function = case
    tensors = [Tensor(array, device=device, requires_grad=True) for array in inputs]
    out = function(*tensors)
    upstream = np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
    out.backward(Tensor(upstream, device=device))
    return [out.numpy()] + [to_device(tensor.grad, "cpu") for tensor in tensors]


def adamw_results(shapes, device, steps=3):
    """Weights, m and v after `steps` AdamW updates (nanoGPT's settings) of parameters of these shapes."""
    numbers = np.random.default_rng(1)
    params = [Tensor((numbers.standard_normal(shape) * 0.02).astype(np.float32), device=device, requires_grad=True)
              for shape in shapes]
    optimizer = AdamW(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    for step in range(steps):
        for param in params:
            param.grad = to_device((numbers.standard_normal(param.shape) * 10.0 ** -step).astype(np.float32), device)
        optimizer.step()
    return [p.numpy() for p in params] + [to_device(optimizer.state[p][k], "cpu") for p in params for k in ("m", "v")]


def worst(results, reference):
    return max(relative_difference(a, b) for a, b in zip(results, reference))


def kernels_section(device, report, spec=BABY, timing_batch=64):
    rows = []
    cases = op_cases(4, spec)
    for name, case in cases.items():
        fused_results = forward_backward(case, device)
        with plain_path():
            plain_results = forward_backward(case, device)
        cpu_results = forward_backward(case, "cpu")
        rows.append({"op": name, "fused_vs_plain": worst(fused_results, plain_results),
                     "fused_vs_cpu": worst(fused_results, cpu_results),
                     "plain_vs_cpu": worst(plain_results, cpu_results)})
    C = spec["n_embd"]
    shapes = [(3 * C, C), (C,), (spec["vocab_size"], C)]
    fused_results = adamw_results(shapes, device)
    with plain_path():
        plain_results = adamw_results(shapes, device)
    cpu_results = adamw_results(shapes, "cpu")
    rows.append({"op": "adamw, 3 steps", "fused_vs_plain": worst(fused_results, plain_results),
                 "fused_vs_cpu": worst(fused_results, cpu_results),
                 "plain_vs_cpu": worst(plain_results, cpu_results)})
    for row in rows:
        row["ok"] = max(row["fused_vs_plain"], row["fused_vs_cpu"], row["plain_vs_cpu"]) <= KERNEL_TOLERANCE

    # speed: forward + backward of each op at batch 64 on the device, fused and plain (batch 2 in a cpu dry run)
    timing_batch = timing_batch if device == "cuda" else 2
    timings = []
    for name, (inputs, function) in op_cases(timing_batch, spec).items():
        tensors = [Tensor(array, device=device, requires_grad=True) for array in inputs]
        upstream = None

        def step():
            nonlocal upstream
            for tensor in tensors:
                tensor.grad = None
            out = function(*tensors)
            if upstream is None:
                upstream = Tensor(array_module(device).ones(out.shape, dtype=np.float32), device=device)
            out.backward(upstream)

        fused_ms = median_ms(step, device)
        with plain_path():
            plain_ms = median_ms(step, device)
        timings.append({"op": name, "fused_ms": fused_ms, "plain_ms": plain_ms})
    report["kernels"] = {"tolerance": KERNEL_TOLERANCE, "comparisons": rows, "timing_batch": timing_batch,
                         "timings": timings}

    lines = [f"### fused kernels: max relative difference (tolerance {KERNEL_TOLERANCE:g})", "",
             "| op | fused vs plain cuda | fused vs cpu | plain cuda vs cpu | ok |", "|---|---|---|---|---|"]
    lines += [f"| {r['op']} | {r['fused_vs_plain']:.1e} | {r['fused_vs_cpu']:.1e} | {r['plain_vs_cpu']:.1e} | "
              f"{'yes' if r['ok'] else '**NO**'} |" for r in rows]
    lines += ["", f"### forward + backward time on the device, batch {timing_batch} (median of 10)", "",
              "| op | fused ms | plain ms | plain / fused |", "|---|---|---|---|"]
    lines += [f"| {t['op']} | {t['fused_ms']:.3f} | {t['plain_ms']:.3f} | {t['plain_ms'] / t['fused_ms']:.1f}× |"
              for t in timings]
    largest = max(max(r["fused_vs_plain"], r["fused_vs_cpu"], r["plain_vs_cpu"]) for r in rows)
    figure = f"max diff {largest:.1e} (tolerance {KERNEL_TOLERANCE:g})"
    return lines, all(r["ok"] for r in rows), figure


# ----------------------------------------------------------------------------------------------------------
# model

def model_results(device, batch, spec=BABY):
    """Loss and every parameter's gradient of the GPT on one batch of tiny Shakespeare (float32, dropout 0)."""
    model = GPT(GPTConfig(**spec), device=device, seed=1337)
    x, y = CharDataset().get_batch("train", batch, spec["block_size"], np.random.default_rng(1337), device)
    _, loss = model(x, y)
    loss.backward()
    named = list(model.named_parameters())
    return [name for name, _ in named], [loss.numpy()] + [to_device(p.grad, "cpu") for _, p in named]


def model_section(device, report, batch=8, spec=BABY):
    names, cpu = model_results("cpu", batch, spec)
    fused_names, fused_results = model_results(device, batch, spec)
    with plain_path():
        _, plain_results = model_results(device, batch, spec)
    assert fused_names == names
    labels = ["loss"] + [f"grad {name}" for name in names]
    rows = [{"tensor": label, "fused_vs_cpu": relative_difference(f, c), "plain_vs_cpu": relative_difference(p, c),
             "fused_vs_plain": relative_difference(f, p)}
            for label, f, p, c in zip(labels, fused_results, plain_results, cpu)]
    ok = all(max(r["fused_vs_cpu"], r["plain_vs_cpu"], r["fused_vs_plain"]) <= MODEL_TOLERANCE for r in rows)
    report["model"] = {"tolerance": MODEL_TOLERANCE, "batch": batch, "config": spec, "loss_cpu": float(cpu[0]),
                       "loss_fused": float(fused_results[0]), "loss_plain": float(plain_results[0]),
                       "tensors": rows, "ok": ok}
    worst_rows = sorted(rows, key=lambda r: -max(r["fused_vs_cpu"], r["plain_vs_cpu"]))[:5]
    lines = [f"### GPT {spec['n_layer']}/{spec['n_head']}/{spec['n_embd']}, block {spec['block_size']}, batch "
             f"{batch}, float32: cuda against cpu (tolerance {MODEL_TOLERANCE:g})", "",
             f"loss: cpu {float(cpu[0]):.7f}, cuda fused {float(fused_results[0]):.7f}, "
             f"cuda plain {float(plain_results[0]):.7f}; {len(names)} gradients compared, the five worst:", "",
             "| tensor | fused vs cpu | plain vs cpu | fused vs plain |", "|---|---|---|---|"]
    lines += [f"| {r['tensor']} | {r['fused_vs_cpu']:.1e} | {r['plain_vs_cpu']:.1e} | {r['fused_vs_plain']:.1e} |"
              for r in worst_rows]
    lines += ["", f"every tensor within tolerance: {'yes' if ok else '**NO**'}"]
    largest = max(max(r["fused_vs_cpu"], r["plain_vs_cpu"], r["fused_vs_plain"]) for r in rows)
    return lines, ok, f"max diff {largest:.1e} (tolerance {MODEL_TOLERANCE:g}), loss {float(fused_results[0]):.4f}"


# ----------------------------------------------------------------------------------------------------------
# float16

LOGGED_MS_PER_ITER = re.compile(r"^iter (\d+): .*?([0-9.]+) ms/iter")


def warm_ms_per_iter(lines, fallback):
    """ms/iter of the last log line (the mean since the log line before it, so past the first iterations, whose
    kernel compiles would swamp the figure), or `fallback` when fewer than two were logged."""
    logged = [match for match in map(LOGGED_MS_PER_ITER.match, lines) if match]
    return float(logged[-1].group(2)) if len(logged) >= 2 else fallback


def float16_section(device, report, iters, sizes=None):
    """`iters` iterations of the GPU preset (with `sizes`, e.g. a smaller model, on top) in float32 and float16."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="gpu-equivalence-") as scratch:
        for dtype in ("float32", "float16"):
            settings = dict(device=device, dtype=dtype, max_iters=iters, eval_interval=iters, eval_iters=20,
                            log_interval=max(iters // 4, 1), out_dir=str(Path(scratch) / dtype))
            config = replace(gpu_preset(), **{**settings, **(sizes or {})})
            lines = []
            result = train(config, log=lines.append)
            _, train_loss, val_loss = result.evals[-1]
            results[dtype] = {"train_loss": train_loss, "val_loss": val_loss, "start_val_loss": result.evals[0][2],
                              "ms_per_iter": warm_ms_per_iter(lines, result.ms_per_iter),
                              "ms_per_iter_with_warmup": result.ms_per_iter}
    difference = abs(results["float16"]["val_loss"] - results["float32"]["val_loss"])
    ok = difference <= FLOAT16_TOLERANCE
    report["float16"] = {"iters": iters, "sizes": sizes or "the GPU preset's", "results": results,
                         "val_loss_difference": difference, "tolerance": FLOAT16_TOLERANCE, "ok": ok}
    lines = [f"### float16 against float32: {iters} iterations of the GPU preset"
             f"{' with ' + str(sizes) if sizes else ''} from the same seed", "",
             "| dtype | val loss at 0 | train loss | val loss | ms/iter (after warm-up) |", "|---|---|---|---|---|"]
    lines += [f"| {dtype} | {r['start_val_loss']:.4f} | {r['train_loss']:.4f} | {r['val_loss']:.4f} | "
              f"{r['ms_per_iter']:.1f} |" for dtype, r in results.items()]
    lines += ["", f"|val loss difference| = {difference:.4f} (tolerance {FLOAT16_TOLERANCE}): "
              f"{'ok' if ok else '**too far apart**'}"]
    f16, f32 = results["float16"], results["float32"]
    figure = (f"val {f16['val_loss']:.4f} vs float32 {f32['val_loss']:.4f} (difference {difference:.4f}, tolerance "
              f"{FLOAT16_TOLERANCE}), {f16['ms_per_iter']:.1f} vs {f32['ms_per_iter']:.1f} ms/iter")
    return lines, ok, figure


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="kernels,model,float16", help="comma-separated: kernels,model,float16")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cpu: a dry run of the script itself (the CPU compared with itself; float16 skipped)")
    parser.add_argument("--float16-iters", type=int, default=200, help="training iterations per dtype")
    parser.add_argument("--quick", action="store_true",
                        help="every section at the tiny GPT's sizes: a dry run on the CPU stand-in for cupy")
    default_json = harness.RESULTS_DIR / f"gpu-equivalence-{time.strftime('%F')}.json"
    parser.add_argument("--json", default=str(default_json),
                        help="where the JSON report goes (rewritten after every section)")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        try:
            require_cuda("gpu_equivalence --device cuda")
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return 2
    sections = args.sections.split(",")
    unknown = set(sections) - {"kernels", "model", "float16"}
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")

    report = {"date": time.strftime("%F %T"), "device": args.device}
    if args.device == "cuda":
        cupy = array_module("cuda")
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        report["gpu"], report["cupy"] = name.decode() if isinstance(name, bytes) else name, cupy.__version__
    print(f"## GPU equivalence ({report.get('gpu', args.device)})\n", flush=True)
    verdicts = {}
    json_path = Path(args.json)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    spec = TINY if args.quick else BABY
    figures = {}
    for name in sections:
        if name == "float16" and (args.device != "cuda" or args.float16_iters < 1):
            continue  # float16 training needs cuda (TrainConfig refuses it on the CPU)
        started = time.perf_counter()
        if name == "kernels":
            section_lines, verdicts[name], figures[name] = kernels_section(args.device, report, spec,
                                                                           2 if args.quick else 64)
        elif name == "model":
            section_lines, verdicts[name], figures[name] = model_section(args.device, report, spec=spec)
        else:
            sizes = {key: spec[key] for key in ("n_layer", "n_head", "n_embd", "block_size")} if args.quick else None
            if sizes:
                sizes.update(batch_size=8, eval_iters=2)
            section_lines, verdicts[name], figures[name] = float16_section(args.device, report, args.float16_iters,
                                                                           sizes)
        report.setdefault("seconds", {})[name] = time.perf_counter() - started
        print("\n".join(section_lines) + "\n", flush=True)
        json_path.write_text(json.dumps(report, indent=1) + "\n")  # after every section: a timeout keeps the rest
    print(f"wrote {json_path}")
    failed = [name for name, ok in verdicts.items() if not ok]
    print(f"SUMMARY: {len(verdicts) - len(failed)}/{len(verdicts)} sections agree"
          + (f"; FAILED: {', '.join(failed)}" if failed else "") + "".join(
              f"; {name} {'ok' if verdicts[name] else 'FAILED'}: {figure}" for name, figure in figures.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
