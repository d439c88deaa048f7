"""A CPU stand-in for CuPy 14, faithful where our code could go wrong, so that device="cuda" runs in every CI build.

What it keeps of cupy (and a GPU) that plain numpy would let slip:
  - its arrays are not numpy arrays: np.asarray(a), a numpy function given one, implicit conversion raise TypeError
    with cupy's own message; reading one back (a.get(), cupy.asnumpy, .item(), float(), int(), bool(), .tolist(),
    printing) is a device-to-host read, and is counted with its call site in `reads`
  - a numpy array handed to a cupy function, ufunc, kernel, index or assignment raises TypeError, as on cupy; only
    cupy.asarray/cupy.array (and ndarray.set) take host data, and each such host-to-device copy is counted in `copies`
  - only names that exist in CuPy 14 exist here (tests/cupy14_names.txt, taken from an installed cupy-cuda12x 14.2.0
    by the script at the end of this docstring); reductions give 0-d arrays, never Python or numpy scalars
  - cupy.random is another generator than numpy's (its streams differ from numpy's for the same seed)
  - ElementwiseKernel, ReductionKernel, RawKernel and RawModule check their arguments as a launch needs them (cupy
    arrays, exact dtypes, numpy scalars of the exact C type for a raw kernel, contiguous pointees, grid and block
    sizes) and compute with the numpy reference registered for the kernel's name in KERNEL_REFERENCES below
  - every kernel launch is counted in `launches` (a ufunc, a reduction, a copy, a fill, a matrix product, a project
    kernel: one each; views, reshapes and empty arrays none), so a test can show how many launches a step costs
  - float16 matrix products are computed in float32 and rounded back, as cuBLAS accumulates a float16 GEMM in float32
    (numpy's float16 matmul is also ~100x slower than its float32 one)
What it cannot show: that the CUDA source compiles (tests/test_kernel_compile.py does, with NVRTC) or computes what
its reference says (tests/test_cuda_kernels.py runs the source on the CPU), anything about speed or streams.

The name list was written by (with cupy-cuda12x installed; it imports without a GPU):
    python -c "import cupy, tests.cupy_standin as s; s.write_names(cupy)"
"""
import ctypes
import math
import os
import re
import sys
import types
from pathlib import Path

import numpy as np

from tinygrad_ed.erf import erf_fast

NAMES_FILE = Path(__file__).with_name("cupy14_names.txt")
VERSION = "14.2.0"
SECTIONS = {"cupy": lambda cupy: cupy, "cupy.ndarray": lambda cupy: cupy.ndarray, "cupy.ufunc": lambda c: c.add,
            "cupy.random": lambda c: c.random, "cupy.random.Generator": lambda c: c.random.Generator,
            "cupy.cuda": lambda c: c.cuda, "cupy.cuda.runtime": lambda c: c.cuda.runtime,
            "cupy.cuda.Device": lambda c: c.cuda.Device, "cupy.linalg": lambda c: c.linalg}
DUNDERS = ("__array__", "__array_ufunc__", "__array_function__", "__cuda_array_interface__", "__dlpack__",
           "__iter__", "__len__", "__bool__", "__int__", "__float__", "__version__")


def write_names(cupy, path=NAMES_FILE):
    """Write the public names of a real cupy, section by section, to `path`."""
    lines = [f"# names that exist in CuPy {cupy.__version__}, one [section] per object (dir() less private names);",
             "# written by tests/cupy_standin.py's write_names. The stand-in exposes no name outside this list."]
    for section, get in SECTIONS.items():
        names = {n for n in dir(get(cupy)) if not n.startswith("_") or n in DUNDERS}
        lines += [f"[{section}]"] + sorted(names)
    path.write_text("\n".join(lines) + "\n")


def read_names(path=NAMES_FILE):
    """{section: set of names} from the list."""
    names, section = {}, None
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("["):
            section = line.strip("[]")
            names[section] = set()
        else:
            names[section].add(line.strip())
    return names


NAMES = read_names()
_HERE = os.path.abspath(__file__)
_NUMPY_DIR = os.path.dirname(np.__file__)


def _call_site(depth=3):
    """'path:line in function < its caller < ...' from the first frame outside this file and numpy: who asked."""
    frame = sys._getframe(1)
    while frame is not None and (os.path.abspath(frame.f_code.co_filename) == _HERE
                                 or frame.f_code.co_filename.startswith(_NUMPY_DIR)):
        frame = frame.f_back
    sites = []
    while frame is not None and len(sites) < depth:
        sites.append(f"{os.path.relpath(frame.f_code.co_filename)}:{frame.f_lineno} in {frame.f_code.co_name}")
        frame = frame.f_back
    return " < ".join(sites) or "?"


