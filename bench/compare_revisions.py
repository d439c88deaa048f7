"""Is this change faster? Our training step in the working tree against the same step at another git revision.

A single timing on a shared machine moves by several percent from one minute to the next, more than most changes
move it. So both versions run side by side, each in a persistent process of its own (with its data-parallel
workers), and take turns (bench/harness.py): a chunk of iterations from one, then from the other, the order flipped
every round. A slow spell of the machine then hits both alike, and the ratio of their medians is what the change did.

    python bench/compare_revisions.py                    # working tree vs HEAD, the cpu config
    python bench/compare_revisions.py --base HEAD~3 --config tiny --rounds 20
"""
import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness


def measured_step_builder(checkout):
    """The training_step(size, workers) of the checkout being measured, from its own bench code: bench/harness.py,
    or bench/our_step.py at the revisions before the harness (from 503149d on)."""
    for name in ("harness", "our_step"):
        path = Path(checkout) / "bench" / f"{name}.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location(f"measured_{name}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.training_step
    sys.exit(f"{checkout} has neither bench/harness.py nor bench/our_step.py: nothing to measure")


def serve(size):
    """One version's side: build its step from the current directory's code, then time chunks of steps on request."""
    harness.quiet_blas_threads()
    sys.path.insert(0, os.getcwd())                          # this version's gpt/, optim/ and tinygrad_ed/
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # not the
    step, batches = measured_step_builder(os.getcwd())(size, cores)  # checkout's helper: its name has moved before
    harness.time_steps(step, batches, 10)                   # warm-up
    done = {"iterations": 10}

    def run(n):
        seconds = harness.time_steps(step, batches, n, start=done["iterations"])
        done["iterations"] += n
        return seconds

    harness.serve({"run": run}, ready="ready")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD", help="the git revision to compare the working tree with")
    parser.add_argument("--config", choices=harness.SIZES, default="cpu")
    parser.add_argument("--rounds", type=int, default=10, help="turns per version")
    parser.add_argument("--chunk", type=int, default=20, help="iterations per turn")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.config)

    with tempfile.TemporaryDirectory(prefix="tinygrad_ed-base-") as base:
        added = subprocess.run(["git", "worktree", "add", "--detach", base, args.base], cwd=harness.REPO_ROOT,
                               capture_output=True, text=True)
        if added.returncode != 0:
            sys.exit(f"cannot check out {args.base!r}: {added.stderr.strip()}")
        servers = {}
        try:
            for name, directory in {"working tree": harness.REPO_ROOT, args.base: Path(base)}.items():
                servers[name] = harness.Server(name, [sys.executable, str(Path(__file__).resolve()), "--serve",
                                                      "--config", args.config], cwd=directory)
            for server in servers.values():
                if server.receive() != "ready":
                    sys.exit(f"the step server for {server.name} did not start")
            seconds = harness.take_turns(servers, args.rounds * args.chunk, args.rounds,
                                         lambda name, n: servers[name].request(cmd="run", n=n))
        except RuntimeError as error:
            sys.exit(str(error))
        finally:
            for server in servers.values():
                server.close(timeout=10)
            time.sleep(0.1)
            subprocess.run(["git", "worktree", "remove", "--force", base], cwd=harness.REPO_ROOT, capture_output=True)
    median = {name: statistics.median(values) * 1000 for name, values in seconds.items()}
    print(f"{args.config}: working tree {median['working tree']:.2f} ms/iter, {args.base} {median[args.base]:.2f} "
          f"ms/iter (medians of {args.rounds * args.chunk} iterations each, in turns): working tree / "
          f"{args.base} = {median['working tree'] / median[args.base]:.3f}")


if __name__ == "__main__":
    main()
