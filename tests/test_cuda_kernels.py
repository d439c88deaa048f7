"""The fused CUDA kernels (tinygrad_ed/fast/cuda_kernels.py, as Functions in tinygrad_ed/fast/cuda_ops.py), tested
three ways.

1. Everywhere: the dispatch point (tinygrad_ed/fast). It chooses the kernel Functions for cupy and float32 only,
   importing the kernels does not import cupy, they are built once, plain_path() turns them off, and the sources are
   well-formed.
2. Where g++ is (no GPU needed): the kernels' own CUDA source, run on the CPU. An emulator compiles the source as C++
   (a block's threads are std::threads, __syncthreads a barrier) and stands in for cupy: a module named "cupy" that is
   numpy plus an ElementwiseKernel and a RawModule which run the emulated kernels, after checking every argument
   against the kernel's parameter types as a GPU launch needs them. With it as their `xp`, the ops take their fused
   path, and must agree with their plain numpy code. (tests/test_kernel_compile.py compiles the sources for the GPU
   with NVRTC.) What this cannot show: that cupy's API behaves as the stand-in assumes, anything about speed. The
   cuda tests below, and bench/gpu_equivalence.py, cover those on a GPU.
3. With cupy and a GPU (`cuda` marker, skipped cleanly elsewhere): each op's fused path against its plain cupy path
   and the CPU, AdamW's kernel against the plain update, and a GPT's loss and gradients.
"""
import ctypes
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

import tinygrad_ed.tensor as tensor_module
from gpt.model import GPT, GPTConfig
from gpt.step import StepObserver, configure_optimizers, train_step
from optim import AdamW, GradScaler
from op_table import OPS_BY_NAME
from tinygrad_ed import Tensor, layer_norm
from tinygrad_ed.device import array_module, to_device
from tinygrad_ed.fast import cuda_kernels, cuda_ops, implementation, parameter_update, plain_path
from tinygrad_ed.fast.cuda_kernels import BLOCK, ELEMENTWISE_KERNELS, ROW_KERNEL_NAMES, ROW_KERNELS, kernels_for
from tinygrad_ed.ops.activations import Gelu
from tinygrad_ed.ops.layers import Attention, CrossEntropy, LayerNormFunction

# ----------------------------------------------------------------------------------------------------------
# 1. the dispatch point and the sources


def _float32(*shape):
    return np.zeros(shape, dtype=np.float32)


KERNEL_FUNCTIONS = cuda_ops.ALTERNATIVES  # plain op -> its kernel Function


def test_numpy_gets_no_kernels():
    for plain in KERNEL_FUNCTIONS:
        assert implementation(plain, np, [_float32(2, 3)], {}) is plain
    param = Tensor(_float32(3), requires_grad=True)
    param.grad = _float32(3)
    assert parameter_update(AdamW([param]), param) is None