class Transfers:
    """Every device-to-host read and host-to-device copy, as (what, call site), in order."""

    def __init__(self):
        self.reads, self.copies = [], []

    def clear(self):
        self.reads.clear()
        self.copies.clear()

    def read(self, what):
        self.reads.append((what, _call_site()))

    def copy(self, what):
        self.copies.append((what, _call_site()))


TRANSFERS = Transfers()


class Launches:
    """Kernel launches, counted by what launched them (a ufunc's or function's name, a kernel's): `count` in all,
    `names` a Counter. One per call: cupy's own may take a few for some calls, never fewer than one."""

    def __init__(self):
        import collections
        self.names = collections.Counter()

    count = property(lambda self: sum(self.names.values()))

    def clear(self):
        self.names.clear()

    def launch(self, name):
        self.names[name] += 1


LAUNCHES = Launches()
# functions and methods that only make a new view of the same memory (or memory left uninitialised): no launch
NO_LAUNCH = {"reshape", "ravel", "view", "squeeze", "expand_dims", "broadcast_to", "broadcast_arrays", "swapaxes",
             "moveaxis", "transpose", "atleast_1d", "atleast_2d", "atleast_3d", "empty", "empty_like", "shape",
             "ndim", "size", "result_type", "can_cast", "promote_types", "isscalar", "iscomplexobj", "isrealobj",
             "may_share_memory", "shares_memory", "get_array_module", "diagonal", "split", "array_split"}
IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy array "
            "explicitly.")


def _unsupported(value):
    return TypeError(f"Unsupported type {type(value)}")


def _to_numpy(value, where="argument"):
    """The numpy array behind a stand-in array, unchanged scalars and containers of them; a numpy array (host
    memory) raises, as cupy does."""
    if isinstance(value, ndarray):
        return value._array
    if isinstance(value, np.ndarray):
        raise _unsupported(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(item, where) for item in value)
    if isinstance(value, dict):
        return {key: _to_numpy(item, where) for key, item in value.items()}
    return value


def _wrap(value):
    """numpy results as stand-in arrays (a numpy scalar becomes a 0-d array, as cupy returns)."""
    if isinstance(value, np.ndarray):
        return ndarray._of(value)
    if isinstance(value, np.generic) and not isinstance(value, np.dtype):
        return ndarray._of(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(item) for item in value)
    if isinstance(value, list):
        return [_wrap(item) for item in value]
    return value


class _Memory:
    """ndarray.data: a MemoryPointer whose ptr is the address of the array's first element."""

    def __init__(self, array):
        self.ptr = array.__array_interface__["data"][0]


class _Flags:
    def __init__(self, array):
        self.c_contiguous, self.f_contiguous = array.flags.c_contiguous, array.flags.f_contiguous
        self.owndata = array.flags.owndata

    def __getitem__(self, key):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous, "OWNDATA": self.owndata}[key]


# ndarray methods that compute (each returns stand-in arrays); the reads and the special ones are written out below
_COMPUTING_METHODS = ("all", "any", "argmax", "argmin", "argsort", "astype", "clip", "copy", "cumsum", "cumprod",
                      "diagonal", "dot", "fill", "flatten", "max", "mean", "min", "nonzero", "prod", "ptp", "ravel",
                      "repeat", "reshape", "round", "sort", "squeeze", "std", "sum", "swapaxes", "take", "trace",
                      "transpose", "var", "view", "conj", "conjugate", "searchsorted", "put", "choose", "compress",
                      "partition", "argpartition")


