"""Two settings of the C libraries under numpy that decide how fast training runs on the CPU, changed at run time.

1. How many threads numpy's BLAS (OpenBLAS) uses. Data parallelism (tinygrad_ed/distributed/local.py) runs one
   rank per core; if each worker's BLAS calls also started a thread per core,
   the cores would be oversubscribed and everything slows down several-fold. numpy has no API for this, so we find
   the OpenBLAS library numpy loaded and call its own setter.
2. Whether the C allocator (glibc malloc) hands freed memory back to the operating system. A training step
   allocates and frees the same large arrays every iteration; by default glibc maps each array over 128 KiB
   afresh and gives it back when freed, so every iteration pays a page fault per 4 KiB touched. Measured on the
   default CPU run: 40-55 ms per iteration, varying run to run, with up to 25% of the time in the kernel; keeping
   freed memory for reuse: 39 ms, every run.
Where a setting is not possible (another BLAS, another C library or OS) its function does nothing and returns
None.
"""
import ctypes
import re

_SYMBOL_PREFIXES = ("openblas", "scipy_openblas")   # plain OpenBLAS, and the build numpy's wheels ship
_SYMBOL_SUFFIXES = ("", "64_")                       # 32-bit and 64-bit integer interfaces


def _openblas():
    """(setter, getter) from the OpenBLAS that numpy loaded, or None."""
    import numpy  # noqa: F401  (make sure numpy's BLAS is loaded before looking for it)
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", maps.read())))
    except OSError:
        return None
    for path in paths:
        library = ctypes.CDLL(path)
        for prefix in _SYMBOL_PREFIXES:
            for suffix in _SYMBOL_SUFFIXES:
                setter = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    return setter, getter
    return None


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory():
    """Let glibc reuse freed memory instead of returning it to the OS: arrays up to 64 MiB come from the heap, and
    up to 1 GiB of freed heap stays mapped. The process's peak memory is unchanged; it just does not shrink.
    Returns True when set, None where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    return bool(mallopt(_M_MMAP_THRESHOLD, 64 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


def set_blas_threads(count):
    """Set the BLAS thread count; returns the previous count, or None where it cannot be changed."""
    functions = _openblas()
    if functions is None:
        return None
    setter, getter = functions
    previous = getter()
    setter(int(count))
    return previous


def share_cores(ranks):
    """Settings for `ranks` data-parallel ranks on this machine's CPU cores: each rank's BLAS gets its share of the
    cores (1 thread when there is one rank per core: more would oversubscribe them), and freed memory is kept."""
    import os
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    set_blas_threads(max(1, cores // ranks))
    keep_freed_memory()
