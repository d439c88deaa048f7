"""Every CUDA kernel of tinygrad_ed/fast/cuda_kernels.py compiled for the H200 (sm_90) with NVRTC, in every CI build.

A lent GPU's minutes should not go on a syntax or type error in a kernel, and the cupy stand-in cannot see one (it
runs each kernel's numpy reference). So here NVRTC itself compiles each kernel, loaded with ctypes from the
registry's nvidia-cuda-nvrtc-cu12 wheel (the library cupy's ctk extra brings too); skipped cleanly where it is not
installed. The kernels are found two ways, so that one added later is covered without touching this file: every
kernel `kernels_for(cupy)` builds (recorded through a cupy that only records), and every module-level kernel spec
(a namedtuple with an `operation` field is an ElementwiseKernel, one with `map_expr` a ReductionKernel) or source
(a string with a __global__ function) of the module.

How cupy 14 compiles them (cupy/_core/_kernel.pyx, _reduction.pyx, _compile_with_cache.pyx, cuda/compiler.py):
  - options: the kernel's own, --std=c++14 unless it names a standard, -ftz=true, and the device's architecture
    (here --gpu-architecture=sm_90: a cubin, so ptxas runs too, as it does for cupy on an H200)
  - RawModule / RawKernel: the source as it is
  - ElementwiseKernel: cupy wraps the operation in a kernel of its own, after its headers (carray.cuh, complex.cuh,
    which need the CUDA headers we do not have here). The source below is a standalone equivalent of what the
    operation body sees: a grid-stride loop over `ptrdiff_t i`, each non-raw parameter a reference to element i
    (`const float &x` for an input, `float &y` for an output), a raw parameter an array object with [] and
    size() (read-only for an input, as cupy's const CArray), `_ind.size()`, the type placeholders typedef'd (to
    float: the dtype is only known at the call) and cupy's float16 class as a minimal equivalent. A syntax error,
    an unknown name or a type error in the operation fails here as it would fail there.
  - ReductionKernel: the same for map_expr, reduce_expr (over `a` and `b`) and post_map_expr (with `a` the reduced
    value and the outputs' references), with `_in_ind` and `_out_ind`.
A source that needs cuda_fp16.h (half) compiles with the header directory where one is installed (the
nvidia-cuda-runtime-cu12 wheel, CUDA_PATH, /usr/local/cuda) and is skipped, saying so, where none is.
"""
import ctypes
import os
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from tinygrad_ed.fast import cuda_kernels

ARCHITECTURE = "sm_90"  # the H200
NVRTC_SUCCESS = 0


# ----------------------------------------------------------------------------------------------------------
# NVRTC through ctypes

def _site_dirs():
    return [Path(p) for p in sys.path if p and os.path.isdir(p)]


def find_nvrtc():
    """The path of libnvrtc from the nvidia-cuda-nvrtc-cu12 wheel (or CUDA 13's, or a CUDA toolkit), or None."""
    candidates = [d / "nvidia" / folder / "lib" / f"libnvrtc.so.{major}" for d in _site_dirs()
                  for folder, major in (("cuda_nvrtc", 12), ("cu13", 13), ("cuda_nvrtc", 13))]
    for root in filter(None, (os.environ.get("CUDA_PATH"), "/usr/local/cuda")):
        candidates += [Path(root) / "lib64" / "libnvrtc.so.12", Path(root) / "lib64" / "libnvrtc.so"]
    return next((str(path) for path in candidates if path.is_file()), None)


def find_cuda_headers():
    """A directory with cuda_fp16.h (what a half-precision source includes), or None."""
    candidates = [d / "nvidia" / folder / "include" for d in _site_dirs() for folder in ("cuda_runtime", "cu13")]
    candidates += [Path(root) / "include" for root in filter(None, (os.environ.get("CUDA_PATH"), "/usr/local/cuda"))]
    return next((str(path) for path in candidates if (path / "cuda_fp16.h").is_file()), None)


class CompileError(AssertionError):
    """NVRTC rejected a source: the message is its log."""