class ndarray:
    """An array "on the device": a numpy array no code outside this module can reach without a counted read."""
    __array_priority__ = 100
    __hash__ = None  # as cupy's (and numpy's): arrays are not dictionary keys

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self._array = np.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _of(cls, array):
        self = cls.__new__(cls)
        self._array = array
        return self

    # ---- what an array is ----
    shape = property(lambda self: self._array.shape)
    dtype = property(lambda self: self._array.dtype)
    ndim = property(lambda self: self._array.ndim)
    size = property(lambda self: self._array.size)
    strides = property(lambda self: self._array.strides)
    itemsize = property(lambda self: self._array.itemsize)
    nbytes = property(lambda self: self._array.nbytes)
    flags = property(lambda self: _Flags(self._array))
    data = property(lambda self: _Memory(self._array))
    base = property(lambda self: None if self._array.base is None else "a device array")
    device = property(lambda self: cuda.Device(0))
    T = property(lambda self: ndarray._of(self._array.T))
    mT = property(lambda self: ndarray._of(np.swapaxes(self._array, -1, -2)))

    def __len__(self):
        return len(self._array)

    def __iter__(self):
        return (ndarray._of(self._array[i]) for i in range(len(self._array)))

    # ---- host memory: explicit reads only ----
    def __array__(self, *args, **kwargs):
        raise TypeError(IMPLICIT)

    def get(self, stream=None, order="C", out=None, blocking=True):
        TRANSFERS.read("get")
        return np.array(self._array, order=order)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        TRANSFERS.copy("set")
        self._array[...] = arr

    def item(self, *args):
        TRANSFERS.read("item")
        return self._array.item(*args)

    def tolist(self):
        TRANSFERS.read("tolist")
        return self._array.tolist()

    def _scalar(self, kind, convert):
        if self.size != 1:
            raise TypeError(f"only length-1 arrays can be converted to Python scalars" if kind != "bool" else
                            "The truth value of an array with more than one element is ambiguous.")
        TRANSFERS.read(kind)
        return convert(self._array.reshape(()).item())

    def __bool__(self):
        return self._scalar("bool", bool)

    def __int__(self):
        return self._scalar("int", int)

    def __float__(self):
        return self._scalar("float", float)

    def __index__(self):
        if self.dtype.kind not in "iub":
            raise TypeError("only integer scalar arrays can be converted to a scalar index")
        return self._scalar("index", int)

    def __repr__(self):
        TRANSFERS.read("repr")
        return repr(self._array)

    __str__ = __repr__

    # ---- numpy's protocols: a numpy function or ufunc given a stand-in array runs the stand-in's, as on cupy ----
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        ours = getattr(module, ufunc.__name__, None)
        if not isinstance(ours, _Ufunc):
            return NotImplemented
        return getattr(ours, method)(*inputs, **kwargs) if method != "__call__" else ours(*inputs, **kwargs)

    def __array_function__(self, function, types_, args, kwargs):
        ours = getattr(module, function.__name__, None)
        if ours is None:
            return NotImplemented
        return ours(*args, **kwargs)

    # ---- indexing: a host index or value is copied to the device first (cupy.array), a mask waits for its count ----
    def __getitem__(self, key):
        key = _device_index(key)
        if any(isinstance(k, np.ndarray) and k.dtype == np.bool_ for k in (key if isinstance(key, tuple) else (key,))):
            TRANSFERS.read("boolean mask (its count sizes the result)")
        if any(isinstance(k, np.ndarray) for k in (key if isinstance(key, tuple) else (key,))):
            LAUNCHES.launch("getitem (an array index gathers)")  # a basic index is a view: no launch
        return _wrap(self._array[key])

    def __setitem__(self, key, value):
        if isinstance(value, (np.ndarray, list)):
            TRANSFERS.copy("setitem value")
            value = np.asarray(value)
        LAUNCHES.launch("setitem")
        self._array[_device_index(key)] = _to_numpy(value)


def _device_index(key):
    """An index as numpy sees it; numpy arrays and lists in it are copied to the device, as cupy does."""
    parts = key if isinstance(key, tuple) else (key,)
    converted = []
    for part in parts:
        if isinstance(part, ndarray):
            part = part._array
        elif isinstance(part, (np.ndarray, list)):
            TRANSFERS.copy("index")
            part = np.asarray(part)
        converted.append(part)
    return tuple(converted) if isinstance(key, tuple) else converted[0]


def _method(name):
    launches = name not in NO_LAUNCH

    def method(self, *args, **kwargs):
        if launches and not (name == "astype" and _same_dtype_no_copy(self, args, kwargs)):
            LAUNCHES.launch(name)
        return _wrap(getattr(self._array, name)(*_to_numpy(args), **_to_numpy(kwargs)))
    method.__name__ = name
    return method


def _same_dtype_no_copy(array, args, kwargs):
    """astype(dtype, copy=False) to the array's own dtype returns it unchanged: no launch."""
    return kwargs.get("copy", True) is False and np.dtype(args[0] if args else kwargs["dtype"]) == array.dtype


for _name in _COMPUTING_METHODS:
    setattr(ndarray, _name, _method(_name))
_nonzero = ndarray.nonzero
ndarray.nonzero = lambda self: (TRANSFERS.read("nonzero (its count sizes the result)"), _nonzero(self))[1]
for _name in ("scatter_add", "scatter_max", "scatter_min"):
    setattr(ndarray, _name, lambda self, *a, _n=_name, **k: getattr(np, {"scatter_add": "add", "scatter_max":
                                                                           "maximum", "scatter_min": "minimum"}[_n])
            .at(self._array, *_to_numpy(a)))

_OPERATORS = {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "true_divide", "floordiv": "floor_divide",
              "mod": "remainder", "pow": "power", "matmul": "matmul", "and": "bitwise_and", "or": "bitwise_or",
              "xor": "bitwise_xor", "lshift": "left_shift", "rshift": "right_shift"}


def _binary(ufunc_name, reflected=False, in_place=False):
    def operator(self, other):
        function = getattr(module, ufunc_name)
        if in_place:
            return function(self, other, out=self)
        return function(other, self) if reflected else function(self, other)
    return operator


