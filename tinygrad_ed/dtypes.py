"""Which dtype an op's result has: PyTorch's type promotion, in one function that every op asks.

A learner moves between this engine and PyTorch, so the rules are PyTorch's, not numpy's (numpy would turn
float32 · int64 or float32 · np.float64(2) into float64, and the training run would silently halve its speed):

  categories      bool < integer < floating; the result has the highest category among the operands
  three kinds     tensors with at least one axis, 0-d tensors, and numbers (Python or numpy scalars). A kind only
                  decides the result when its category is higher than that of every kind before it, so
                    float32 tensor · 2.5            -> float32   (a number never widens a tensor)
                    float32 tensor · np.float64(2)  -> float32
                    int64 tensor · 0.5              -> float32   (a float number with an integer tensor: the
                                                                   default float dtype, float32)
                    float32 tensor · 0-d float64    -> float32
                    float32 tensor · float64 tensor -> float64   (two tensors: the wider)
                    int64 tensor · float32 tensor   -> float32   (numpy: float64)
  floating ops    int / int and float functions of integer tensors (exp, log, softmax, ...) give float32
"""
from functools import reduce

import numpy as np

FLOAT_DTYPES = (np.float16, np.float32, np.float64)
DEFAULT_FLOAT = np.dtype(np.float32)       # what Python floats become, as torch.get_default_dtype()
_CATEGORY = {"b": 0, "i": 1, "u": 1, "f": 2}
_NUMBER_DTYPE = {0: np.dtype(bool), 1: np.dtype(np.int64), 2: DEFAULT_FLOAT}  # a number's dtype, by category


def check_dtype(dtype):
    """The dtype, or a TypeError: tensors hold bools, integers or float16/32/64 (no strings, objects, complex)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in _CATEGORY or (dtype.kind == "f" and dtype.type not in FLOAT_DTYPES):
        raise TypeError(f"Tensor: dtype {dtype} is not supported; a tensor holds bool, integers or "
                        f"float16/float32/float64 numbers")
    return dtype


def is_floating(dtype):
    return np.dtype(dtype).kind == "f"


def _category(dtype):
    return _CATEGORY[np.dtype(dtype).kind]


def _promote(a, b):
    """Two dtypes of one kind: the higher category wins outright, within a category the wider one."""
    if _category(a) != _category(b):
        return a if _category(a) > _category(b) else b
    wider = np.promote_types(a, b)
    return wider if _category(wider) == _category(a) else np.dtype(np.int64)  # uint64 with int64: numpy says float64


def is_number(value):
    return isinstance(value, (bool, int, float, np.generic))


def result_dtype(*operands, floating=False):
    """The dtype of an op on `operands` (tensors, arrays and numbers), by the rules above; with `floating`, an
    integer or bool result becomes float32 (true division, exp, ...)."""
    tensors = [np.dtype(x.dtype) for x in operands if not is_number(x) and x.ndim > 0]
    zero_dim = [np.dtype(x.dtype) for x in operands if not is_number(x) and x.ndim == 0]
    numbers = [_NUMBER_DTYPE[max(_category(np.asarray(x).dtype) for x in operands if is_number(x))]] \
        if any(is_number(x) for x in operands) else []
    result = None
    for kind in (tensors, zero_dim, numbers):
        if kind:
            dtype = reduce(_promote, kind)
            if result is None or _category(dtype) > _category(result):
                result = dtype
    return DEFAULT_FLOAT if floating and not is_floating(result) else result
