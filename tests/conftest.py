"""Shared test setup: the `device` every op test runs on, and hypothesis' budget.

A test that takes a `device` argument runs once on "cpu" and once on "cuda"; the cuda run carries the `cuda`
marker (deselect with -m "not cuda"). On a machine with a usable GPU "cuda" is cupy on it; everywhere else it is
tests/cupy_standin.py, a CPU stand-in for cupy that keeps cupy's rules (its arrays are not numpy arrays, reading one
back is counted), installed for that one test only. TINYGRAD_ED_STANDIN=0 skips the cuda runs instead.
"""
import os
import sys

import pytest
from hypothesis import HealthCheck, settings

# "ci" keeps the suite to a few minutes on two cores; HYPOTHESIS_PROFILE=thorough searches harder.
# deadline=None: a gradient check's run time depends on the drawn shape, so a per-example deadline would flake.
# function_scoped_fixture: `device` installs the stand-in once per test, which every example of it shares on purpose
for _name, _examples in (("ci", 25), ("thorough", 300)):
    settings.register_profile(_name, max_examples=_examples, deadline=None,
                              suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def real_gpu():
    """Whether a real cupy sees a usable GPU (asked once, before any stand-in is installed)."""
    if not hasattr(real_gpu, "answer"):
        from tinygrad_ed.device import cuda_available  # imported here: collecting tests must not need the package
        real_gpu.answer = cuda_available()
    return real_gpu.answer


def use_cuda(monkeypatch):
    """Make device "cuda" usable for one test: the real GPU where there is one, else the cupy stand-in (returned)."""
    if real_gpu():
        return None
    if os.environ.get("TINYGRAD_ED_STANDIN") == "0":
        pytest.skip("cuda: no usable GPU, and TINYGRAD_ED_STANDIN=0 turns the cupy stand-in off")
    import cupy_standin
    from tinygrad_ed import device as device_module
    cupy_standin.TRANSFERS.clear()
    monkeypatch.setattr(device_module, "_cupy", cupy_standin.module)
    monkeypatch.setitem(sys.modules, "cupy", cupy_standin.module)
    return cupy_standin.module


@pytest.fixture
def cuda(monkeypatch):
    """For tests that only run on cuda: the device name "cuda" (a GPU, or the stand-in)."""
    use_cuda(monkeypatch)
    return "cuda"


@pytest.fixture
def standin(monkeypatch):
    """The cupy stand-in itself, installed as device "cuda", for tests of what only it can count; skipped on a GPU."""
    if real_gpu():
        pytest.skip("a real GPU is here: the stand-in's counts are for the machines without one")
    return use_cuda(monkeypatch)


@pytest.fixture(params=DEVICES)
def device(request, monkeypatch):
    if request.param == "cuda":
        use_cuda(monkeypatch)
    return request.param
