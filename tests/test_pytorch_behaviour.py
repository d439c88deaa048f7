"""Where the API looks like PyTorch's it behaves as PyTorch's: dtype promotion, degenerate cases, clear errors.
Each expected value is what PyTorch gives for the same snippet (README, "differences from PyTorch", lists the rest)."""
import warnings

import numpy as np
import pytest

from tinygrad_ed import Tensor, cat, cross_entropy, embedding, layer_norm, linear, where
from tinygrad_ed.dtypes import result_dtype

f32 = lambda values: Tensor(np.array(values, dtype=np.float32))  # noqa: E731
i64 = lambda values: Tensor(np.array(values, dtype=np.int64))    # noqa: E731


def leaf(values, dtype=np.float64):
    return Tensor(np.array(values, dtype=dtype), requires_grad=True)


# ---- 1. type promotion ----

@pytest.mark.parametrize("expression, expected", [
    (lambda: f32([1.0, 2.0]) * i64([1, 2]), np.float32),
    (lambda: i64([1, 2]) * 0.5, np.float32),
    (lambda: f32([1.0, 2.0]) ** np.float64(2.0), np.float32),
    (lambda: f32([1.0, 2.0]) ** np.int64(3), np.float32),
    (lambda: f32([1.0, 2.0]) * np.float64(3.0), np.float32),
    (lambda: i64([1, 2]) / i64([2, 2]), np.float32),
    (lambda: i64([1, 2]).exp(), np.float32),
    (lambda: i64([1, 2]).sigmoid(), np.float32),
    (lambda: i64([1, 2]) ** 2, np.int64),
    (lambda: i64([1, 2]) + 1, np.int64),
    (lambda: f32([1.0]) * Tensor(np.float64(2.0)), np.float32),     # a 0-d tensor counts as a number
    (lambda: f32([1.0]) + Tensor(np.array([2.0])), np.float64),     # two tensors: the wider
    (lambda: Tensor(np.array([True])) + 1, np.int64),
])
def test_result_dtypes_are_pytorchs(expression, expected):
    assert expression().dtype == expected


def test_result_dtype_of_numbers_alone_is_the_default():
    assert result_dtype(1.0, 3) == np.float32 and result_dtype(1, 3) == np.int64 and result_dtype(True) == np.bool_


# ---- 2. every leaf's gradient has its own dtype ----

@pytest.mark.parametrize("combine", [lambda a, b: a * b, lambda a, b: a @ b.reshape(3, 1),
                                     lambda a, b: cat([a, b]), lambda a, b: where(Tensor(np.array([1, 0, 1]) > 0), a, b)])
def test_a_float32_leaf_in_a_float64_graph_gets_a_float32_gradient(combine):
    a, b = leaf([1.0, 2.0, 3.0], np.float32), leaf([4.0, 5.0, 6.0], np.float64)
    combine(a, b).sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    assert a.grad.shape == (3,) and b.grad.shape == (3,)


# ---- 3. x ** 0 ----

def test_the_gradient_of_x_to_the_0_is_0_at_0():
    x = leaf([0.0, 2.0])
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])


# ---- 4. degenerate reductions ----

def test_degenerate_reductions_give_pytorchs_nan_and_inf():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy notes the 0·inf; PyTorch says nothing
        assert np.isnan(Tensor(np.ones((0, 3))).mean(axis=0).numpy()).all()
        assert np.isnan(Tensor(np.ones(1)).var().item())                 # N - correction = 0: 0/0
        assert np.isinf(Tensor(np.array([1.0, 2.0, 4.0])).var(correction=5).item())


def test_var_and_std_default_to_the_unbiased_estimate():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    assert Tensor(x).var().item() == pytest.approx(np.var(x, ddof=1))
    assert Tensor(x).std().item() == pytest.approx(np.std(x, ddof=1))
    assert Tensor(x).var(correction=0).item() == pytest.approx(np.var(x))


# ---- 5. casts to an integer leave the graph ----

def test_casting_a_requires_grad_tensor_to_int_or_bool_gives_a_tensor_without_gradient():
    x = leaf([1.5, -2.5])
    for dtype in (np.int64, np.bool_):
        y = x.astype(dtype)
        assert y.dtype == dtype and not y.requires_grad
    assert not x.argmax().requires_grad and x.argmax().item() == 0


# ---- 6. max with a NaN ----

@pytest.mark.parametrize("reduce", [lambda x: x.max(), lambda x: x.max(axis=0), lambda x: x.min()])
def test_the_gradient_of_max_goes_to_the_nan(reduce):
    x = leaf([1.0, np.nan, 3.0])
    reduce(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 0.0])


# ---- 7. mixed basic and advanced indexing ----

def test_an_integer_mixed_with_an_index_array_selects_first_as_in_pytorch():
    data = np.arange(2 * 12 * 13 * 14 * 15, dtype=np.float64).reshape(2, 12, 13, 14, 15)
    d = np.array([0, 1, 2])
    x = leaf(data)
    out = x[1, :, 3:11:2, d, 0:2]
    expected = data[1][:, 3:11:2, d, 0:2]         # PyTorch's rule: the integer first, then the rest
    assert out.shape == expected.shape == (12, 4, 3, 2)
    np.testing.assert_array_equal(out.numpy(), expected)
    out.sum().backward()
    assert x.grad.sum() == out.size
    assert x[:, Tensor(d), 1].shape == data[:, d, 1].shape == (2, 3, 14, 15)  # side by side: numpy agrees