for _op, _ufunc in _OPERATORS.items():
    setattr(ndarray, f"__{_op}__", _binary(_ufunc))
    setattr(ndarray, f"__r{_op}__", _binary(_ufunc, reflected=True))
    setattr(ndarray, f"__i{_op}__", _binary(_ufunc, in_place=True))
for _op, _ufunc in {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal", "eq": "equal",
                    "ne": "not_equal"}.items():
    setattr(ndarray, f"__{_op}__", _binary(_ufunc))
ndarray.__neg__ = lambda self: module.negative(self)
ndarray.__pos__ = lambda self: module.positive(self)
ndarray.__abs__ = lambda self: module.absolute(self)
ndarray.__invert__ = lambda self: module.invert(self)


# ----------------------------------------------------------------------------------------------------------
# functions: numpy's, behind the checks; host data enters only through asarray/array

def _function(name, numpy_function):
    launches = name not in NO_LAUNCH

    def function(*args, **kwargs):
        if launches:
            LAUNCHES.launch(name)
        return _wrap(numpy_function(*_to_numpy(args), **_to_numpy(kwargs)))
    function.__name__ = name
    return function


class _Ufunc:
    """A cupy ufunc: numpy's, with host arrays refused; `out=` must be a stand-in array."""

    def __init__(self, numpy_ufunc):
        self._ufunc, self.__name__ = numpy_ufunc, numpy_ufunc.__name__
        self.nin, self.nout, self.nargs, self.types = numpy_ufunc.nin, numpy_ufunc.nout, numpy_ufunc.nargs, \
            numpy_ufunc.types

    @property
    def name(self):
        return self.__name__

    def __call__(self, *args, **kwargs):
        out = kwargs.get("out")
        LAUNCHES.launch(self.__name__)
        args, kwargs = _to_numpy(args), _to_numpy(kwargs)
        if self.__name__ == "matmul" and all(getattr(a, "dtype", None) == np.float16 for a in args[:2]):
            result = _float16_matmul(*args, **kwargs)
        else:
            result = self._ufunc(*args, **kwargs)
        return out if isinstance(out, ndarray) else _wrap(result)

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            raise _unsupported(a)
        LAUNCHES.launch(f"{self.__name__}.at")
        self._ufunc.at(a._array, _device_index(indices), *(() if b is None else (_to_numpy(b),)))

    def reduce(self, *args, **kwargs):
        LAUNCHES.launch(f"{self.__name__}.reduce")
        return _wrap(self._ufunc.reduce(*_to_numpy(args), **_to_numpy(kwargs)))

    def accumulate(self, *args, **kwargs):
        LAUNCHES.launch(f"{self.__name__}.accumulate")
        return _wrap(self._ufunc.accumulate(*_to_numpy(args), **_to_numpy(kwargs)))

    def outer(self, *args, **kwargs):
        LAUNCHES.launch(f"{self.__name__}.outer")
        return _wrap(self._ufunc.outer(*_to_numpy(args), **_to_numpy(kwargs)))


def _float16_matmul(a, b, out=None, **kwargs):
    """a @ b for float16 a and b as cuBLAS computes it: products summed in float32, the result rounded to float16."""
    result = np.matmul(a.astype(np.float32), b.astype(np.float32), **kwargs).astype(np.float16)
    if out is None:
        return result
    out[...] = result
    return out