def test_importing_the_kernels_does_not_import_cupy():
    code = ("import sys, tinygrad_ed.fast.cuda_kernels, tinygrad_ed.fast.cuda_ops, tinygrad_ed.ops.layers, "
            "tinygrad_ed.ops.activations, optim; print('cupy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


class _RecordingCupy(types.ModuleType):
    """A module named cupy whose kernel classes only record how they were built (nothing compiles)."""

    def __init__(self):
        super().__init__("cupy")
        self.built = []
        recording = self

        class ElementwiseKernel:
            def __init__(self, in_params, out_params, operation, name):
                recording.built.append(name)

        class RawModule:
            def __init__(self, code):
                recording.built.append("RawModule")

        self.ElementwiseKernel, self.RawModule = ElementwiseKernel, RawModule


def test_cupy_gets_kernels_for_float32_only_built_once():
    cupy = _RecordingCupy()
    kernels = kernels_for(cupy)
    assert isinstance(kernels, cuda_kernels.CudaKernels)
    assert kernels_for(cupy) is kernels                                            # cached: built once
    assert sorted(cupy.built) == sorted([spec.name for spec in ELEMENTWISE_KERNELS] + ["RawModule"])
    assert set(KERNEL_FUNCTIONS) == {Gelu, LayerNormFunction, CrossEntropy, Attention}  # the ops the kernels cover
    for plain, kernel in KERNEL_FUNCTIONS.items():
        assert implementation(plain, cupy, [_float32(2, 4)], {}) is kernel
        assert implementation(plain, cupy, [_float32(2, 4).astype(np.float64)], {}) is plain  # gradient checks
        float16 = implementation(plain, cupy, [_float32(2, 4).astype(np.float16)], {})  # float16 compute
        assert float16 is (plain if plain is Attention else kernel)
    # every array must be float32: a float16 weight beside a float32 x takes the plain path
    assert implementation(LayerNormFunction, cupy, [_float32(2, 4), _float32(4).astype(np.float16)], {}) \
        is LayerNormFunction
    assert implementation(Gelu, cupy, [_float32(3)], {"approximate": "tanh"}) is Gelu  # only the exact GELU has one


def test_plain_path_switches_the_kernels_off_and_back_on():
    cupy = _RecordingCupy()
    with plain_path():
        assert implementation(Gelu, cupy, [_float32(3)], {}) is Gelu
        with plain_path():
            assert implementation(Gelu, cupy, [_float32(3)], {}) is Gelu
        assert implementation(Gelu, cupy, [_float32(3)], {}) is Gelu
    assert implementation(Gelu, cupy, [_float32(3)], {}) is cuda_ops.GeluKernel


def test_kernel_sources_are_ascii_and_name_their_parameters():
    # ASCII: the CUDA compilers get plain C; the math in Greek lives in the Python comments
    for spec in ELEMENTWISE_KERNELS:
        for text in spec:
            assert text.strip() and text.isascii()
    assert ROW_KERNELS.isascii() and ROW_KERNELS.startswith(f"#define BLOCK {BLOCK}\n")
    assert BLOCK & (BLOCK - 1) == 0  # block_sum halves the block down to one thread
    assert set(_row_kernel_signatures()) == set(ROW_KERNEL_NAMES)
    gelu_backward = dict(zip(cuda_kernels.Elementwise._fields, cuda_kernels.GELU_BACKWARD))
    assert "grad_x" in gelu_backward["out_params"] and "erff" in gelu_backward["operation"]
    assert cuda_kernels.ADAMW.out_params == "float32 w, float32 m, float32 v"


# ----------------------------------------------------------------------------------------------------------
# 2. the CUDA source on the CPU

def _row_kernel_signatures():
    """name -> [(C type, parameter name)] for every extern "C" __global__ function in ROW_KERNELS."""
    found = re.findall(r'extern "C" __global__ void (\w+)\(([^)]*)\)', ROW_KERNELS)
    return {name: [tuple(p.strip().rsplit(" ", 1)) for p in params.split(",")] for name, params in found}


_C_TYPES = {"float16": "_Float16", "float32": "float", "int32": "int", "int64": "long long"}


def _elementwise_parameters(spec):
    """[(is_output, is_raw, dtype name, parameter name)] of an Elementwise spec."""
    parameters = []
    for text, is_output in ((spec.in_params, False), (spec.out_params, True)):
        for parameter in text.split(","):
            *keywords, dtype, name = parameter.split()
            parameters.append((is_output, keywords == ["raw"], dtype, name))
    return parameters


_EMULATOR_HEADER = r"""
#include <barrier>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>
struct Dim3 { unsigned x = 0, y = 0, z = 0; };
static thread_local Dim3 blockIdx, threadIdx;
static std::barrier<>* block_barrier;
#define __global__
#define __device__
#define __shared__ static   // one copy for all threads: blocks run one after another
static inline void __syncthreads() { block_barrier->arrive_and_wait(); }
static inline float __int_as_float(int bits) { float f; std::memcpy(&f, &bits, sizeof f); return f; }
static inline int __float_as_int(float f) { int bits; std::memcpy(&bits, &f, sizeof bits); return bits; }

// run `kernel` for blocks 0..blocks-1 in turn, each with `threads` threads running at once
template <class Kernel> static void launch(long long blocks, int threads, Kernel kernel) {
    std::barrier<> barrier(threads);
    block_barrier = &barrier;
    std::vector<std::thread> pool;
    for (int k = 0; k < threads; k++)
        pool.emplace_back([&, k] {
            threadIdx.x = k;
            for (long long b = 0; b < blocks; b++) {
                blockIdx.x = (unsigned)b;
                kernel();
                barrier.arrive_and_wait();  // every thread has finished block b before any starts block b + 1
            }
        });
    for (auto& thread : pool) thread.join();
}
"""


def _emulator_source():
    """The row kernels with a run_<name>(blocks, threads, ...) launcher each, and every elementwise operation as a
    loop over i in which each non-raw parameter is a reference to element i, as in cupy's generated code."""
    parts = [_EMULATOR_HEADER, ROW_KERNELS]
    for name, params in _row_kernel_signatures().items():
        declarations, names = ", ".join(" ".join(p) for p in params), ", ".join(p[1] for p in params)
        parts.append(f'extern "C" void run_{name}(long long blocks, int threads, {declarations}) '
                     f'{{ launch(blocks, threads, [=] {{ {name}({names}); }}); }}')
    for spec in ELEMENTWISE_KERNELS:
        arguments, references = [], []
        for is_output, is_raw, dtype, name in _elementwise_parameters(spec):
            c_type = _C_TYPES[dtype]
            const = "" if is_output else "const "
            if is_raw:
                arguments.append(f"{const}{c_type}* {name}")
            else:  # scalars arrive as arrays too: the stand-in broadcasts every non-raw input to the loop's shape
                arguments.append(f"{const}{c_type}* _raw_{name}")
                references.append(f"{const}{c_type} &{name} = _raw_{name}[i];")
        parts.append(f'extern "C" void {spec.name}(long long _size, {", ".join(arguments)}) {{\n'
                     f'  for (long long i = 0; i < _size; i++) {{\n    {" ".join(references)}\n'
                     f'{spec.operation}\n  }}\n}}')
    return "\n".join(parts)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """The compiled emulator library, or a skip where there is no g++."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("no g++ to compile the CUDA source for the CPU")
    directory = tmp_path_factory.mktemp("cuda-emulator")
    (directory / "kernels.cpp").write_text(_emulator_source())
    subprocess.run([compiler, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "kernels.cpp", "-o", "kernels.so"],
                   cwd=directory, check=True, capture_output=True)
    return ctypes.CDLL(str(directory / "kernels.so"))


_SCALAR_TYPES = {"float": (np.float32, ctypes.c_float), "int": (np.int32, ctypes.c_int),
                 "long long": (np.int64, ctypes.c_longlong)}
_POINTER_TYPES = {"float*": np.float32, "const float*": np.float32, "const long long*": np.int64}


class EmulatedCupy(types.ModuleType):
    """numpy, named cupy, with cupy's two kernel classes running the emulated kernels. `launched` lists the kernels
    run, so a test can check which path an op took."""

    def __init__(self, library):
        super().__init__("cupy")
        self.launched = []
        module = self

        class ElementwiseKernel:
            def __init__(self, in_params, out_params, operation, name):
                spec = cuda_kernels.Elementwise(in_params, out_params, operation, name)
                self.name, self.parameters = name, _elementwise_parameters(spec)
                self.inputs = [p for p in self.parameters if not p[0]]

            def __call__(self, *args):
                # as cupy: arrays must have the declared dtype exactly; scalars are cast to it; non-raw arrays broadcast
                module.launched.append(self.name)
                shape = np.broadcast_shapes(*(np.shape(a) for a, p in zip(args, self.parameters)
                                              if isinstance(a, np.ndarray) and not p[1]))
                outputs = list(args[len(self.inputs):]) or [np.empty(shape, p[2]) for p in self.parameters if p[0]]
                buffers = []
                for value, (_, is_raw, dtype, name) in zip(list(args[:len(self.inputs)]) + outputs, self.parameters):
                    if isinstance(value, np.ndarray):
                        if value.dtype != dtype:
                            raise TypeError(f"{self.name}: {name} is {value.dtype}, the kernel declares {dtype}")
                        buffers.append(np.ascontiguousarray(value if is_raw else np.broadcast_to(value, shape)))
                    else:
                        buffers.append(np.full(shape, value, dtype=dtype))
                getattr(library, self.name)(ctypes.c_longlong(int(np.prod(shape))),
                                            *(ctypes.c_void_p(b.ctypes.data) for b in buffers))
                for output, buffer in zip(outputs, buffers[len(self.inputs):]):
                    output[...] = buffer
                return outputs[0] if len(outputs) == 1 else tuple(outputs)

        class RawModule:
            def __init__(self, code):
                assert code == ROW_KERNELS
                self.signatures = _row_kernel_signatures()

            def get_function(self, name):
                return lambda grid, block, args: self._launch(name, grid, block, args)

            def _launch(self, name, grid, block, args):
                # what the GPU needs: one block per row of BLOCK threads; contiguous arrays of the pointee's type;
                # scalars as numpy scalars of the parameter's exact C type (a Python int would go as a long long)
                module.launched.append(name)
                (blocks,), (threads,) = grid, block
                assert threads == BLOCK and blocks > 0
                converted = []
                for value, (c_type, parameter) in zip(args, self.signatures[name], strict=True):
                    if c_type in _POINTER_TYPES:
                        assert isinstance(value, np.ndarray) and value.flags.c_contiguous, (name, parameter)
                        assert value.dtype == _POINTER_TYPES[c_type], (name, parameter, value.dtype)
                        converted.append(ctypes.c_void_p(value.ctypes.data))
                    else:
                        numpy_type, ctypes_type = _SCALAR_TYPES[c_type]
                        assert type(value) is numpy_type, (name, parameter, type(value))
                        converted.append(ctypes_type(value.item()))
                getattr(library, f"run_{name}")(ctypes.c_longlong(blocks), ctypes.c_int(threads), *converted)

        self.ElementwiseKernel, self.RawModule = ElementwiseKernel, RawModule

    def __getattr__(self, name):  # everything else is numpy's
        return getattr(np, name)


@pytest.fixture
def emulated_cupy(emulator, monkeypatch):
    """Within the test, every op and optimizer computes with EmulatedCupy as its xp (tensors stay on "cpu")."""
    cupy = EmulatedCupy(emulator)
    monkeypatch.setattr(tensor_module, "array_module", lambda device: cupy)
    return cupy


RNG = np.random.default_rng(0)


def _data(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _targets(shape, vocab, ignore_index=None):
    targets = RNG.integers(0, vocab, shape)
    if ignore_index is not None:
        targets.reshape(-1)[::3] = ignore_index
    return targets


# name -> (the op of tests/op_table.py, its input arrays, every one requiring grad, its other arguments, the kernels its
# fused path runs). Sizes straddle BLOCK: rows shorter than a block, exactly one, and longer (the strided loops).
TARGETS_65, TARGETS_300 = _targets((4, 9), 65), _targets((3, 5), 300, ignore_index=-100)
GELU_KERNELS = {"tinygrad_ed_gelu_forward", "tinygrad_ed_gelu_backward"}
LAYER_NORM_KERNELS = {"layer_norm_forward", "layer_norm_backward"}
CROSS_ENTROPY_KERNELS = {"cross_entropy_forward", "tinygrad_ed_cross_entropy_backward"}
ATTENTION_KERNELS = {"attention_softmax_forward", "attention_softmax_backward"}
CASES = {
    "gelu": ("gelu", [_data(3, 7, 37, scale=3)], {}, GELU_KERNELS),
    "layer_norm": ("layer_norm(weight+bias)", [_data(4, 5, 384, scale=2), _data(384), _data(384)], {"eps": 1e-5},
                   LAYER_NORM_KERNELS),
    "layer_norm_no_bias_600": ("layer_norm(weight)", [_data(3, 600), _data(600)], {"eps": 1e-5}, LAYER_NORM_KERNELS),
    "layer_norm_no_params_256": ("layer_norm", [_data(2, 256) + 3], {"eps": 1e-5}, LAYER_NORM_KERNELS),
    "cross_entropy": ("cross_entropy", [_data(4, 9, 65, scale=3)], {"targets": TARGETS_65, "ignore_index": None},
                      CROSS_ENTROPY_KERNELS),
    "cross_entropy_ignore_300": ("cross_entropy", [_data(3, 5, 300, scale=3)],
                                 {"targets": TARGETS_300, "ignore_index": -100}, CROSS_ENTROPY_KERNELS),
    "attention_causal": ("attention", [_data(2, 3, 11, 8) for _ in range(3)], {"causal": True}, ATTENTION_KERNELS),
    "attention_causal_260": ("attention", [_data(1, 1, 260, 4) for _ in range(3)], {"causal": True},
                             ATTENTION_KERNELS),
    "attention_full": ("attention", [_data(1, 2, 9, 8, scale=2) for _ in range(3)], {"causal": False},
                       ATTENTION_KERNELS),
    "attention_dropout": ("attention(dropout)", [_data(2, 2, 7, 8) for _ in range(3)], {"seed": 5},
                          ATTENTION_KERNELS),  # dropout 0.3, the same masks every run
}
SAME_ON_CPU = [name for name in CASES if "dropout" not in name]  # dropout masks: numpy's and cupy's streams differ


def run_case(name, device):
    """The case's output and every input's gradient, as numpy arrays."""
    op_name, inputs, arguments, _ = CASES[name]
    tensors = [Tensor(array, device=device, requires_grad=True) for array in inputs]
    out = OPS_BY_NAME[op_name].function(*tensors, **arguments)
    weights = np.linspace(-1, 1, out.size, dtype=np.float32).reshape(out.shape)  # every output element counts
    (out * Tensor(weights, device=device)).sum().backward()
    return [out.numpy()] + [to_device(tensor.grad, "cpu") for tensor in tensors]


def assert_close(ours, reference, tolerance, what):
    """max |ours − reference| ≤ tolerance · max |reference|, tensor by tensor."""
    for i, (a, b) in enumerate(zip(ours, reference, strict=True)):
        assert a.shape == b.shape and a.dtype == b.dtype, (what, i, a.shape, b.shape, a.dtype, b.dtype)
        scale = max(float(np.max(np.abs(b))), 1e-30) if b.size else 1.0
        error = float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
        assert error <= tolerance * scale, f"{what}, tensor {i}: max error {error:.3g}, scale {scale:.3g}"


@pytest.mark.parametrize("name", list(CASES))
def test_emulated_kernels_match_the_plain_code(name, emulator, monkeypatch):
    plain = run_case(name, "cpu")
    cupy = EmulatedCupy(emulator)
    monkeypatch.setattr(tensor_module, "array_module", lambda device: cupy)
    fused_results = run_case(name, "cpu")
    assert set(cupy.launched) == CASES[name][3]  # the op took its fused path, forward and backward
    assert_close(fused_results, plain, 1e-5, name)


def test_emulated_float64_takes_the_plain_path(emulated_cupy):
    x = Tensor(RNG.standard_normal((2, 40)), requires_grad=True)
    layer_norm(x.gelu()).sum().backward()
    assert emulated_cupy.launched == []


def _adamw_run(steps):
    """The weights after `steps` AdamW updates with nanoGPT's settings, on a matrix and a vector, both decayed."""
    numbers = np.random.default_rng(1)
    params = [Tensor(numbers.standard_normal((7, 33)).astype(np.float32), requires_grad=True),
              Tensor(numbers.standard_normal(33).astype(np.float32), requires_grad=True)]
    optimizer = AdamW(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    for step in range(steps):
        for param in params:
            param.grad = (numbers.standard_normal(param.shape) * 10.0 ** -step).astype(np.float32)
        optimizer.step()
    return [param.numpy() for param in params] + [optimizer.state[params[0]][key] for key in ("m", "v")]


def test_emulated_adamw_matches_the_plain_update(emulator, monkeypatch):
    plain = _adamw_run(steps=4)
    cupy = EmulatedCupy(emulator)
    monkeypatch.setattr(tensor_module, "array_module", lambda device: cupy)
    assert_close(_adamw_run(steps=4), plain, 1e-6, "adamw")
    assert set(cupy.launched) == {"tinygrad_ed_adamw"}


def test_emulated_adamw_leaves_watched_parameters_to_the_plain_update(emulated_cupy):
    param = Tensor(_data(5), requires_grad=True)
    optimizer = AdamW([param], lr=1e-3)
    key = optimizer.watch(param, 2)
    param.grad = _data(5)
    optimizer.step()
    assert emulated_cupy.launched == [] and optimizer.last_update(key)["step"] == 1


def _gpt_step():
    """A small GPT's loss, every gradient and the weights after one training step (gpt/step.py's, with AdamW).

    bias=False: the attention's k bias has a gradient that is exactly 0 in exact arithmetic (softmax ignores a constant
    added to a query's every score), so its first AdamW step, about ±lr whatever |g|, would be decided by rounding.
    """
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=16, bias=False), seed=3)
    idx = Tensor(np.random.default_rng(2).integers(0, 11, (2, 8)))
    batch, named = (idx, Tensor(np.roll(idx.numpy(), -1, axis=1))), list(model.named_parameters())

    class Gradients(StepObserver):
        def after_backward(self, index, X, Y, logits, loss):
            self.grads = [param.grad.copy() for _, param in named]

    gradients = Gradients()
    optimizer = configure_optimizers(model, weight_decay=0.1, learning_rate=1e-3, betas=(0.9, 0.999))
    # clipped (to a norm the gradients exceed) and loss-scaled, so that the flat-buffer kernels run too
    step = train_step(model, optimizer, batch, lambda: batch, lr=1e-3, grad_clip=0.5,
                      scaler=GradScaler(init_scale=2.0 ** 10), observer=gradients)
    return [step.loss.numpy(), step.grad_norm.numpy()] + gradients.grads + [param.numpy() for _, param in named]


