"""Run a Python program with the cupy stand-in (tests/cupy_standin.py) as its cupy, so that `--device cuda` runs on
the CPU in a process of its own:

    python tests/run_on_standin.py examples/train_char_gpt.py --device cuda --max-iters 3

The program sees its own path as sys.argv[0] and the rest of the command line as its arguments. At exit, the
stand-in's counts (device-to-host reads, host-to-device copies, kernel launches) are written as JSON to the file
named by TINYGRAD_ED_STANDIN_COUNTS, when that is set.
"""
import atexit
import json
import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))               # cupy_standin
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's packages

import cupy_standin  # noqa: E402


def _write_counts(path):
    transfers = cupy_standin.TRANSFERS
    with open(path, "w") as file:
        json.dump({"reads": transfers.reads, "copies": transfers.copies,
                   "launches": dict(cupy_standin.LAUNCHES.names)}, file)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python tests/run_on_standin.py PROGRAM.py [ARGUMENTS...]")
    cupy_standin.install()
    if os.environ.get("TINYGRAD_ED_STANDIN_COUNTS"):
        atexit.register(_write_counts, os.environ["TINYGRAD_ED_STANDIN_COUNTS"])
    program = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path[0:0] = [os.path.dirname(os.path.abspath(program))]
    runpy.run_path(program, run_name="__main__")