def asarray(a, dtype=None, order=None, *, blocking=False):
    """The one door from the host: a numpy array, list or scalar is copied to the device (and counted)."""
    if isinstance(a, ndarray):
        converted = np.asarray(a._array, dtype=dtype, order=order)
        if converted is not a._array:
            LAUNCHES.launch("asarray (a cast or copy)")
        return ndarray._of(converted)
    if isinstance(a, (list, tuple)) and any(isinstance(item, ndarray) for item in a):
        return module.stack(a).astype(dtype, copy=False) if dtype is not None else module.stack(a)
    TRANSFERS.copy("asarray")
    return ndarray._of(np.array(a, dtype=dtype, order=order or "K"))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if isinstance(obj, ndarray):
        if copy or (dtype is not None and np.dtype(dtype) != obj.dtype):
            LAUNCHES.launch("array (a copy)")
        return ndarray._of(np.array(obj._array, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    TRANSFERS.copy("array")
    return ndarray._of(np.array(obj, dtype=dtype, order=order, ndmin=ndmin))


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, ndarray):
        return a.get(order=order)
    return np.asarray(a, order=order)


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise _unsupported(a)
    contiguous = np.ascontiguousarray(a._array, dtype=dtype)
    if contiguous is not a._array:
        LAUNCHES.launch("ascontiguousarray (a copy)")
    return ndarray._of(contiguous)


def get_array_module(*args):
    return module if any(isinstance(arg, ndarray) for arg in args) else np


class _MemoryPool:
    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_all_blocks(self):
        pass

    def set_limit(self, size=None, fraction=None):
        pass


_POOL = _MemoryPool()

# ----------------------------------------------------------------------------------------------------------
# cupy.random, cupy.cuda, cupy.linalg


class Generator:
    """cupy.random.Generator: its own stream (not numpy's for the same seed), its methods only where cupy has them."""

    def __init__(self, seed=None):
        self._generator = np.random.default_rng(None if seed is None else [int(seed), 0x5EED])

    def __getattr__(self, name):
        if name not in NAMES["cupy.random.Generator"] or not hasattr(self._generator, name):
            raise AttributeError(f"'cupy.random.Generator' object has no attribute {name!r}")
        method = getattr(self._generator, name)
        LAUNCHES.launch(f"random.{name}")
        return lambda *args, **kwargs: _wrap(np.asarray(method(*_to_numpy(args), **_to_numpy(kwargs))))


random = types.ModuleType("cupy.random")
random.Generator = Generator
random.default_rng = lambda seed=None: Generator(seed)


class Device:
    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            raise RuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {self.id}")

    compute_capability = "90"
    attributes = property(lambda self: {"MultiProcessorCount": 132, "MaxThreadsPerBlock": 1024})
    mem_info = property(lambda self: (130 << 30, 140 << 30))

    def synchronize(self):
        pass

    def use(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass


class CUDARuntimeError(RuntimeError):
    pass


runtime = types.ModuleType("cupy.cuda.runtime")
runtime.CUDARuntimeError = CUDARuntimeError
runtime.getDeviceCount = lambda: 1
runtime.getDevice = lambda: 0
runtime.runtimeGetVersion = lambda: 12080
runtime.driverGetVersion = lambda: 12080
runtime.deviceSynchronize = lambda: None
runtime.getDeviceProperties = lambda device: {"name": b"CPU stand-in for cupy", "major": 9, "minor": 0,
                                              "multiProcessorCount": 132, "totalGlobalMem": 140 << 30}
cuda = types.ModuleType("cupy.cuda")
cuda.Device, cuda.runtime = Device, runtime
cuda.get_current_stream = lambda: None
cuda.is_available = lambda: True


def _linalg(name):
    return _function(name, getattr(np.linalg, name))


linalg = types.ModuleType("cupy.linalg")
for _name in NAMES["cupy.linalg"]:
    if hasattr(np.linalg, _name):
        setattr(linalg, _name, _linalg(_name))

# ----------------------------------------------------------------------------------------------------------
# kernels: cupy's checks, then the numpy reference registered for the kernel's name

_SCALAR_C_TYPES = {"float": np.float32, "double": np.float64, "int": np.int32, "long long": np.int64,
                   "unsigned int": np.uint32, "unsigned long long": np.uint64, "bool": np.bool_}
KERNEL_REFERENCES = {}  # kernel name -> numpy function computing what the kernel computes


def reference(name):
    """@reference("kernel name"): register the numpy function the stand-in runs for that kernel."""
    def register(function):
        KERNEL_REFERENCES[name] = function
        return function
    return register


def _reference_for(name):
    if name not in KERNEL_REFERENCES:
        raise NotImplementedError(f"the cupy stand-in has no numpy reference for kernel {name!r}: register one in "
                                  f"tests/cupy_standin.py with @reference({name!r})")
    return KERNEL_REFERENCES[name]


def _parse_params(text):
    """[(is_raw, type, name)] of an ElementwiseKernel/ReductionKernel parameter list."""
    params = []
    for parameter in filter(None, (p.strip() for p in text.split(","))):
        words = parameter.split()
        is_raw = words[0] == "raw"
        if is_raw:
            words = words[1:]
        if len(words) != 2:
            raise ValueError(f"Syntax error: {parameter}")
        params.append((is_raw, words[0], words[1]))
    return params


class _ParameterKernel:
    """What ElementwiseKernel and ReductionKernel share: parameter parsing and cupy's argument checks."""

    def __init__(self, in_params, out_params, name):
        self.in_params, self.out_params = _parse_params(in_params), _parse_params(out_params)
        self.name = name
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.nargs = self.nin + self.nout

    def _check(self, args):
        if len(args) not in (self.nin, self.nargs):
            raise TypeError(f"Wrong number of arguments for {self.name!r}")
        placeholders = {}
        values = []
        for value, (is_raw, type_name, name) in zip(args, self.in_params + self.out_params):
            if isinstance(value, np.ndarray):
                raise _unsupported(value)
            declared = None if len(type_name) == 1 and type_name.isupper() else np.dtype(type_name)
            if isinstance(value, ndarray):
                if declared is None:
                    declared = placeholders.setdefault(type_name, value.dtype)
                if value.dtype != declared:
                    raise TypeError(f"Type is mismatched. {name} {value.dtype} {declared}")
                values.append(value._array)
            else:
                if is_raw:
                    raise TypeError(f"{self.name}: raw parameter {name} needs a cupy array, got {type(value)}")
                if not isinstance(value, (int, float, bool, complex, np.generic)):
                    raise _unsupported(value)
                if declared is None:
                    declared = placeholders.setdefault(type_name, np.asarray(value).dtype)
                values.append(np.asarray(value, dtype=declared))
        return values, placeholders


class ElementwiseKernel(_ParameterKernel):
    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True, preamble="",
                 no_return=False, return_tuple=False, **kwargs):
        super().__init__(in_params, out_params, name)
        self.operation, self.preamble = operation, preamble
        self.no_return, self.return_tuple = no_return, return_tuple

    def __call__(self, *args, size=None, block_size=None, stream=None):
        values, placeholders = self._check(args)
        broadcast = [v for v, (is_raw, _, _) in zip(values, self.in_params + self.out_params) if not is_raw]
        shape = np.broadcast_shapes(*(v.shape for v in broadcast)) if size is None else (size,)
        outputs = list(args[self.nin:])
        for out, (is_raw, type_name, name) in zip(outputs, self.out_params):
            if not is_raw and out.shape != shape:
                raise ValueError(f"Out shape is mismatched: {name} {out.shape}, expected {shape}")
        if not outputs:
            outputs = [ndarray._of(np.empty(shape, dtype=placeholders.get(t) or np.dtype(t)))
                       for _, t, _ in self.out_params]
        named = {name: (value if is_raw else np.broadcast_to(value, shape))
                 for value, (is_raw, _, name) in zip(values[:self.nin], self.in_params)}
        named.update({name: out._array for out, (_, _, name) in zip(outputs, self.out_params)})
        LAUNCHES.launch(self.name)
        results = _reference_for(self.name)(**named)
        for out, (_, _, name) in zip(outputs, self.out_params):
            if name in results:
                out._array[...] = results[name]
        if self.no_return:
            return None
        return outputs[0] if len(outputs) == 1 and not self.return_tuple else tuple(outputs)


class ReductionKernel(_ParameterKernel):
    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity, name="reduce_kernel",
                 reduce_type=None, reduce_dims=True, preamble="", options=(), **kwargs):
        super().__init__(in_params, out_params, name)
        self.map_expr, self.reduce_expr, self.post_map_expr, self.identity = map_expr, reduce_expr, post_map_expr, \
            identity

    def __call__(self, *args, out=None, axis=None, keepdims=False, stream=None):
        values, placeholders = self._check(args + ((out,) if out is not None else ()))
        named = {name: value for value, (_, _, name) in zip(values, self.in_params)}
        LAUNCHES.launch(self.name)
        result = _reference_for(self.name)(axis=axis, keepdims=keepdims, **named)
        (_, type_name, _), = self.out_params
        result = np.asarray(result, dtype=placeholders.get(type_name) or np.dtype(type_name))
        if out is not None:
            out._array[...] = result
            return out
        return ndarray._of(result)