def test_emulated_gpt_step_matches_the_plain_code(emulator, monkeypatch):
    plain = _gpt_step()
    cupy = EmulatedCupy(emulator)
    monkeypatch.setattr(tensor_module, "array_module", lambda device: cupy)
    assert_close(_gpt_step(), plain, 1e-5, "gpt")
    float32_kernels = {spec.name for spec in ELEMENTWISE_KERNELS if not spec.name.endswith("_half")}
    assert set(cupy.launched) == float32_kernels | set(ROW_KERNEL_NAMES)


def test_emulated_float16_gelu_matches_the_plain_code(emulator, monkeypatch):
    plain = _float16_gelu("cpu")
    cupy = EmulatedCupy(emulator)
    monkeypatch.setattr(tensor_module, "array_module", lambda device: cupy)
    assert_close(_float16_gelu("cpu"), plain, 2e-3, "float16 gelu")
    assert set(cupy.launched) == {"tinygrad_ed_gelu_forward_half", "tinygrad_ed_gelu_backward_half"}


# ----------------------------------------------------------------------------------------------------------
# 3. on a GPU

@pytest.mark.cuda
def test_cupy_gets_kernels_for_float32(cuda):
    cupy = array_module(cuda)
    assert implementation(Gelu, cupy, [cupy.zeros(3, dtype=cupy.float32)], {}) is cuda_ops.GeluKernel
    assert implementation(Gelu, cupy, [cupy.zeros(3, dtype=cupy.float64)], {}) is Gelu
    assert implementation(Gelu, cupy, [cupy.zeros(3, dtype=cupy.float16)], {}) is cuda_ops.GeluKernel
    assert implementation(Gelu, cupy, [cupy.zeros(3, dtype=cupy.float16), cupy.zeros(3, dtype=cupy.float32)],
                          {}) is Gelu


