"""How many threads numpy's BLAS (OpenBLAS) uses, changed at run time.

Data parallelism (tinygrad_ed/parallel.py) runs one Python thread per core; if each of those BLAS calls also
started a thread per core, the cores would be oversubscribed and everything slows down several-fold. numpy has
no API for this, so we find the OpenBLAS library numpy loaded and call its own setter. Where that is not
possible (another BLAS, another OS) the functions do nothing and say so by returning None.
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


def set_blas_threads(count):
    """Set the BLAS thread count; returns the previous count, or None where it cannot be changed."""
    functions = _openblas()
    if functions is None:
        return None
    setter, getter = functions
    previous = getter()
    setter(int(count))
    return previous
