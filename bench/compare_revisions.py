"""Is this change faster? Our training step in the working tree against the same step at another git revision.

A single timing on a shared machine moves by several percent from one minute to the next, more than most changes
move it. So both versions run side by side, each in a persistent process of its own (with its data-parallel
workers), and take turns: a chunk of iterations from one, then from the other, the order flipped every round.
A slow spell of the machine then hits both alike, and the ratio of their medians is what the change did.

    python bench/compare_revisions.py                    # working tree vs HEAD, the cpu config
    python bench/compare_revisions.py --base HEAD~3 --config tiny --rounds 20
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from our_step import SIZES, training_step

REPO_ROOT = Path(__file__).resolve().parent.parent


def serve(size):
    """One version's side: build the step from the current directory's code, then time chunks of steps on request."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "10")  # idle BLAS threads sleep instead of spinning
    sys.path.insert(0, os.getcwd())                          # this version's gpt/, optim/ and tinygrad_ed/
    from tinygrad_ed.parallel import usable_cores
    step, batches = training_step(size, usable_cores())
    for index in range(10):   # warm-up
        step(*batches[index % len(batches)])
    print("ready", flush=True)
    for line in sys.stdin:
        seconds = []
        for index in range(int(line)):
            start = time.perf_counter()
            step(*batches[index % len(batches)])
            seconds.append(time.perf_counter() - start)
        print(json.dumps(seconds), flush=True)


def reply(servers, name, expect=None):
    """The next line from a step server; exits naming the server if it died (its traceback is on stderr above)."""
    line = servers[name].stdout.readline()
    if not line or (expect is not None and line.strip() != expect):
        sys.exit(f"the step server for {name} stopped{': ' + line.strip() if line else ''}")
    return line


def _exits(server, seconds=10):
    """Whether the server ends by itself within `seconds` (it does once its stdin is closed)."""
    try:
        server.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD", help="the git revision to compare the working tree with")
    parser.add_argument("--config", choices=SIZES, default="cpu")
    parser.add_argument("--rounds", type=int, default=10, help="turns per version")
    parser.add_argument("--chunk", type=int, default=20, help="iterations per turn")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.config)

    with tempfile.TemporaryDirectory(prefix="tinygrad_ed-base-") as base:
        added = subprocess.run(["git", "worktree", "add", "--detach", base, args.base], cwd=REPO_ROOT,
                               capture_output=True, text=True)
        if added.returncode != 0:
            sys.exit(f"cannot check out {args.base!r}: {added.stderr.strip()}")
        servers = {}
        try:
            for name, directory in {"working tree": REPO_ROOT, args.base: Path(base)}.items():
                servers[name] = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve",
                                                  "--config", args.config], cwd=directory, stdin=subprocess.PIPE,
                                                 stdout=subprocess.PIPE, text=True)
            for name in servers:
                reply(servers, name, expect="ready")
            seconds = {name: [] for name in servers}
            for turn in range(args.rounds):
                order = list(servers) if turn % 2 == 0 else list(servers)[::-1]
                for name in order:
                    servers[name].stdin.write(f"{args.chunk}\n")
                    servers[name].stdin.flush()
                    seconds[name] += json.loads(reply(servers, name))
        finally:
            for server in servers.values():
                server.stdin.close()          # a server ends when its input does ...
                if not _exits(server):
                    server.terminate()            # ... or is stopped
            subprocess.run(["git", "worktree", "remove", "--force", base], cwd=REPO_ROOT, capture_output=True)
    median = {name: statistics.median(values) * 1000 for name, values in seconds.items()}
    print(f"{args.config}: working tree {median['working tree']:.2f} ms/iter, {args.base} {median[args.base]:.2f} "
          f"ms/iter (medians of {args.rounds * args.chunk} iterations each, in turns): working tree / "
          f"{args.base} = {median['working tree'] / median[args.base]:.3f}")


if __name__ == "__main__":
    main()