_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')


def _signatures(code):
    """name -> [(C type, parameter name)] of every extern "C" __global__ function in `code`."""
    found = {}
    for name, params in _SIGNATURE.findall(code):
        found[name] = [tuple(" ".join(p.split()).rsplit(" ", 1)) for p in params.split(",") if p.strip()]
    return found


class RawKernel:
    """cupy.RawKernel(code, name): kernel(grid, block, args, shared_mem=0)."""

    def __init__(self, code, name, options=(), backend="nvrtc", translate_cucomplex=False, **kwargs):
        signatures = _signatures(code)
        if name not in signatures:
            raise RuntimeError(f"CUDA_ERROR_NOT_FOUND: named symbol not found ({name!r} is not an extern \"C\" "
                               f"__global__ function of the module)")
        self.code, self.name, self.options, self.parameters = code, name, options, signatures[name]

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None, enable_cooperative_groups=False):
        grid, block = _dims(grid, "grid"), _dims(block, "block")
        if math.prod(block) > 1024:
            raise RuntimeError(f"cudaErrorInvalidValue: {math.prod(block)} threads per block (at most 1024)")
        if not isinstance(args, tuple):
            raise TypeError(f"args must be a tuple, got {type(args)}")
        if len(args) != len(self.parameters):
            raise TypeError(f"{self.name}: {len(args)} arguments for {len(self.parameters)} parameters")
        converted = []
        for value, (c_type, parameter) in zip(args, self.parameters):
            where = f"{self.name}({parameter})"
            if isinstance(value, np.ndarray):
                raise _unsupported(value)
            if c_type.endswith("*"):
                if not isinstance(value, ndarray):
                    raise TypeError(f"{where}: a pointer parameter needs a cupy array, got {type(value)}")
                pointee = c_type.replace("const ", "").rstrip("*").strip()
                if value.dtype != _SCALAR_C_TYPES[pointee]:
                    raise TypeError(f"{where}: {c_type} parameter given a {value.dtype} array")
                if not value.flags.c_contiguous:
                    raise ValueError(f"{where}: the kernel indexes a C-contiguous array; this one is not")
                converted.append(value._array)
            else:
                expected = _SCALAR_C_TYPES[c_type.replace("const ", "")]
                if type(value) is not expected:  # a Python int goes as a long long, a float as a double
                    raise TypeError(f"{where}: {c_type} parameter needs a numpy.{expected.__name__}, got "
                                    f"{type(value).__name__} {value!r}")
                converted.append(value)
        LAUNCHES.launch(self.name)
        _reference_for(self.name)(grid, block, *converted)


