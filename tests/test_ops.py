"""Every op of tests/op_table.py, four ways: its forward against plain numpy, its backward against finite
differences of its forward (tinygrad_ed.gradcheck), float32 in giving float32 out and float32 gradients, and on
cuda against the CPU. Adding an op to the table puts it through all four."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from op_table import OPS
from tinygrad_ed import Tensor, gradcheck
from tinygrad_ed.device import to_device

WITH_REFERENCE = [op for op in OPS if op.reference is not None]
KEEPS_DTYPE = [op for op in OPS if op.keeps_dtype]


def by_name(op):
    return op.name


def leaves(arrays, device, dtype=np.float64):
    """Each array as a parameter on `device` (a copy: gradcheck perturbs its data in place)."""
    return [Tensor(np.array(array, dtype=dtype), device=device, requires_grad=True) for array in arrays]


@pytest.mark.parametrize("op", WITH_REFERENCE, ids=by_name)
@given(data=st.data())
def test_forward_matches_numpy(op, data):
    arrays, arguments = data.draw(op.inputs)
    out = op.function(*(Tensor(array) for array in arrays), **arguments)
    np.testing.assert_allclose(out.numpy(), op.reference(*arrays, **arguments), rtol=op.rtol, atol=op.atol)


@pytest.mark.parametrize("op", OPS, ids=by_name)
@given(data=st.data())
def test_backward_matches_finite_differences(device, op, data):
    arrays, arguments = data.draw(op.inputs)
    gradcheck(lambda *tensors: op.function(*tensors, **arguments), *leaves(arrays, device), name=op.name,
              **op.gradcheck)


@pytest.mark.parametrize("op", KEEPS_DTYPE, ids=by_name)
@settings(max_examples=10)
@given(data=st.data())
def test_float32_stays_float32(device, op, data):
    """Python numbers and constants must not upcast float32 math to float64: it would halve the speed of training."""
    arrays, arguments = data.draw(op.inputs)
    tensors = leaves(arrays, device, np.float32)
    out = op.function(*tensors, **arguments)
    assert out.dtype == np.float32, f"{op.name} gave {out.dtype}"
    out.sum().backward()
    for tensor in tensors:
        assert tensor.grad is None or tensor.grad.dtype == np.float32, \
            f"the gradient of {op.name} came back as {tensor.grad.dtype}"


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("op", KEEPS_DTYPE, ids=by_name)
@settings(max_examples=5)
@given(data=st.data())
def test_cuda_agrees_with_the_cpu(cuda, op, dtype, data):
    """The same op on cuda and on the cpu, forward and backward. In float32 both are compared with the float64
    result on the cpu: cuda may round differently (another summation order, a fused kernel), but it must be as
    accurate as the cpu's float32, whose own error grows where the op is ill-conditioned (a LayerNorm row of two
    nearly equal values, [2.9046338, 2.875], amplifies float32's rounding by 1/std: 5e-4 in its input gradient)."""
    arrays, arguments = data.draw(op.inputs)

    def run(device, run_dtype):
        tensors = leaves([np.asarray(array, dtype=dtype) for array in arrays], device, run_dtype)
        out = op.function(*tensors, **arguments)
        assert out.device == device and out.dtype == run_dtype
        upstream = np.linspace(-1, 1, out.size).reshape(out.shape).astype(dtype)
        (out * Tensor(upstream.astype(run_dtype), device=device)).sum().backward()
        return [out.numpy()] + [np.zeros(t.shape) if t.grad is None else to_device(t.grad, "cpu") for t in tensors]

    cpu, gpu = run("cpu", dtype), run(cuda, dtype)
    if dtype == np.float64:
        for on_cpu, on_gpu in zip(cpu, gpu):
            np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-10, atol=1e-10)
        return
    exact = run("cpu", np.float64)   # the float32 inputs, computed in float64
    for on_cpu, on_gpu, reference in zip(cpu, gpu, exact):
        cpu_error = np.abs(on_cpu.astype(np.float64) - reference)
        gpu_error = np.abs(on_gpu.astype(np.float64) - reference)
        allowed = 1e-4 * (1 + np.abs(reference)) + 4 * cpu_error
        assert np.all(gpu_error <= allowed), \
            f"{op.name}: cuda's float32 error {gpu_error.max():.2e} against float64, the cpu's {cpu_error.max():.2e}"
