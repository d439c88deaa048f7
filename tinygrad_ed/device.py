"""Devices: the one place that decides which array library runs a tensor's math.

A tensor lives on "cpu" (its data is a numpy array) or "cuda" (a cupy array). Every op asks
`array_module(device)` for `xp` and then writes its math once, as `xp.exp(x)`, `xp.matmul(a, b)`...
numpy and cupy share that API, so no op needs an `if cuda:` branch.

cupy is imported lazily, here and nowhere else: the package, and everything on the CPU, works
on a machine without cupy or without a GPU. Whether cuda is usable is decided here too, once per process, by
running a kernel and a matmul on it (cuda_problem); require_cuda turns the answer into the one error message that
--device cuda gives.
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


_CHECK_KERNEL = ("float32 x", "float32 y", "y = x + 1.0f", "tinygrad_ed_device_check")
_problems = {}  # cupy module (None: it did not import) -> why cuda is unusable with it, or None; asked once each


def cuda_problem():
    """None when cuda is usable, else why not, as a sentence naming the fix.

    Counting devices is not enough: cupy imports and sees a GPU on a machine without NVRTC (it compiles every
    kernel at first use) or cuBLAS (every matmul), and would then crash at the first op. So one tiny kernel is
    compiled, run and read back, and one tiny matmul too, once per process."""
    try:
        cupy = _import_cupy()
    except RuntimeError as error:  # _import_cupy's: no module named cupy
        return _problems.setdefault(None, f"cupy is not installed ({error.__cause__}): pip install -e '.[cuda]' "
                                          "on a machine with an NVIDIA GPU")
    except Exception as error:  # a cupy that fails while importing, e.g. on a CUDA library it cannot load
        return _problems.setdefault(None, f"cupy could not be imported ({_first_line(error)}): pip install -e "
                                          "'.[cuda]' brings the CUDA libraries it needs")
    if cupy not in _problems:
        _problems[cupy] = _check(cupy)
    return _problems[cupy]


def _check(cupy):
    """Why `cupy` cannot run our kernels and matmuls, or None when it can."""
    fix = "pip install -e '.[cuda]' brings it (cupy's ctk extra)"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # no driver, or a driver too old for cupy's CUDA
        return f"cupy {cupy.__version__} could not talk to the NVIDIA driver ({_first_line(error)})"
    if count == 0:
        return f"cupy {cupy.__version__} sees no NVIDIA GPU"
    found = f"cupy found {count} GPU{'s' if count > 1 else ''}"
    try:
        x = cupy.arange(4, dtype=cupy.float32)
        y = cupy.ElementwiseKernel(*_CHECK_KERNEL)(x).get()
    except Exception as error:
        return (f"{found} but could not compile and run a kernel (NVRTC or the CUDA headers missing? "
                f"{_first_line(error)}): {fix}")
    if not np.array_equal(y, np.arange(1, 5, dtype=np.float32)):
        return f"{found} but a kernel computing x + 1 gave {y.tolist()}: the GPU or its driver is not working"
    try:
        a = cupy.arange(4, dtype=cupy.float32).reshape(2, 2)
        product = cupy.matmul(a, a).get()
    except Exception as error:
        return f"{found} but could not multiply two matrices (cuBLAS missing? {_first_line(error)}): {fix}"
    if not np.array_equal(product, np.array([[2, 3], [6, 11]], dtype=np.float32)):
        return f"{found} but a 2x2 matmul gave {product.tolist()}: the GPU or its driver is not working"
    return None


def _first_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def cuda_available():
    """True when cupy imports, sees a GPU and compiles, runs and reads back a kernel and a matmul on it."""
    return cuda_problem() is None


def require_cuda(what="--device cuda"):
    """The one message for "cuda asked for, none usable": raises RuntimeError saying why, or returns quietly."""
    problem = cuda_problem()
    if problem is not None:
        raise RuntimeError(f"{what}: no usable GPU: {problem}; or use --device cpu")


def to_device(array, device):
    """Copy an array to `device` (a no-op when it is already there)."""
    if device_of(array) == check_device(device):
        return array
    if device == "cpu":
        return array.get()  # cupy -> numpy
    return _import_cupy().asarray(array)