def _dims(dims, what):
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in dims):
        raise ValueError(f"{what} must be 1 to 3 positive integers, got {dims}")
    return dims


class RawModule:
    """cupy.RawModule(code=...): get_function(name) gives a RawKernel."""

    def __init__(self, code=None, *, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                 name_expressions=None, **kwargs):
        if code is None:
            raise TypeError("the stand-in builds RawModules from code only")
        self.code, self.options = code, options

    def get_function(self, name):
        return RawKernel(self.code, name, self.options)


# ----------------------------------------------------------------------------------------------------------
# the module named cupy

class _Cupy(types.ModuleType):
    """The stand-in module: a name that CuPy 14 lacks raises AttributeError, as `cupy.<name>` would."""

    def __getattr__(self, name):
        if name not in NAMES["cupy"]:
            raise AttributeError(f"module 'cupy' has no attribute {name!r} (CuPy 14 has no such name)")
        numpy_value = getattr(np, name, None)
        if numpy_value is None:
            raise AttributeError(f"module 'cupy' has attribute {name!r}, which the stand-in does not provide")
        if isinstance(numpy_value, np.ufunc):
            value = _Ufunc(numpy_value)
        elif isinstance(numpy_value, type) or not callable(numpy_value):
            value = numpy_value  # dtypes (float32, ...) and constants (inf, pi, newaxis)
        else:
            value = _function(name, numpy_value)
        setattr(self, name, value)
        return value


module = _Cupy("cupy")
module.__version__ = VERSION
module.__file__ = __file__
module.transfers = TRANSFERS  # not cupy's: the counts
module.launches = LAUNCHES
for _name, _value in {"ndarray": ndarray, "asarray": asarray, "array": array, "asnumpy": asnumpy,
                      "ascontiguousarray": ascontiguousarray, "get_array_module": get_array_module,
                      "get_default_memory_pool": lambda: _POOL, "get_default_pinned_memory_pool": lambda: _POOL,
                      "random": random, "cuda": cuda, "linalg": linalg, "ElementwiseKernel": ElementwiseKernel,
                      "ReductionKernel": ReductionKernel, "RawKernel": RawKernel, "RawModule": RawModule}.items():
    assert _name in NAMES["cupy"], _name
    setattr(module, _name, _value)

# ----------------------------------------------------------------------------------------------------------
# the numpy references of the project's kernels (tinygrad_ed/fast/cuda_kernels.py: the math above each kernel)


@reference("tinygrad_ed_device_check")  # tinygrad_ed/device.py's check that kernels compile and run
def _device_check(x, y):
    return {"y": x + 1}


# The references compute in float32, as the kernels do (erff is good to 2 ulp, erf_fast to ~7e-7 absolute): float64
# would be no truer to the GPU, and ~80 times slower for erf, which the end-to-end runs at the GPU preset's batch feel
_SQRT_HALF, _INV_SQRT_2PI = np.float32(math.sqrt(0.5)), np.float32(1 / math.sqrt(2 * math.pi))


@reference("tinygrad_ed_gelu_forward")
def _gelu_forward(x, y):
    return {"y": np.float32(0.5) * x * (1 + erf_fast(np, x * _SQRT_HALF))}


@reference("tinygrad_ed_gelu_backward")
def _gelu_backward(x, grad, grad_x):
    cdf = np.float32(0.5) * (1 + erf_fast(np, x * _SQRT_HALF))
    return {"grad_x": grad * (cdf + x * np.exp(np.float32(-0.5) * x * x) * _INV_SQRT_2PI)}


@reference("tinygrad_ed_gelu_forward_half")
def _gelu_forward_half(x, y):
    return _gelu_forward(x.astype(np.float32), y)  # float in, rounded to float16 as it is stored


@reference("tinygrad_ed_gelu_backward_half")
def _gelu_backward_half(x, grad, grad_x):
    return _gelu_backward(x.astype(np.float32), grad.astype(np.float32), grad_x)


