"""Every op's backward against finite differences of its forward (tinygrad_ed.gradcheck), on every device.

Each test draws shapes and float64 values from tests/strategies.py, builds the op as a small function of
Tensors, and lets gradcheck compare the engine's vector-Jacobian product with central differences.
"""
import operator

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from strategies import (arrays, axes, basic_indices, broadcastable_shapes, broadcastable_to, distinct_arrays,
                        int_arrays, matmul_shapes, nonzero_arrays, positive_arrays, repeated_ids, shapes)
from tinygrad_ed import (GradcheckError, Tensor, cat, cross_entropy, dropout, embedding, gradcheck, layer_norm,
                         linear, scaled_dot_product_attention, stack, where)
from tinygrad_ed.tensor import Function


def leaf(array, device):
    """A float64 parameter on `device` (a copy: gradcheck perturbs its data in place)."""
    return Tensor(np.array(array, dtype=np.float64), device=device, requires_grad=True)


def ints(array, device):
    return Tensor(np.array(array, dtype=np.int64), device=device)


# ---- gradcheck itself: it must catch a wrong backward, or every test below proves nothing ----

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


# ---- elementwise arithmetic, with broadcasting ----

BINARY = [operator.add, operator.sub, operator.mul, operator.truediv]


@pytest.mark.parametrize("op", BINARY, ids=lambda op: op.__name__)
@given(data=st.data())
def test_binary_broadcasting(device, op, data):
    shape_a, shape_b = data.draw(broadcastable_shapes(max_dims=3))
    # nonzero values: the divisor stays away from 1/x's pole (the other ops do not mind)
    a = leaf(data.draw(nonzero_arrays(shape_a, gap=0.5)), device)
    b = leaf(data.draw(nonzero_arrays(shape_b, gap=0.5)), device)
    gradcheck(lambda a, b: op(a, b), a, b, name=f"{op.__name__}(a, b)")
    gradcheck(lambda a, b: op(b, a), a, b, name=f"{op.__name__}(b, a)")


@pytest.mark.parametrize("op", BINARY, ids=lambda op: op.__name__)
@given(data=st.data())
def test_binary_with_python_scalar(device, op, data):
    x = leaf(data.draw(nonzero_arrays(data.draw(shapes(max_dims=3)), gap=0.5)), device)
    gradcheck(lambda x: op(x, 2.5), x, name=f"{op.__name__}(x, 2.5)")
    gradcheck(lambda x: op(-1.5, x), x, name=f"{op.__name__}(-1.5, x)")


@given(data=st.data())
def test_neg(device, data):
    gradcheck(lambda x: -x, leaf(data.draw(arrays(data.draw(shapes()))), device), name="neg")


@pytest.mark.parametrize("exponent", [0.5, 2, -1, 3, 1.5])
@given(data=st.data())
def test_pow(device, exponent, data):
    shape = data.draw(shapes(max_dims=3))
    values = positive_arrays(shape) if exponent in (0.5, -1, 1.5) else arrays(shape)
    gradcheck(lambda x: x ** exponent, leaf(data.draw(values), device), name=f"x ** {exponent}")


@given(data=st.data())
def test_matmul(device, data):
    shape_a, shape_b = data.draw(matmul_shapes())
    a, b = leaf(data.draw(arrays(shape_a)), device), leaf(data.draw(arrays(shape_b)), device)
    gradcheck(lambda a, b: a @ b, a, b, name=f"matmul {shape_a} @ {shape_b}")


# ---- elementwise math ----

UNARY = {
    "exp": (lambda x: x.exp(), arrays),
    "log": (lambda x: x.log(), positive_arrays),
    "sqrt": (lambda x: x.sqrt(), positive_arrays),
    "tanh": (lambda x: x.tanh(), arrays),
    "relu": (lambda x: x.relu(), nonzero_arrays),
    "gelu": (lambda x: x.gelu(), arrays),
    "gelu_tanh": (lambda x: x.gelu(approximate="tanh"), arrays),
}


@pytest.mark.parametrize("name", list(UNARY))
@given(data=st.data())
def test_unary(device, name, data):
    function, values = UNARY[name]
    gradcheck(function, leaf(data.draw(values(data.draw(shapes()))), device), name=name)


@given(data=st.data())
def test_astype_round_trip(device, data):
    x = leaf(data.draw(arrays(data.draw(shapes(max_dims=3)))), device)
    # NOTE: the float32 stop rounds to ~2e-7, so this one check differences with a wider eps and tolerance
    gradcheck(lambda x: x.astype(np.float32).astype(np.float64), x, eps=1e-3, tolerance=1e-3, name="astype")
    assert x.grad.dtype == np.float64  # the gradient comes back in the parameter's own dtype


# ---- reductions ----

