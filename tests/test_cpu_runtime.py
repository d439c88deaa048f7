"""The CPU runtime settings the local data-parallel ranks apply: BLAS threads and the allocator's reuse of freed memory."""
import platform

import pytest

from tinygrad_ed.fast.cpu_runtime import keep_freed_memory, set_blas_threads

glibc_linux = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                 reason="these settings exist in glibc on Linux")


@glibc_linux
def test_blas_thread_count_can_be_changed_and_restored():
    previous = set_blas_threads(1)
    if previous is None:
        pytest.skip("numpy's BLAS here is not OpenBLAS")
    assert set_blas_threads(previous) == 1          # the setter reports the count it replaced
    assert set_blas_threads(previous) == previous


@glibc_linux
def test_the_allocator_keeps_freed_memory():
    assert keep_freed_memory() is True