class Nvrtc:
    """nvrtcCreateProgram / CompileProgram / GetProgramLog / GetCUBIN, the calls a compile needs."""

    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        self.version = (major.value, minor.value)
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def _check(self, status, call):
        if status != NVRTC_SUCCESS:
            raise RuntimeError(f"{call}: {self.lib.nvrtcGetErrorString(status).decode()}")

    def compile(self, source, options, name="kernel.cu"):
        """The cubin of `source` compiled with `options`; CompileError with NVRTC's log when it does not compile."""
        program = ctypes.c_void_p()
        self._check(self.lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), name.encode(), 0, None,
                                                None), "nvrtcCreateProgram")
        try:
            encoded = [option.encode() for option in options]
            status = self.lib.nvrtcCompileProgram(program, len(encoded), (ctypes.c_char_p * len(encoded))(*encoded))
            size = ctypes.c_size_t()
            self._check(self.lib.nvrtcGetProgramLogSize(program, ctypes.byref(size)), "nvrtcGetProgramLogSize")
            log = ctypes.create_string_buffer(size.value)
            self._check(self.lib.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog")
            if status != NVRTC_SUCCESS:
                numbered = "\n".join(f"{n:4d} {line}" for n, line in enumerate(source.splitlines(), 1))
                raise CompileError(f"NVRTC could not compile {name} with {' '.join(options)}:\n"
                                   f"{log.value.decode(errors='replace')}\n--- the source ---\n{numbered}")
            self._check(self.lib.nvrtcGetCUBINSize(program, ctypes.byref(size)), "nvrtcGetCUBINSize")
            cubin = ctypes.create_string_buffer(size.value)
            self._check(self.lib.nvrtcGetCUBIN(program, cubin), "nvrtcGetCUBIN")
            return cubin.raw
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(program))


def cupy_options(options=()):
    """The options cupy passes NVRTC for a kernel built with `options`."""
    options = tuple(options)
    if not any("-std=" in option for option in options):
        options += ("--std=c++14",)
    return options + ("-ftz=true", f"--gpu-architecture={ARCHITECTURE}")


@pytest.fixture(scope="module")
def nvrtc():
    path = find_nvrtc()
    if path is None:
        pytest.skip("no NVRTC: pip install nvidia-cuda-nvrtc-cu12 (the library cupy's ctk extra brings)")
    return Nvrtc(path)


# ----------------------------------------------------------------------------------------------------------
# the kernels: what kernels_for(cupy) builds, and what the module defines

class Kernel:
    """One kernel to compile: its cupy class ("ElementwiseKernel", ...), the arguments it was built with."""

    def __init__(self, kind, arguments):
        self.kind, self.arguments = kind, arguments

    @property
    def label(self):
        code = self.arguments.get("code") or ""
        names = re.findall(r"__global__\s+void\s+(\w+)", code)
        return f"{self.kind}:{self.arguments.get('name') or '+'.join(names) or '?'}"

    @property
    def key(self):
        return self.kind, tuple(sorted((k, str(v)) for k, v in self.arguments.items() if k != "options"))


# the parameter names of cupy's constructors, so that positional arguments can be named
SIGNATURES = {
    "ElementwiseKernel": ("in_params", "out_params", "operation", "name", "reduce_dims", "preamble"),
    "ReductionKernel": ("in_params", "out_params", "map_expr", "reduce_expr", "post_map_expr", "identity", "name",
                        "reduce_type", "reduce_dims", "preamble"),
    "RawKernel": ("code", "name", "options"),
    "RawModule": ("code",),
}


def recording_cupy(built):
    """A module named cupy whose kernel classes append a Kernel to `built` (and do nothing else); numpy otherwise."""
    cupy = types.ModuleType("cupy")

    def recorder(kind):
        class Recorded:
            def __init__(self, *args, **kwargs):
                built.append(Kernel(kind, {**dict(zip(SIGNATURES[kind], args)), **kwargs}))

            def get_function(self, name):
                return self

            def __call__(self, *args, **kwargs):
                raise AssertionError("the recording cupy only records how kernels are built")
        Recorded.__name__ = kind
        return Recorded

    for kind in SIGNATURES:
        setattr(cupy, kind, recorder(kind))
    cupy.__getattr__ = lambda name: getattr(np, name)
    return cupy


def module_kernels(module=cuda_kernels):
    """The kernels the module defines at its top level: specs by their fields, sources by their __global__."""
    found = []
    for name, value in vars(module).items():
        fields = getattr(type(value), "_fields", None)
        if isinstance(value, tuple) and fields:
            if "operation" in fields:
                found.append(Kernel("ElementwiseKernel", value._asdict()))
            elif "map_expr" in fields:
                found.append(Kernel("ReductionKernel", value._asdict()))
        elif isinstance(value, str) and "__global__" in value:
            found.append(Kernel("RawModule", {"code": value}))
    return found


def all_kernels():
    built = []
    cuda_kernels.kernels_for(recording_cupy(built))
    unique = {}
    for kernel in built + module_kernels():  # what kernels_for builds first: it carries the options it passes
        unique.setdefault(kernel.key, kernel)
    return list(unique.values())