def _float16_gelu(device):
    """GELU's output and input gradient for float16 x (float16 upstream gradient), as float32 numpy arrays."""
    x = Tensor((np.linspace(-6, 6, 3 * 7 * 37) ** 3 / 30).reshape(3, 7, 37).astype(np.float16), device=device,
               requires_grad=True)
    out = x.gelu()
    out.backward(Tensor(np.linspace(-1, 1, out.size).reshape(out.shape).astype(np.float16), device=device))
    return [out.numpy().astype(np.float32), to_device(x.grad, "cpu").astype(np.float32)]


def _float16_case(name, device):
    """A float16 run of a CASES case: inputs rounded to float16, the outputs and gradients as float32."""
    op_name, inputs, arguments, _ = CASES[name]
    tensors = [Tensor(array.astype(np.float16), device=device, requires_grad=True) for array in inputs]
    out = OPS_BY_NAME[op_name].function(*tensors, **arguments)
    assert out.dtype == np.float16
    weights = np.linspace(-1, 1, out.size).reshape(out.shape).astype(np.float16)
    (out * Tensor(weights, device=device)).sum().backward()
    return [out.numpy().astype(np.float32)] + [to_device(t.grad, "cpu").astype(np.float32) for t in tensors]


@pytest.mark.cuda
def test_fused_float16_gelu_matches_the_plain_path(cuda):
    """The float16 GELU kernels (float16 stored, float computed, rounded once) agree with the plain float16 code to
    float16's precision."""
    fused = _float16_gelu(cuda)
    with plain_path():
        plain = _float16_gelu(cuda)
    assert_close(fused, plain, 2e-3, "float16 gelu")


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["layer_norm", "layer_norm_no_bias_600", "cross_entropy", "cross_entropy_ignore_300"])
def test_float16_layer_norm_and_cross_entropy_through_the_float32_kernels_match_the_plain_path(cuda, name):
    """float16 LayerNorm and cross-entropy run the float32 kernels between casts, and agree with the plain float16
    code (float32 statistics) to float16's precision."""
    fused = _float16_case(name, cuda)
    with plain_path():
        plain = _float16_case(name, cuda)
    assert_close(fused, plain, 4e-3, name)