@pytest.mark.parametrize("reduction", ["sum", "mean", "max"])
@given(data=st.data(), keepdims=st.booleans())
def test_reduction(device, reduction, data, keepdims):
    shape = data.draw(shapes())
    axis = data.draw(axes(len(shape)))
    values = distinct_arrays(shape) if reduction == "max" else arrays(shape)  # a tie has no single gradient
    x = leaf(data.draw(values), device)
    gradcheck(lambda x: getattr(x, reduction)(axis=axis, keepdims=keepdims), x,
              name=f"{reduction}(axis={axis}, keepdims={keepdims})")


@given(data=st.data(), keepdims=st.booleans(), correction=st.sampled_from([0, 1]))
def test_var(device, data, keepdims, correction):
    shape = data.draw(shapes())
    axis = data.draw(axes(len(shape)))
    x = leaf(data.draw(arrays(shape)), device)
    count = x.size if axis is None else int(np.prod(np.array(shape)[np.array(axis)]))
    assume(count > correction)  # the unbiased variance of a single element divides by zero
    gradcheck(lambda x: x.var(axis=axis, keepdims=keepdims, correction=correction), x,
              name=f"var(axis={axis}, keepdims={keepdims}, correction={correction})")


# ---- softmax and the losses ----

@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax(device, name, data):
    shape = data.draw(shapes(min_dims=1))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = leaf(data.draw(arrays(shape)), device)
    gradcheck(lambda x: getattr(x, name)(axis=axis), x, name=f"{name}(axis={axis})")


@given(data=st.data(), ignore=st.booleans())
def test_cross_entropy(device, data, ignore):
    shape = data.draw(shapes(min_dims=2, max_dims=3))  # (N, V) or (B, T, V)
    targets = data.draw(int_arrays(-1 if ignore else 0, shape[-1] - 1, shape=shape[:-1]))  # -1: ignored
    assume(not ignore or (targets != -1).any())  # a mean over no positions is undefined
    logits, targets = leaf(data.draw(arrays(shape)), device), ints(targets, device)
    index = -1 if ignore else None
    gradcheck(lambda logits: cross_entropy(logits, targets, ignore_index=index), logits,
              name=f"cross_entropy(ignore_index={index})")


@pytest.mark.parametrize("params", ["none", "weight", "weight+bias"])  # nanoGPT's bias=False keeps the weight
@given(data=st.data())
def test_layer_norm(device, params, data):
    shape = data.draw(shapes(min_dims=1, max_dims=3))  # (..., C)
    channels = shape[-1]
    x = leaf(data.draw(arrays(shape)), device)
    weight = leaf(data.draw(arrays((channels,))), device) if params != "none" else None
    bias = leaf(data.draw(arrays((channels,))), device) if params == "weight+bias" else None
    gradcheck(lambda x, weight, bias: layer_norm(x, weight, bias), x, weight, bias, name=f"layer_norm({params})")


# ---- movement ----

@given(data=st.data())
def test_reshape(device, data):
    shape = data.draw(shapes())
    size = int(np.prod(shape))
    target = data.draw(st.sampled_from([shape[::-1], (size,), (1, size, 1), (1,) + shape]))
    gradcheck(lambda x: x.reshape(*target), leaf(data.draw(arrays(shape)), device), name=f"reshape{target}")


@given(data=st.data())
def test_permute_and_transpose(device, data):
    shape = data.draw(shapes(min_dims=2))
    ndim = len(shape)
    order = data.draw(st.permutations(range(ndim)))
    axis0, axis1 = data.draw(st.integers(-ndim, ndim - 1)), data.draw(st.integers(-ndim, ndim - 1))
    x = leaf(data.draw(arrays(shape)), device)
    gradcheck(lambda x: x.permute(*order), x, name=f"permute{tuple(order)}")
    gradcheck(lambda x: x.transpose(axis0, axis1), x, name=f"transpose({axis0}, {axis1})")
    gradcheck(lambda x: x.T, x, name=".T")


@given(data=st.data())
def test_getitem_basic(device, data):
    shape = data.draw(shapes(min_dims=1))
    index = data.draw(basic_indices(shape))
    gradcheck(lambda x: x[index], leaf(data.draw(arrays(shape)), device), name=f"x[{index}]")


@pytest.mark.parametrize("kind", ["ndarray", "list", "Tensor"])
@given(data=st.data())
def test_getitem_fancy_repeated(device, kind, data):
    shape = data.draw(shapes(min_dims=1, max_dims=3))
    rows = data.draw(repeated_ids(shape[0] - 1))  # a row picked twice gets both gradients, added
    index = {"ndarray": rows, "list": rows.tolist(), "Tensor": ints(rows, device)}[kind]
    gradcheck(lambda x: x[index], leaf(data.draw(arrays(shape)), device), name=f"x[{kind} {rows.tolist()}]")


@given(data=st.data())
def test_getitem_fancy_pairs(device, data):
    """x[rows, cols] picks one element per pair, as cross-entropy picks logits[range(N), targets]."""
    rows_n, cols_n = data.draw(shapes(min_dims=2, max_dims=2))
    picks = data.draw(st.integers(1, 6))
    rows = data.draw(int_arrays(0, rows_n - 1, shape=(picks,)))
    cols = data.draw(int_arrays(0, cols_n - 1, shape=(picks,)))
    x = leaf(data.draw(arrays((rows_n, cols_n))), device)
    gradcheck(lambda x: x[rows, cols], x, name=f"x[{rows.tolist()}, {cols.tolist()}]")