# ---- 8. defaults ----

def test_split_defaults_to_axis_0_and_takes_a_list_of_sizes():
    x = Tensor(np.arange(12.0).reshape(4, 3))
    assert [piece.shape for piece in x.split(2)] == [(2, 3), (2, 3)]
    assert [piece.shape for piece in x.split([1, 3])] == [(1, 3), (3, 3)]
    with pytest.raises(ValueError, match="add up to 4"):
        x.split([1, 2])


# ---- 9. clear errors, and numpy arrays taken as tensors ----

def test_functional_ops_take_numpy_arrays_as_tensors():
    logits, targets = np.array([[1.0, 2.0, 3.0]]), np.array([2])
    expected = -np.log(np.exp(3.0) / np.exp([1.0, 2.0, 3.0]).sum())
    assert cross_entropy(logits, Tensor(targets)).item() == pytest.approx(expected)
    assert cross_entropy(Tensor(logits), targets).item() == pytest.approx(expected)
    np.testing.assert_allclose(embedding(np.eye(3), Tensor(np.array([1]))).numpy(), [[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(linear(np.ones((1, 2)), Tensor(np.ones((3, 2)))).numpy(), [[2.0, 2.0, 2.0]])
    np.testing.assert_allclose(layer_norm(np.array([[1.0, 3.0]])).numpy(), [[-1.0, 1.0]], rtol=1e-4)
    np.testing.assert_allclose((f32([1.0, 2.0]) + np.array([1.0, 1.0])).numpy(), [2.0, 3.0])


def test_cross_entropy_of_integer_logits_is_an_error_not_a_truncated_loss():
    with pytest.raises(TypeError, match="cross_entropy: logits must be a floating-point tensor, got dtype int64"):
        cross_entropy(i64([[1, 2, 3, 9]]), i64([0]))


def test_where_takes_two_numbers():
    out = where(Tensor(np.array([True, False])), 1.0, 3.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.numpy(), [1.0, 3.0])


def test_reduction_axes_as_pytorch_takes_them():
    assert Tensor(np.float32(2.0)).sum(axis=0).item() == 2.0       # a 0-d tensor takes axis 0 (and -1)
    x = Tensor(np.arange(6.0).reshape(2, 3))
    assert x.sum(axis=[0, 1]).item() == 15.0 and x.mean(axis=[0, 1]).item() == 2.5
    assert x.var(axis=[0, 1]).item() == pytest.approx(np.var(np.arange(6.0), ddof=1))


@pytest.mark.parametrize("call, error, message", [
    (lambda: Tensor(np.ones((2, 3))).transpose(0, 5), IndexError, r"transpose: axis 5 is out of range .* 2 axes"),
    (lambda: Tensor(np.ones((2, 3))).sum(axis=2), ValueError, r"sum: axis 2 is out of range"),
    (lambda: cat([]), ValueError, r"cat: expected a non-empty list"),
    (lambda: Tensor("hello"), TypeError, r"dtype <U5 is not supported"),
    (lambda: Tensor(np.array([object()])), TypeError, r"dtype object is not supported"),
    (lambda: f32([1.0]) * [1.0], TypeError, r"mul: the other operand must be a Tensor, a numpy array or a number, "
                                            r"got builtins.list"),
    (lambda: linear([[1.0]], Tensor(np.ones((1, 1)))), TypeError, r"linear: x must be a Tensor or a numpy array"),
    (lambda: f32([1.0]) ** f32([2.0]), TypeError, r"pow: the exponent must be a Python or numpy number"),
    (lambda: f32([1.0, 2.0]) @ f32([1.0, 2.0, 3.0]), ValueError, r"matmul: shapes \(2,\) and \(3,\) do not fit"),
    (lambda: f32([1.0]).clamp(), TypeError, r"clamp: .*at least one"),
    (lambda: f32([[1.0, 2.0]]).expand(3, 3), ValueError, r"expand: cannot expand shape \(1, 2\) to \(3, 3\)"),
])
def test_bad_input_gets_an_error_naming_the_op(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---- the new ops' edge cases ----

def test_matmul_of_two_vectors_is_their_dot_product():
    a, b = leaf([1.0, 2.0, 3.0]), leaf([4.0, 5.0, 6.0])
    out = a @ b
    assert out.shape == () and out.item() == 32.0
    out.backward()
    np.testing.assert_array_equal(a.grad, [4.0, 5.0, 6.0])


def test_sigmoid_and_logsumexp_do_not_overflow():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(f32([-1000.0, 0.0, 1000.0]).sigmoid().numpy(), [0.0, 0.5, 1.0])
        assert f32([1000.0, 1000.0]).logsumexp(axis=0).item() == pytest.approx(1000.0 + np.log(2.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy notes the log(0) that makes the -inf
        assert f32([-np.inf, -np.inf]).logsumexp(axis=0).item() == -np.inf


def test_label_smoothing_1_is_the_mean_loss_over_all_classes():
    logits = np.array([[0.5, 1.0, -2.0]])
    log_p = logits - np.log(np.exp(logits).sum())
    assert cross_entropy(Tensor(logits), i64([0]), label_smoothing=1.0).item() == pytest.approx(-log_p.mean())
