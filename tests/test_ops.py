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
    arrays, arguments = data.draw(op.inputs)
    results = {}
    for device in ("cpu", cuda):
        tensors = leaves(arrays, device, dtype)
        out = op.function(*tensors, **arguments)
        assert out.device == device and out.dtype == dtype
        upstream = np.linspace(-1, 1, out.size).reshape(out.shape).astype(dtype)
        (out * Tensor(upstream, device=device)).sum().backward()
        results[device] = [out.numpy()] + [np.zeros(t.shape) if t.grad is None else to_device(t.grad, "cpu")
                                           for t in tensors]
    tolerance = 1e-10 if dtype == np.float64 else 1e-4
    for cpu, gpu in zip(results["cpu"], results[cuda]):
        np.testing.assert_allclose(gpu, cpu, rtol=tolerance, atol=tolerance)
