"""The engine itself, independent of any one op: linearity, accumulation, graph control, errors, dtypes."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import arrays, shapes
from tinygrad_ed import Tensor, no_grad


def leaf(array, device="cpu", dtype=np.float64):
    return Tensor(np.array(array, dtype=dtype), device=device, requires_grad=True)


def grad_of(function, array, device):
    """∂ sum(function(x)) / ∂x as a numpy array, from a fresh leaf."""
    x = leaf(array, device)
    function(x).sum().backward()
    return to_numpy(x.grad)


def to_numpy(array):
    return Tensor(array).numpy()


# ---- the chain rule's algebra ----

@given(data=st.data())
def test_gradient_of_a_sum_is_the_sum_of_gradients(device, data):
    array = data.draw(arrays(data.draw(shapes())))
    f = lambda x: x.exp() * x          # noqa: E731
    g = lambda x: (x * x).tanh()       # noqa: E731
    both = grad_of(lambda x: f(x) + g(x), array, device)
    np.testing.assert_allclose(both, grad_of(f, array, device) + grad_of(g, array, device), rtol=1e-12, atol=1e-12)


def test_two_backward_passes_accumulate(device):
    x = leaf([1.0, -2.0, 3.0], device)
    for _ in range(2):  # two forward passes, two backwards, no zero_grad in between: gradient accumulation
        (x * x).sum().backward()
    np.testing.assert_allclose(to_numpy(x.grad), 4 * x.numpy())


def test_shared_subexpression_accumulates(device):
    x = leaf([0.5, -1.5], device)
    y = x * x            # used twice below: both uses must reach x
    (y + y * 3.0).sum().backward()
    np.testing.assert_allclose(to_numpy(x.grad), 8 * x.numpy())


def test_input_used_twice_in_one_op(device):
    x = leaf([2.0, -3.0], device)
    (x * x).sum().backward()  # Mul's two inputs are the same tensor
    np.testing.assert_allclose(to_numpy(x.grad), 2 * x.numpy())


def test_deep_chain_has_no_recursion_limit():
    x = leaf(1.0)
    y = x
    for _ in range(5000):  # a recursive topological sort would overflow Python's stack here
        y = y + 1.0
    y.backward()
    assert y.item() == 5001.0 and x.grad == 1.0


def test_explicit_gradient(device):
    x = leaf([[1.0, 2.0], [3.0, 4.0]], device)
    upstream = np.array([[1.0, -1.0], [0.5, 2.0]])
    (x * 3.0).backward(gradient=upstream)  # ∂loss/∂y given: backward multiplies by ∂y/∂x = 3
    np.testing.assert_allclose(to_numpy(x.grad), 3 * upstream)
    x.grad = None
    (x * 3.0).backward(gradient=Tensor(upstream, device=device))  # a Tensor works as well as an array
    np.testing.assert_allclose(to_numpy(x.grad), 3 * upstream)


def test_non_scalar_backward_needs_a_gradient():
    y = leaf([1.0, 2.0]) * 2.0
    with pytest.raises(RuntimeError, match=r"\(2,\)"):
        y.backward()


def test_gradient_of_wrong_shape_is_rejected():
    y = leaf([1.0, 2.0]) * 2.0
    with pytest.raises(ValueError):
        y.backward(gradient=np.ones(3))


def test_backward_without_requires_grad_raises():
    with pytest.raises(RuntimeError):
        (Tensor([1.0, 2.0]) * 2.0).sum().backward()


# ---- controlling the graph ----

def test_no_grad_builds_no_graph():
    x = leaf([1.0, 2.0])
    with no_grad():
        y = (x * 2.0).exp().sum()
    assert not y.requires_grad and y.is_leaf
    z = (x * 2.0).sum()  # and gradients are back on after the block
    assert z.requires_grad


def test_no_grad_as_decorator_restores_mode_after_an_error():
    @no_grad()
    def evaluate(x):
        assert not (x * 2.0).requires_grad
        raise KeyError("boom")

    with pytest.raises(KeyError):
        evaluate(leaf([1.0]))
    assert (leaf([1.0]) * 2.0).requires_grad


def test_detach_cuts_the_graph(device):
    x = leaf([1.0, -2.0, 3.0], device)
    (x * x.detach()).sum().backward()  # the detached factor is a constant: d(x·c)/dx = c = x, not 2x
    np.testing.assert_allclose(to_numpy(x.grad), x.numpy())
    assert not x.detach().requires_grad


def test_comparisons_give_boolean_tensors_without_gradient():
    x = leaf([-1.0, 0.0, 2.0])
    for mask, expected in [(x < 0, [1, 0, 0]), (x <= 0, [1, 1, 0]), (x > 0, [0, 0, 1]), (x >= 0, [0, 1, 1]),
                           (x.eq(0.0), [0, 1, 0])]:
        assert mask.dtype == np.bool_ and not mask.requires_grad
        np.testing.assert_array_equal(mask.numpy(), np.array(expected, dtype=bool))


def test_leaf_gradient_has_the_leaf_shape_dtype_and_device(device):
    x = leaf(np.ones((2, 1, 3)), device, dtype=np.float32)
    (x + Tensor(np.ones((4, 2, 5, 3), np.float32), device=device)).sum().backward()  # broadcast, then reduced back
    assert x.grad.shape == (2, 1, 3) and x.grad.dtype == np.float32
    assert Tensor(x.grad).device == device
    np.testing.assert_allclose(to_numpy(x.grad), np.full((2, 1, 3), 20.0))


# ---- errors say what went wrong ----

def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="int64"):
        Tensor(np.array([1, 2, 3]), requires_grad=True)


def test_matmul_mismatch_names_both_shapes():
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        a @ b


def test_mixed_devices_error_names_both_devices():
    """The device check runs before any array is touched, so it can be seen without a GPU."""
    a, b = Tensor([1.0, 2.0]), Tensor([3.0, 4.0])
    b.device = "cuda"  # NOTE: only the label changes; the check reads labels, so no cupy is needed here
    with pytest.raises(RuntimeError, match=r"cpu.*cuda"):
        a + b


@pytest.mark.cuda
def test_mixed_devices_error_with_real_tensors(cuda):
    a, b = Tensor([1.0, 2.0]), Tensor([3.0, 4.0], device="cuda")
    for operation in (lambda: a + b, lambda: b * a, lambda: a @ b.reshape(2, 1)):
        with pytest.raises(RuntimeError) as error:
            operation()
        assert "cpu" in str(error.value) and "cuda" in str(error.value)


# ---- dtypes ----

def test_python_numbers_default_to_float32_and_int64():
    assert Tensor(1.5).dtype == np.float32
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor([[1, 2]]).dtype == np.int64
    assert Tensor(np.zeros(2)).dtype == np.float64  # an array keeps its own dtype
    assert Tensor([1.0], dtype=np.float64).dtype == np.float64


def test_a_second_backward_through_a_freed_graph_raises_instead_of_returning_wrong_gradients():
    w = Tensor(np.array([2.0]), requires_grad=True)
    h = w * 3
    first, second = (h * h).sum(), (h * 2).sum()
    first.backward()
    with pytest.raises(RuntimeError, match="already used and freed"):
        second.backward()           # h's graph was consumed by the first backward
    with pytest.raises(RuntimeError, match="already used and freed"):
        first.backward()
    again = (w * 3 * 2).sum()       # a new forward pass builds a new graph, and gradients keep accumulating
    again.backward()
    assert w.grad[0] == pytest.approx(36.0 + 6.0)