@given(data=st.data())
def test_embedding_repeated_ids(device, data):
    vocab, channels = data.draw(shapes(min_dims=2, max_dims=2))
    ids = ints(data.draw(repeated_ids(vocab - 1)), device)  # (B, T) or (T,), some token twice
    weight = leaf(data.draw(arrays((vocab, channels))), device)
    gradcheck(lambda weight: embedding(weight, ids), weight, name="embedding")


@given(data=st.data())
def test_masked_fill(device, data):
    shape = data.draw(shapes(max_dims=3))
    mask_shape = data.draw(broadcastable_to(shape))
    mask = Tensor(data.draw(arrays(mask_shape)) > 0, device=device)
    gradcheck(lambda x: x.masked_fill(mask, -2.0), leaf(data.draw(arrays(shape)), device), name="masked_fill")


@given(data=st.data())
def test_where(device, data):
    condition_shape, shape_a, shape_b = data.draw(broadcastable_shapes(num_shapes=3, max_dims=3))
    condition = Tensor(data.draw(arrays(condition_shape)) > 0, device=device)
    a, b = leaf(data.draw(arrays(shape_a)), device), leaf(data.draw(arrays(shape_b)), device)
    gradcheck(lambda a, b: where(condition, a, b), a, b, name="where")


@given(data=st.data(), count=st.integers(1, 3))
def test_cat(device, data, count):
    shape = data.draw(shapes(min_dims=1, max_dims=3))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    pieces = []
    for _ in range(count):  # the same shape except along `axis`
        piece_shape = list(shape)
        piece_shape[axis] = data.draw(st.integers(1, 3))
        pieces.append(leaf(data.draw(arrays(tuple(piece_shape))), device))
    gradcheck(lambda *pieces: cat(list(pieces), axis=axis), *pieces, name=f"cat(axis={axis})")


@given(data=st.data(), count=st.integers(1, 3))
def test_stack(device, data, count):
    shape = data.draw(shapes(max_dims=3))
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    pieces = [leaf(data.draw(arrays(shape)), device) for _ in range(count)]
    gradcheck(lambda *pieces: stack(list(pieces), axis=axis), *pieces, name=f"stack(axis={axis})")


@given(data=st.data())
def test_split(device, data):
    shape = data.draw(shapes(min_dims=1, max_dims=3))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    size = data.draw(st.integers(1, shape[axis]))
    x = leaf(data.draw(arrays(shape)), device)
    # weight each piece differently, so a gradient routed to the wrong piece shows
    gradcheck(lambda x: sum((piece * (k + 1.0)).sum() for k, piece in enumerate(x.split(size, axis=axis))), x,
              name=f"split({size}, axis={axis})")


# ---- nn ops ----

@given(data=st.data(), p=st.sampled_from([0.1, 0.5]), seed=st.integers(0, 2**16))
def test_dropout(device, data, p, seed):
    x = leaf(data.draw(arrays(data.draw(shapes()))), device)
    # a fresh generator with the same seed for every evaluation: each sees the same mask, so f is smooth
    gradcheck(lambda x: dropout(x, p, training=True, generator=np.random.default_rng(seed)), x,
              name=f"dropout(p={p})")


@given(data=st.data(), causal=st.booleans())
def test_scaled_dot_product_attention(device, data, causal):
    shape = data.draw(shapes(min_dims=4, max_dims=4, max_side=3))  # (B, nh, T, hs)
    q, k, v = (leaf(data.draw(arrays(shape, -1.0, 1.0)), device) for _ in range(3))
    gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=causal), q, k, v,
              name=f"attention(causal={causal})")


@given(data=st.data(), seed=st.integers(0, 2**16))
def test_scaled_dot_product_attention_with_dropout(device, data, seed):
    shape = data.draw(shapes(min_dims=4, max_dims=4, max_side=3))  # (B, nh, T, hs)
    q, k, v = (leaf(data.draw(arrays(shape, -1.0, 1.0)), device) for _ in range(3))
    gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, dropout_p=0.3,
                                                           generator=np.random.default_rng(seed)),
              q, k, v, name="attention(dropout_p=0.3)")


@given(data=st.data(), with_bias=st.booleans())
def test_linear(device, data, with_bias):
    *lead, fan_in = data.draw(shapes(min_dims=1, max_dims=3))  # x (..., in)
    fan_out = data.draw(st.integers(1, 4))
    x = leaf(data.draw(arrays((*lead, fan_in))), device)
    weight = leaf(data.draw(arrays((fan_out, fan_in))), device)  # (out, in), as nanoGPT stores it
    bias = leaf(data.draw(arrays((fan_out,))), device) if with_bias else None
    gradcheck(lambda x, weight, bias: linear(x, weight, bias), x, weight, bias, name=f"linear(bias={with_bias})")