# ----------------------------------------------------------------------------------------------------------
# standalone sources for ElementwiseKernel and ReductionKernel

# numpy dtype name -> the C type cupy writes for it (cupy/_core/_scalar.pyx)
C_TYPES = {"bool": "bool", "int8": "signed char", "uint8": "unsigned char", "int16": "short",
           "uint16": "unsigned short", "int32": "int", "uint32": "unsigned int", "int64": "long long",
           "uint64": "unsigned long long", "float16": "float16", "float32": "float", "float64": "double"}

# What cupy's headers give an operation body, written for this test: the element loop, a raw array, the index
# objects, and float16 (cupy's class: converts implicitly to and from float, explicitly from other numbers, and
# assigns from anything convertible; here through the PTX conversions, as no cuda_fp16.h is needed).
PRELUDE = r"""
#define TINYGRAD_ED_FOR(i, n) \
    for (ptrdiff_t i = (ptrdiff_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (ptrdiff_t)blockDim.x * gridDim.x)
struct Indexer { ptrdiff_t size_; __device__ ptrdiff_t size() const { return size_; } };
template <typename T> struct RawArray {
    T* data_; ptrdiff_t size_;
    __device__ T& operator[](ptrdiff_t k) { return data_[k]; }
    __device__ const T& operator[](ptrdiff_t k) const { return data_[k]; }
    __device__ ptrdiff_t size() const { return size_; }
};
class float16 {
    unsigned short bits_;
public:
    __device__ float16() {}
    __device__ float16(float v) { asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits_) : "f"(v)); }
    explicit __device__ float16(double v) : float16((float)v) {}
    explicit __device__ float16(int v) : float16((float)v) {}
    explicit __device__ float16(long long v) : float16((float)v) {}
    explicit __device__ float16(bool v) : float16((float)v) {}
    __device__ operator float() const { float v; asm("cvt.f32.f16 %0, %1;" : "=f"(v) : "h"(bits_)); return v; }
    float16& operator=(const float16&) = default;
    template <typename T> __device__ float16& operator=(const T& v) { *this = static_cast<float16>(v); return *this; }
    template <typename T> __device__ float16& operator+=(const T& v) { return *this = *this + v; }
    template <typename T> __device__ float16& operator-=(const T& v) { return *this = *this - v; }
    template <typename T> __device__ float16& operator*=(const T& v) { return *this = *this * v; }
    template <typename T> __device__ float16& operator/=(const T& v) { return *this = *this / v; }
};
"""


def parse_parameters(text, is_output):
    """[(is_output, is_raw, type, name)] of a cupy parameter list such as "float32 x, raw int64 t"."""
    parameters = []
    for parameter in filter(None, (p.strip() for p in text.split(","))):
        *keywords, type_name, name = parameter.split()
        unknown = set(keywords) - {"raw", "_non_const"}
        if unknown:
            raise ValueError(f"unknown keyword {sorted(unknown)} in parameter {parameter!r}")
        parameters.append((is_output, "raw" in keywords, type_name, name))
    return parameters


def _c_type(type_name):
    if len(type_name) == 1 and type_name.isupper():
        return type_name  # a placeholder, typedef'd below
    if type_name not in C_TYPES:
        raise ValueError(f"dtype {type_name!r}: the compile test knows no C type for it (add it to C_TYPES)")
    return C_TYPES[type_name]


def _wrapped(arguments, parameters, body, name):
    """A standalone kernel `name`: PRELUDE, typedefs of the placeholders, the preamble, then `body` with the
    parameters declared as cupy declares them."""
    placeholders = sorted({t for _, _, t, _ in parameters if len(t) == 1 and t.isupper()})
    typedefs = "".join(f"typedef float {t};\n" for t in placeholders)
    declared = []
    for is_output, is_raw, type_name, parameter in parameters:
        c_type, const = _c_type(type_name), "" if is_output else "const "
        declared.append(f"{const}RawArray<{c_type}> {parameter}" if is_raw else f"{const}{c_type}* _raw_{parameter}")
    return (f"{PRELUDE}{typedefs}{arguments.get('preamble') or ''}\n"
            f'extern "C" __global__ void {name}({", ".join(declared)}, ptrdiff_t _size) {{\n{body}\n}}\n')


