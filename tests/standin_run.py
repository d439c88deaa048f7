"""Run a script or module with the cupy stand-in (tests/cupy_standin.py) as cupy, as tests/conftest.py installs it
for one test: scripts/gpu_check.sh --dry-run runs its python parts through this on a machine without a GPU.

    python tests/standin_run.py bench/gpu_equivalence.py --quick
    python tests/standin_run.py -m pytest -q tests/test_cuda.py
    python tests/standin_run.py -c "import cupy; print(cupy.__version__)"
"""
import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # cupy_standin
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's packages

import cupy_standin  # noqa: E402
from tinygrad_ed import device  # noqa: E402


def install():
    """Make `import cupy` and device "cuda" the stand-in, for the rest of this process."""
    sys.modules["cupy"] = cupy_standin.module
    device._cupy = cupy_standin.module


def main(argv):
    if not argv:
        sys.exit(__doc__)
    install()
    if argv[0] == "-c":
        sys.argv = ["-c"] + argv[2:]
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
    elif argv[0] == "-m":
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))  # as python puts a script's folder first
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
