"""Checks of single ops that the op table (tests/op_table.py, run by tests/test_ops.py) cannot make: dense grids out
to the extremes, statistics of dropout's random masks, numerical stability at logits of ±1000, and the embedding's
gradient at a vocabulary too large for the table's small draws."""
import math

import numpy as np
import pytest

from op_table import gelu_reference, gelu_tanh_reference, log_softmax_reference, softmax_reference
from tinygrad_ed import Tensor, cross_entropy, dropout, embedding, scaled_dot_product_attention, where

close = np.testing.assert_allclose


def test_gelu_exact_matches_math_erf():
    x = np.concatenate([np.linspace(-8, 8, 2001), [-40.0, -6.5, 0.0, 1e-9, 6.5, 40.0]])
    reference = gelu_reference(x)
    # float64: erf good to a few ulp; atol covers 1 + erf(x) cancelling for x << 0 (in the reference too)
    close(Tensor(x).gelu().numpy(), reference, rtol=1e-13, atol=1e-15)
    # float32 uses the fast erf: good to ~1e-6 absolute, which is float32's own noise on GELU's range
    close(Tensor(x.astype(np.float32)).gelu().numpy(), reference.astype(np.float32), rtol=1e-5, atol=2e-6)


def test_gelu_tanh_matches_its_formula():
    x = np.linspace(-8, 8, 1001)
    reference = gelu_tanh_reference(x)
    close(Tensor(x).gelu(approximate="tanh").numpy(), reference, rtol=1e-13, atol=1e-15)


def test_where_and_masked_fill():
    x, y = np.arange(6.0).reshape(2, 3), np.array([10.0, 20.0, 30.0])
    mask = np.array([[True, False, True], [False, False, True]])
    close(where(Tensor(mask), Tensor(x), Tensor(y)).numpy(), np.where(mask, x, y))
    close(Tensor(x).masked_fill(Tensor(mask[:1]), -5.0).numpy(), np.where(mask[:1], -5.0, x))
    assert np.isneginf(Tensor(x).masked_fill(Tensor(mask), float("-inf")).numpy()[mask]).all()


def test_astype():
    x = Tensor(np.array([1.1, 2.2, 3.3]))
    assert x.float().dtype == np.float32 and x.half().dtype == np.float16 and x.float().double().dtype == np.float64
    close(x.half().numpy(), np.array([1.1, 2.2, 3.3], dtype=np.float16))


def test_causal_attention_at_position_0_sees_only_itself():
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((2, 3, 5, 4)) for _ in range(3))  # (B, H, T, D)
    out = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), causal=True)
    close(out.numpy()[:, :, 0], v[:, :, 0], rtol=1e-12)


# ---- dropout ----

def test_dropout_statistics():
    p, x = 0.3, np.full((400, 500), 2.0)
    out = dropout(Tensor(x), p, training=True, generator=np.random.default_rng(0)).numpy()
    dropped = out == 0
    assert abs(dropped.mean() - p) < 0.005                         # 200k Bernoulli(0.3): sd ~0.001
    close(out[~dropped], 2.0 / (1 - p))                            # survivors scaled by 1/(1-p) ...
    assert abs(out.mean() - 2.0) < 0.02                            # ... so the expectation is unchanged


def test_dropout_is_reproducible_and_identity_when_off():
    x = Tensor(np.arange(1.0, 101.0))
    first = dropout(x, 0.5, generator=np.random.default_rng(7)).numpy()
    again = dropout(x, 0.5, generator=np.random.default_rng(7)).numpy()
    close(first, again)
    close(dropout(x, 0.5, training=False).numpy(), x.numpy())
    close(dropout(x, 0.0).numpy(), x.numpy())


# ---- numerical stability: logits of ±1000 must not overflow exp ----

LARGE = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [1000.0, 1000.0, 999.0]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_of_huge_logits(dtype):
    out = Tensor(LARGE.astype(dtype)).softmax().numpy()
    assert np.isfinite(out).all()
    close(out, softmax_reference(LARGE).astype(dtype), rtol=1e-6, atol=1e-30)
    close(out[0], [1.0, 0.0, 0.0])
    close(out[1], [1 / 3] * 3, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_softmax_of_huge_logits(dtype):
    out = Tensor(LARGE.astype(dtype)).log_softmax().numpy()
    assert np.isfinite(out).all()
    close(out, log_softmax_reference(LARGE), rtol=1e-6)
    close(out[0], [0.0, -2000.0, -1000.0], atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_of_huge_logits(dtype):
    logits = Tensor(LARGE.astype(dtype), requires_grad=True)
    loss = cross_entropy(logits, Tensor(np.array([1, 0, 2])))
    # -log p: row 0 picks -1000 against 1000 (2000), row 1 is uniform (log 3), row 2 picks 999 against 1000, 1000
    expected = (2000.0 + math.log(3) + (1 + math.log(2 + math.exp(-1)))) / 3
    assert np.isfinite(loss.item())
    close(loss.item(), expected, rtol=1e-6)
    loss.backward()
    assert np.isfinite(logits.grad).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_gradient_far_out_is_one_on_the_right_and_zero_on_the_left(dtype):
    from tinygrad_ed import Tensor
    x = Tensor(np.array([-1e4, -50.0, -12.0, 12.0, 50.0, 1e4], dtype=dtype), requires_grad=True)
    x.gelu().sum().backward()
    np.testing.assert_allclose(x.grad, [0, 0, 0, 1, 1, 1], atol=1e-6)


def test_embedding_gradient_of_a_large_vocabulary_adds_every_repeated_row():
    # 2^14 rows looked up by 2^11 ids is past the size where backward builds a one-hot matrix (2^24 entries):
    # it scatters with add.at instead, and must give the same sums, repeated ids included
    rng = np.random.default_rng(0)
    vocab, channels = 1 << 14, 3
    ids = rng.integers(0, 64, size=(32, 64))                       # 2048 ids, each row looked up ~32 times
    weight = Tensor(rng.standard_normal((vocab, channels)), requires_grad=True)
    upstream = rng.standard_normal((32, 64, channels))
    (embedding(weight, Tensor(ids)) * Tensor(upstream)).sum().backward()
    expected = np.zeros((vocab, channels))
    np.add.at(expected, ids, upstream)
    close(weight.grad, expected, rtol=1e-12, atol=1e-12)

