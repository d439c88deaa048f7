"""Devices: the one place that decides which array library runs a tensor's math.

A tensor lives on "cpu" (its data is a numpy array) or "cuda" (a cupy array). Every op asks
`array_module(device)` for `xp` and then writes its math once, as `xp.exp(x)`, `xp.matmul(a, b)`...
numpy and cupy share that API, so no op needs an `if cuda:` branch.

cupy is imported lazily, here and nowhere else: the package, and everything on the CPU, works
on a machine without cupy or without a GPU.
"""
import numpy as np

DEVICES = ("cpu", "cuda")

_cupy = None  # the cupy module once imported; stays None until a cuda tensor is asked for


def _import_cupy():
    global _cupy
    if _cupy is None:
        try:
            import cupy
        except ImportError as error:
            raise RuntimeError(
                "device 'cuda' needs cupy: install it with pip install -e '.[cuda]' "
                "(or the cupy wheel that matches your CUDA version)") from error
        _cupy = cupy
    return _cupy


def check_device(device):
    """Return the device name, or raise naming the devices that exist."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of {DEVICES}")
    return device


def array_module(device):
    """numpy for "cpu", cupy for "cuda": the `xp` an op computes with."""
    return np if check_device(device) == "cpu" else _import_cupy()


def device_of(array):
    """The device an array lives on: "cuda" for a cupy array, "cpu" for anything else."""
    return "cpu" if isinstance(array, (np.ndarray, np.generic)) or _cupy is None \
        or not isinstance(array, _cupy.ndarray) else "cuda"


def cuda_available():
    """True when cupy imports and sees at least one GPU."""
    try:
        cupy = _import_cupy()
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver or no device: all mean "no cuda here"
        return False


def to_device(array, device):
    """Copy an array to `device` (a no-op when it is already there)."""
    if device_of(array) == check_device(device):
        return array
    if device == "cpu":
        return array.get()  # cupy -> numpy
    return _import_cupy().asarray(array)
