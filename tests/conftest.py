"""Shared test setup: the `device` every op test runs on, and hypothesis' budget.

A test that takes a `device` argument runs once on "cpu" and once on "cuda"; the cuda run carries the `cuda`
marker (deselect with -m "not cuda") and skips, with the reason, where cupy or a GPU is missing.
"""
import os

import pytest
from hypothesis import settings

# "ci" keeps the suite to a few minutes on two cores; HYPOTHESIS_PROFILE=thorough searches harder.
# deadline=None: a gradient check's run time depends on the drawn shape, so a per-example deadline would flake.
settings.register_profile("ci", max_examples=25, deadline=None)
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def skip_without_cuda():
    from tinygrad_ed.device import cuda_available  # imported here: collecting tests must not need the package
    if not cuda_available():
        pytest.skip("cuda: cupy is not installed or sees no NVIDIA GPU")


@pytest.fixture(scope="session")
def cuda():
    """For tests that only make sense on a GPU: the device name "cuda", or a clean skip."""
    skip_without_cuda()
    return "cuda"


# scope="session": hypothesis runs many examples inside one test call, and a function-scoped fixture would not
# be reset between them (hypothesis refuses those); a device name has nothing to reset anyway.
@pytest.fixture(scope="session", params=DEVICES)
def device(request):
    if request.param == "cuda":
        skip_without_cuda()
    return request.param