@reference("tinygrad_ed_adamw")
def _adamw(grad, lr, decay, beta1, beta2, one_minus_beta1, one_minus_beta2, bias_correction1, bias_correction2,
           eps, w, m, v):
    w = w * decay
    m = beta1 * m + one_minus_beta1 * grad
    v = beta2 * v + one_minus_beta2 * grad * grad
    return {"w": w - lr * (m / bias_correction1) / (np.sqrt(v / bias_correction2) + eps), "m": m, "v": v}


@reference("tinygrad_ed_cross_entropy_backward")
def _cross_entropy_backward(probs, scale, targets, vocab, ignore_index, grad_logits):
    rows = probs.reshape(-1, int(vocab[()] if np.ndim(vocab) == 0 else vocab.flat[0]))
    one_hot = np.arange(rows.shape[1]) == targets[:, None]
    ignored = (targets == int(ignore_index.flat[0]))[:, None]
    grad = np.where(ignored, 0.0, (rows - one_hot) * scale.reshape(-1)[0])
    return {"grad_logits": grad.reshape(probs.shape)}


@reference("tinygrad_ed_unscale_gradients")
def _unscale_gradients(inverse_scale, grad, all_finite):
    grad = grad * inverse_scale
    return {"grad": grad, "all_finite": np.where(np.isfinite(grad).all(), all_finite, 0)}


@reference("tinygrad_ed_clip_gradients")
def _clip_gradients(norm, max_norm, grad):
    factor = max_norm / (norm[0] + np.float32(1e-6))
    return {"grad": grad * np.where(factor > 1, np.float32(1), factor)}


@reference("layer_norm_forward")
def _layer_norm_forward(grid, block, x, weight, bias, y, x_hat, rstd, C, eps):
    rows = x.reshape(-1, C)[:grid[0]].astype(np.float64)
    mean = rows.mean(axis=1, keepdims=True)
    r = 1 / np.sqrt(((rows - mean) ** 2).mean(axis=1, keepdims=True) + eps)
    x_hat.reshape(-1, C)[:grid[0]] = (rows - mean) * r
    y.reshape(-1, C)[:grid[0]] = (rows - mean) * r * weight + bias
    rstd[:grid[0]] = r[:, 0]


@reference("layer_norm_backward")
def _layer_norm_backward(grid, block, grad, x_hat, weight, rstd, grad_x, C):
    d_hat = grad.reshape(-1, C).astype(np.float64) * weight
    xh = x_hat.reshape(-1, C)
    grad_x.reshape(-1, C)[...] = (d_hat - d_hat.mean(axis=1, keepdims=True)
                                  - xh * (d_hat * xh).mean(axis=1, keepdims=True)) * rstd[:, None]


@reference("cross_entropy_forward")
def _cross_entropy_forward(grid, block, logits, targets, probs, losses, V, ignore_index):
    rows = logits.reshape(-1, V).astype(np.float64)
    shifted = rows - rows.max(axis=1, keepdims=True)
    sums = np.exp(shifted).sum(axis=1)
    probs.reshape(-1, V)[...] = np.exp(shifted) / sums[:, None]
    inside = (targets >= 0) & (targets < V)
    picked = shifted[np.arange(len(rows)), np.where(inside, targets, 0)]
    losses[...] = np.where(targets == ignore_index, 0.0, np.where(inside, np.log(sums) - picked, np.nan))


@reference("attention_softmax_forward")
def _attention_softmax_forward(grid, block, scores, T, scale, causal):
    rows = scores.reshape(-1, T) * scale
    if causal:  # (B·H·T, T) rows as (B·H, T, T): key j is visible to query t when j <= t
        blocks = rows.reshape(-1, T, T)
        blocks[:, ~np.tri(T, dtype=bool)] = -np.inf
    rows -= rows.max(axis=1, keepdims=True)
    np.exp(rows, out=rows)
    rows /= rows.sum(axis=1, keepdims=True)
    scores.reshape(-1, T)[...] = rows


@reference("attention_softmax_backward")
def _attention_softmax_backward(grid, block, grad, probs, T, scale):
    g, p = grad.reshape(-1, T), probs.reshape(-1, T)
    grad.reshape(-1, T)[...] = (g - (g * p).sum(axis=1, keepdims=True)) * p * scale


# ----------------------------------------------------------------------------------------------------------
# the counts of a whole program (tests/standin_run.py runs one on the stand-in)


def write_counts(path):
    """Write the reads, copies (each with its call site) and launches (by name) so far to `path`, as JSON."""
    import json
    with open(path, "w") as file:
        json.dump({"reads": TRANSFERS.reads, "copies": TRANSFERS.copies, "launches": dict(LAUNCHES.names)}, file)


if os.environ.get("TINYGRAD_ED_STANDIN_COUNTS"):  # a program run on the stand-in writes its counts as it exits
    import atexit
    atexit.register(write_counts, os.environ["TINYGRAD_ED_STANDIN_COUNTS"])