def _references(parameters, index, outputs):
    """`const T &x = _raw_x[index];` (an input) or `T &y = _raw_y[index];` (an output) for each non-raw parameter
    whose is_output is in `outputs`."""
    return [f"{'' if is_output else 'const '}{_c_type(type_name)} &{parameter} = _raw_{parameter}[{index}];"
            for is_output, is_raw, type_name, parameter in parameters if not is_raw and is_output in outputs]


def elementwise_source(arguments):
    """A standalone equivalent of the kernel cupy generates for an ElementwiseKernel's operation."""
    parameters = (parse_parameters(arguments["in_params"], False) +
                  parse_parameters(arguments["out_params"], True))
    body = ("Indexer _ind = {_size};\nTINYGRAD_ED_FOR(i, _ind.size()) {\n" +
            "\n".join(_references(parameters, "i", (False, True))) +
            f"\n{arguments['operation']};\n}}")
    return _wrapped(arguments, parameters, body, arguments.get("name") or "kernel")


def reduction_source(arguments):
    """A standalone equivalent of the kernel cupy generates for a ReductionKernel: each thread maps and reduces a
    strided share of the inputs, then applies post_map_expr (cupy combines the threads' values in shared memory
    first, with the same REDUCE)."""
    parameters = (parse_parameters(arguments["in_params"], False) +
                  parse_parameters(arguments["out_params"], True))
    reduce_type = arguments.get("reduce_type") or _c_type(parameters[0][2])
    identity = arguments.get("identity")
    body = "\n".join([
        f"typedef {reduce_type} _type_reduce;",
        "#define REDUCE(a, b) (" + arguments["reduce_expr"] + ")",
        "#define POST_MAP(a) (" + arguments["post_map_expr"] + ")",
        "Indexer _in_ind = {_size}, _out_ind = {1};",
        f"_type_reduce _s = _type_reduce({identity});" if identity not in (None, "") else "_type_reduce _s;",
        "TINYGRAD_ED_FOR(_k, _in_ind.size()) {",
        *_references(parameters, "_k", (False,)),
        "_type_reduce _a = static_cast<_type_reduce>(" + arguments["map_expr"] + ");",
        "_s = REDUCE(_s, _a);",
        "}",
        "if (threadIdx.x == 0) {",
        "ptrdiff_t i = blockIdx.x;",
        *_references(parameters, "i", (True,)),
        "POST_MAP(_s);",
        "}",
        "#undef REDUCE",
        "#undef POST_MAP",
    ])
    return _wrapped(arguments, parameters, body, arguments.get("name") or "reduce_kernel")


def source_of(kernel):
    """The CUDA source NVRTC compiles for `kernel`."""
    if kernel.kind == "ElementwiseKernel":
        return elementwise_source(kernel.arguments)
    if kernel.kind == "ReductionKernel":
        return reduction_source(kernel.arguments)
    return kernel.arguments["code"]


def needs_cuda_headers(source):
    """Whether `source` includes cuda_fp16.h or uses its types (`half x`, `__half*`; not a variable named half)."""
    return bool(re.search(r"#include\s*[<\"]cuda_fp16|\b__half2?\b|\bhalf2?\b\s*[*&]*\s*[A-Za-z_]", source))


def compile_kernel(nvrtc, kernel):
    source = source_of(kernel)
    options = list(cupy_options(kernel.arguments.get("options") or ()))
    if needs_cuda_headers(source):
        headers = find_cuda_headers()
        if headers is None:
            pytest.skip(f"{kernel.label} uses half (cuda_fp16.h), and no CUDA headers are installed here: "
                        "pip install nvidia-cuda-runtime-cu12 or set CUDA_PATH")
        options.append(f"-I{headers}")
    return nvrtc.compile(source, options, name=f"{kernel.label.split('+')[0].replace(':', '_')}.cu")


# ----------------------------------------------------------------------------------------------------------
# the tests

KERNELS = all_kernels()


@pytest.mark.parametrize("kernel", KERNELS, ids=[kernel.label for kernel in KERNELS])
def test_kernel_compiles_for_sm_90(nvrtc, kernel):
    cubin = compile_kernel(nvrtc, kernel)
    assert cubin[:4] == b"\x7fELF"  # a cubin, for the GPU itself (ptxas ran)
    if kernel.kind in ("RawModule", "RawKernel"):  # every extern "C" function is there under its own name
        for name in re.findall(r'extern\s+"C"\s+__global__\s+void\s+(\w+)', kernel.arguments["code"]):
            assert name.encode() + b"\0" in cubin, f"{name} is not a symbol of the compiled module"
    else:
        assert kernel.arguments["name"].encode() + b"\0" in cubin


