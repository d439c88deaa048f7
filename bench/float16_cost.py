"""Is float16 worth its cost on cuda? One training iteration in float32 and in float16, as train() runs each.

    python bench/float16_cost.py --size baby --batch 64 --iters 10 --json out.json   # on a GPU (gpu_check can call it)
    python tests/standin_run.py bench/float16_cost.py --size tiny --iters 2     # no GPU: the launch counts only

Each dtype is set up by gpt/training.py's initialise, so the iteration is the run's own: float16 is HalfPrecision
(a float16 copy of the float32 weights, refreshed at every forward) with the loss scaler, float32 the model itself;
both clip to the presets' grad_clip with AdamW. Warm-up iterations come first (cupy compiles each kernel at its first
launch), then each timed iteration ends with a device synchronize. The report gives the median milliseconds and, where
cupy is the stand-in (tests/cupy_standin.py), the kernel launches of one iteration, which is what a GPU's CPU side
pays a few microseconds for each.

What float16 has and has not (issue 14, item 5): GELU's two kernels exist for float16 (float16 stored, float
computed); LayerNorm and cross-entropy run their float32 kernels between casts; the gradients' clipping and unscaling
are one pass each over one flat float32 buffer; each float16 gradient is cast once, straight into that buffer, and
each weight once into its float16 copy. The attention softmax takes the plain xp code in float16 (float32 sums).
Launches per iteration on the stand-in, 6-layer GPT: float32 364, float16 565.
"""
import argparse
import json
import statistics
import sys
import time

import harness  # puts the repository on sys.path


def measure(dtype, size, batch, iters, warmup):
    """{"dtype", "ms_per_iter", "launches_per_iter"} for one dtype."""
    from gpt.config import TrainConfig
    from gpt.data import CharDataset
    from gpt.step import train_step
    from gpt.training import initialise
    from tinygrad_ed.device import array_module
    from tinygrad_ed.distributed import init_process_group

    n_layer, n_head, n_embd, block_size, default_batch = harness.dims(size)
    config = TrainConfig(device="cuda", dtype=dtype, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                         block_size=block_size, batch_size=batch or default_batch, dropout=0.0).resolved()
    cupy = array_module("cuda")
    with init_process_group("local", 1) as group:
        _, model, optimizer, scaler, batches = initialise(config, CharDataset(), group)
        lr, grad_clip = config.learning_rate, config.grad_clip
        step_batch = batches.next()

        def one_step():
            nonlocal step_batch
            step = train_step(model, optimizer, step_batch, batches.next, lr, grad_clip=grad_clip, scaler=scaler)
            step_batch = step.next_batch

        for _ in range(warmup):
            one_step()
        cupy.cuda.Device().synchronize()
        launches = getattr(cupy, "launches", None)  # the stand-in's counter; a real cupy has none
        seconds, counts = [], []
        for _ in range(iters):
            if launches is not None:
                launches.clear()
            began = time.perf_counter()
            one_step()
            cupy.cuda.Device().synchronize()
            seconds.append(time.perf_counter() - began)
            if launches is not None:
                counts.append(launches.count)
    return {"dtype": dtype, "ms_per_iter": statistics.median(seconds) * 1000,
            "launches_per_iter": statistics.median(counts) if counts else None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="baby", choices=harness.SIZES)
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the size's)")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 1:
        parser.error("--iters and --warmup must be at least 1 (the warm-up compiles the kernels)")
    results = [measure(dtype, args.size, args.batch, args.iters, args.warmup) for dtype in ("float32", "float16")]
    print(f"| dtype | ms/iter ({args.size}, median of {args.iters}) | kernel launches/iter |")
    print("|---|---|---|")
    for result in results:
        launches = "-" if result["launches_per_iter"] is None else f"{result['launches_per_iter']:.0f}"
        print(f"| {result['dtype']} | {result['ms_per_iter']:.1f} | {launches} |")
    if results[0]["launches_per_iter"] is not None:
        print("(cupy is the CPU stand-in here: the launch counts are what a GPU would be asked for, the times are not "
              "a GPU's)")
    ratio = results[1]["ms_per_iter"] / results[0]["ms_per_iter"]
    print(f"float16 / float32 time: {ratio:.2f} ({'worth it' if ratio < 1 else 'not worth it'} at this size)")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"size": args.size, "batch": args.batch, "results": results, "float16_over_float32": ratio},
                      file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
