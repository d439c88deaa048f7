"""gradcheck itself (tinygrad_ed/gradcheck.py): it must catch a wrong backward, or every gradient check of
tests/test_ops.py, which runs it over every op of the table, proves nothing."""
import numpy as np
import pytest

from tinygrad_ed import GradcheckError, Tensor, gradcheck
from tinygrad_ed.tensor import Function


def leaf(array, device):
    """A float64 parameter on `device` (a copy: gradcheck perturbs its data in place)."""
    return Tensor(np.array(array, dtype=np.float64), device=device, requires_grad=True)


class WrongSquare(Function):
    """x², with the factor 2 forgotten in backward: the kind of slip gradcheck exists to catch."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        return grad * self.x


def test_gradcheck_catches_a_wrong_backward(device):
    x = leaf([[0.5, -1.0], [2.0, 1.5]], device)
    before = x.numpy().copy()
    with pytest.raises(GradcheckError, match=r"wrong_square.*input 0 of shape \(2, 2\), element \("):
        gradcheck(lambda x: WrongSquare.apply(x), x, name="wrong_square")
    np.testing.assert_array_equal(x.numpy(), before)  # every perturbed element was restored
    assert gradcheck(lambda x: x * x, x) < 1e-8


def test_gradcheck_passes_other_inputs_through_and_rejects_float32(device):
    x, constant = leaf([1.0, 2.0], device), Tensor(np.array([3.0, 4.0]), device=device)
    assert gradcheck(lambda x, constant, power: (x * constant) ** power, x, constant, 2) < 1e-8
    assert constant.grad is None
    with pytest.raises(TypeError, match="float32"):
        gradcheck(lambda x: x.exp(), Tensor(np.ones(2, np.float32), device=device, requires_grad=True))