@pytest.mark.cuda
@pytest.mark.parametrize("name", list(CASES))
def test_fused_kernels_match_the_plain_cupy_path(cuda, name):
    fused_results = run_case(name, cuda)
    with plain_path():
        plain = run_case(name, cuda)
    assert_close(fused_results, plain, 1e-5, name)


@pytest.mark.cuda
@pytest.mark.parametrize("name", SAME_ON_CPU)
def test_fused_kernels_match_the_cpu(cuda, name):
    assert_close(run_case(name, cuda), run_case(name, "cpu"), 1e-5, name)


def _adamw_on(device, steps=4):
    params = [Tensor(np.linspace(-1, 1, 7 * 33, dtype=np.float32).reshape(7, 33), device=device, requires_grad=True)]
    optimizer = AdamW(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    gradients = np.random.default_rng(1)
    for step in range(steps):
        params[0].grad = to_device((gradients.standard_normal((7, 33)) * 10.0 ** -step).astype(np.float32), device)
        optimizer.step()
    state = optimizer.state[params[0]]
    return [params[0].numpy(), to_device(state["m"], "cpu"), to_device(state["v"], "cpu")]


@pytest.mark.cuda
def test_fused_adamw_matches_the_plain_update_and_the_cpu(cuda):
    fused_results = _adamw_on(cuda)
    with plain_path():
        plain = _adamw_on(cuda)
    assert_close(fused_results, plain, 1e-6, "adamw vs plain cupy")
    assert_close(fused_results, _adamw_on("cpu"), 1e-6, "adamw vs cpu")


@pytest.mark.cuda
def test_gpt_loss_and_gradients_match_the_cpu(cuda):
    results = {}
    for device in ("cpu", cuda):
        model = GPT(GPTConfig(block_size=32, vocab_size=65, n_layer=2, n_head=4, n_embd=64), device=device, seed=3)
        idx = np.random.default_rng(2).integers(0, 65, (4, 33))
        _, loss = model(Tensor(idx[:, :-1], device=device), Tensor(idx[:, 1:], device=device))
        loss.backward()
        results[device] = [loss.numpy()] + [to_device(p.grad, "cpu") for p in model.parameters()]
    assert_close(results[cuda], results["cpu"], 1e-4, "gpt")