def test_every_kernel_of_the_module_is_found():
    """kernels_for builds every kernel the module defines, and each is compiled above once."""
    labels = [kernel.label for kernel in KERNELS]
    defined = {kernel.label for kernel in module_kernels()}
    assert defined and defined <= set(labels) and len(labels) == len(set(labels)), labels
    kinds = {kernel.kind for kernel in KERNELS}
    assert {"ElementwiseKernel", "RawModule"} <= kinds


# the test can fail: a broken operation, a broken raw source, a type error and a write to an input are refused

GOOD = {"in_params": "float32 x, raw int64 t, int64 n", "out_params": "float32 y",
        "operation": "y = x * (float)t[i % n] + (float)t.size()", "name": "good"}


@pytest.mark.parametrize("change, message", [
    ({"operation": "y = x * undefined_name"}, 'identifier "undefined_name" is undefined'),
    ({"operation": "y = x +"}, "expected an expression"),
    ({"operation": "y = x; x = y"}, "expression must be a modifiable lvalue"),     # an input is const
    ({"operation": "y = x; t[0] = 1"}, "expression must be a modifiable lvalue"),  # so is a raw input
    ({"operation": "y = x.size()"}, "expression must have class type"),            # x is an element, not an array
])
def test_a_broken_elementwise_kernel_fails_with_nvrtcs_log(nvrtc, change, message):
    compile_kernel(nvrtc, Kernel("ElementwiseKernel", GOOD))  # the unbroken one compiles
    with pytest.raises(CompileError, match=re.escape(message)) as error:
        compile_kernel(nvrtc, Kernel("ElementwiseKernel", {**GOOD, **change}))
    assert "--gpu-architecture=sm_90" in str(error.value) and change["operation"] in str(error.value)


def test_a_broken_raw_source_fails(nvrtc):
    good = 'extern "C" __global__ void f(float* x, int n) { if (threadIdx.x < n) x[threadIdx.x] *= 2.0f; }'
    compile_kernel(nvrtc, Kernel("RawModule", {"code": good}))
    with pytest.raises(CompileError, match="identifier \"m\" is undefined"):
        compile_kernel(nvrtc, Kernel("RawModule", {"code": good.replace("< n", "< m")}))


def test_float16_and_placeholders_and_reductions_compile(nvrtc):
    """The parts of the wrapper no kernel of the module may use yet: cupy's float16, a type placeholder T, and a
    ReductionKernel (a sum of squares in float32 over float16 input)."""
    compile_kernel(nvrtc, Kernel("ElementwiseKernel", {
        "in_params": "float16 x, T scale", "out_params": "float16 y, float32 z",
        "operation": "float v = (float)x * scale; y = v; z = y; y += 1.0f", "name": "half_scale"}))
    reduction = {"in_params": "float16 x", "out_params": "float32 y", "map_expr": "(float)x * (float)x",
                 "reduce_expr": "a + b", "post_map_expr": "y = a / _in_ind.size()", "identity": "0",
                 "name": "mean_square", "reduce_type": "float"}
    compile_kernel(nvrtc, Kernel("ReductionKernel", reduction))
    with pytest.raises(CompileError, match='identifier "c" is undefined'):
        compile_kernel(nvrtc, Kernel("ReductionKernel", {**reduction, "reduce_expr": "a + c"}))


def test_a_source_using_half_compiles_with_the_cuda_headers(nvrtc):
    code = ('#include <cuda_fp16.h>\n'
            'extern "C" __global__ void twice(__half* x) {\n'
            '    x[threadIdx.x] = __float2half(2.0f * __half2float(x[threadIdx.x]));\n}\n')
    assert needs_cuda_headers(code) and not needs_cuda_headers("for (int half = 4; half > 0; half /= 2) s[k + half];")
    compile_kernel(nvrtc, Kernel("RawModule", {"code": code}))  # skipped, saying why, where no headers are


def test_the_recording_cupy_names_positional_and_keyword_arguments():
    built = []
    cupy = recording_cupy(built)
    cupy.ElementwiseKernel("float32 x", "float32 y", "y = x", "copy", preamble="// p")
    cupy.RawModule(code="extern \"C\" __global__ void f() {}", options=("--std=c++17",))
    assert built[0].arguments == {"in_params": "float32 x", "out_params": "float32 y", "operation": "y = x",
                                  "name": "copy", "preamble": "// p"}
    assert built[1].label == "RawModule:f" and cupy_options(built[1].arguments["options"])[0] == "--std=c++17"
    assert cupy.float32 is np.float32
