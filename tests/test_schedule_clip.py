"""Step 4's gradient clipping and nanoGPT's learning-rate schedule."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optim import clip_grad_norm_, get_lr, global_grad_norm
from strategies import arrays, shapes
from tinygrad_ed.device import to_device
from tinygrad_ed.tensor import Tensor


def with_grads(grads, device="cpu"):
    """Parameters (zeros) whose .grad are the given arrays (None: no gradient)."""
    params = []
    for grad in grads:
        shape = np.shape(grad) if grad is not None else (2,)
        param = Tensor(np.zeros(shape), device=device, requires_grad=True)
        param.grad = None if grad is None else to_device(np.array(grad), device)
        params.append(param)
    return params


def host_grads(params):
    return [to_device(param.grad, "cpu") for param in params if param.grad is not None]


# ---- clip_grad_norm_ ----

def test_clip_the_chapters_exploding_gradient():
    params = with_grads([[0.23, -0.45, 0.67], [234.56, -1892.34, 45629.12]])
    norm = clip_grad_norm_(params, 1.0)
    assert norm.item() == pytest.approx(math.sqrt(0.23**2 + 0.45**2 + 0.67**2 + 234.56**2 + 1892.34**2
                                                  + 45629.12**2), rel=1e-12)
    assert params[1].grad[2] == pytest.approx(1.00, abs=5e-3)  # "w6.grad = 45629.12 × 0.000022 = 1.00"
    assert global_grad_norm(params).item() == pytest.approx(1.0, rel=1e-5)  # "the new grad_norm is 1.0"


@st.composite
def gradient_lists(draw):
    return [draw(arrays(draw(shapes(max_dims=3)))) for _ in range(draw(st.integers(1, 4)))]


@given(grads=gradient_lists(), max_norm=st.floats(0.5, 10.0))
def test_clip_keeps_the_direction_and_limits_the_norm(device, grads, max_norm):
    params = with_grads(grads, device)
    expected_norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
    norm = clip_grad_norm_(params, max_norm)
    assert norm.device == device and norm.shape == () and norm.dtype == np.float64
    assert norm.item() == pytest.approx(expected_norm, rel=1e-12, abs=1e-300)
    clipped = host_grads(params)
    factor = max_norm / (expected_norm + 1e-6)
    if factor < 1:  # every gradient shrinks by the same factor: the direction is kept
        for before, after in zip(grads, clipped):
            np.testing.assert_allclose(after, before * factor, rtol=1e-12)
    else:  # below the threshold nothing changes, not even by rounding
        for before, after in zip(grads, clipped):
            np.testing.assert_array_equal(after, before)
    if expected_norm > max_norm:
        assert math.sqrt(sum(float(np.sum(g * g)) for g in clipped)) == pytest.approx(max_norm, rel=1e-5)


def test_clip_skips_parameters_without_grad_and_keeps_dtypes():
    params = with_grads([None, np.array([3.0, 4.0], dtype=np.float32), np.array([0.0], dtype=np.float16)])
    norm = clip_grad_norm_(params, 1.0)
    assert norm.dtype == np.float32 and norm.item() == pytest.approx(5.0, rel=1e-6)
    assert params[0].grad is None
    assert params[1].grad.dtype == np.float32 and params[2].grad.dtype == np.float16
    np.testing.assert_allclose(params[1].grad, [0.6, 0.8], rtol=1e-6)


def test_global_norm_of_float16_is_summed_in_float32():
    params = with_grads([np.full(4, 300.0, dtype=np.float16)])  # 300² = 90000 overflows float16
    assert global_grad_norm(params).item() == pytest.approx(600.0, rel=1e-3)


@pytest.mark.filterwarnings("ignore:invalid value")  # inf · 0 = NaN while scaling: expected, as in PyTorch
@pytest.mark.parametrize("bad, expected", [(np.inf, math.inf), (np.nan, math.nan)])
def test_clip_reports_a_non_finite_norm(device, bad, expected):
    params = with_grads([[1.0, bad], [2.0]], device)
    norm = clip_grad_norm_(params, 1.0).item()
    assert math.isinf(norm) if math.isinf(expected) else math.isnan(norm)


def test_clip_rejects_a_non_positive_max_norm():
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_(with_grads([[1.0]]), 0.0)


# ---- get_lr ----

SHAKESPEARE_CHAR = dict(learning_rate=1e-3, warmup_iters=100, lr_decay_iters=5000, min_lr=1e-4)


def test_warmup_is_linear_from_the_first_iteration():
    assert get_lr(0, **SHAKESPEARE_CHAR) == pytest.approx(1e-3 * 1 / 101)
    assert get_lr(49, **SHAKESPEARE_CHAR) == pytest.approx(1e-3 * 50 / 101)
    assert get_lr(99, **SHAKESPEARE_CHAR) == pytest.approx(1e-3 * 100 / 101)


def test_cosine_starts_at_the_peak_and_ends_at_min_lr():
    assert get_lr(100, **SHAKESPEARE_CHAR) == 1e-3
    assert get_lr(2550, **SHAKESPEARE_CHAR) == pytest.approx((1e-3 + 1e-4) / 2)  # halfway: the mean
    quarter = 1e-4 + 0.5 * (1 + math.cos(math.pi / 4)) * 9e-4  # a quarter of the way: above the straight line
    assert get_lr(100 + 4900 // 4, **SHAKESPEARE_CHAR) == pytest.approx(quarter)
    assert get_lr(5000, **SHAKESPEARE_CHAR) == pytest.approx(1e-4, abs=1e-18)
    assert get_lr(5001, **SHAKESPEARE_CHAR) == 1e-4
    assert get_lr(10**6, **SHAKESPEARE_CHAR) == 1e-4


@st.composite
def schedules(draw):
    warmup = draw(st.integers(0, 50))
    learning_rate = draw(st.floats(1e-5, 1.0))
    return dict(learning_rate=learning_rate, warmup_iters=warmup, lr_decay_iters=warmup + draw(st.integers(1, 200)),
                min_lr=learning_rate * draw(st.floats(0.0, 1.0)))


@given(config=schedules())
def test_schedule_shape(config):
    warmup, decay = config["warmup_iters"], config["lr_decay_iters"]
    lrs = [get_lr(it, **config) for it in range(decay + 10)]
    peak, floor = config["learning_rate"], config["min_lr"]
    assert all(a < b for a, b in zip(lrs[:warmup], lrs[1:warmup + 1]))                   # warmup rises
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))                    # then never rises
    assert all(0 < lr <= peak for lr in lrs[:warmup])
    assert all(floor * (1 - 1e-12) <= lr <= peak * (1 + 1e-12) for lr in lrs[warmup:])
    # continuity: no jump larger than one warmup step or one cosine step (its slope is at most π/2 per unit ratio)
    largest_step = max(peak / (warmup + 1), (peak - floor) * math.pi / 2 / (decay - warmup)) * (1 + 1e-9)
    assert all(abs(a - b) <= largest_step for a, b in zip(lrs, lrs[1:]))


@pytest.mark.parametrize("args, message", [
    (dict(it=-1), "it must be >= 0"),
    (dict(warmup_iters=-1), "warmup_iters"),
    (dict(lr_decay_iters=100), "lr_decay_iters"),
    (dict(min_lr=2e-3), "min_lr"),
])
def test_get_lr_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        get_lr(**{"it": 0, **SHAKESPEARE_CHAR, **args})
