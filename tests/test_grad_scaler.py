"""GradScaler: scale the loss, unscale the gradients, skip overflowing steps, adapt the scale."""
import numpy as np
import pytest

from optim import SGD, GradScaler, clip_grad_norm_
from tinygrad_ed.device import to_device
from tinygrad_ed.tensor import Tensor


def model(device="cpu"):
    """Two parameters and an SGD optimizer over them (lr 0.1)."""
    w = Tensor(np.array([1.0, 2.0], dtype=np.float32), device=device, requires_grad=True)
    b = Tensor(np.array([0.5], dtype=np.float32), device=device, requires_grad=True)
    return [w, b], SGD([w, b], lr=0.1)


def set_grads(params, *grads):
    for param, grad in zip(params, grads):
        param.grad = to_device(np.array(grad, dtype=np.float32), param.device)


def test_scale_multiplies_the_loss_and_keeps_its_dtype():
    scaler = GradScaler(init_scale=1024.0)
    scaled = scaler.scale(Tensor(np.float32(4.17)))
    assert isinstance(scaled, Tensor) and scaled.dtype == np.float32
    assert scaled.item() == pytest.approx(4.17 * 1024, rel=1e-6)


def test_unscale_divides_the_gradients_by_the_scale(device):
    params, optimizer = model(device)
    scaler = GradScaler(init_scale=256.0)
    set_grads(params, [256.0, -512.0], [3.0])
    scaler.unscale_(optimizer)
    np.testing.assert_array_equal(to_device(params[0].grad, "cpu"), [1.0, -2.0])
    np.testing.assert_array_equal(to_device(params[1].grad, "cpu"), [3.0 / 256])
    assert params[0].grad.dtype == np.float32
    with pytest.raises(RuntimeError, match="already"):
        scaler.unscale_(optimizer)  # dividing twice would be a silent bug


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_an_overflowing_step_is_skipped_and_the_scale_backs_off(device, bad):
    params, optimizer = model(device)
    scaler = GradScaler(init_scale=2.0 ** 16, growth_interval=3)
    scaler.load_state_dict({**scaler.state_dict(), "growth_tracker": 2})  # one good step short of growing
    set_grads(params, [1.0, bad], [1.0])
    assert scaler.step(optimizer) is False
    scaler.update()
    np.testing.assert_array_equal(params[0].numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(params[1].numpy(), [0.5])
    assert scaler.get_scale() == 2.0 ** 15
    assert scaler.state_dict()["growth_tracker"] == 0


def test_the_scale_grows_after_growth_interval_good_steps():
    params, optimizer = model()
    scaler = GradScaler(init_scale=8.0, growth_factor=2.0, growth_interval=3)
    scales = []
    for _ in range(7):
        scale = scaler.get_scale()
        set_grads(params, [scale, scale], [scale])  # the gradient 1.0 of a loss scaled by S
        assert scaler.step(optimizer) is True  # step() unscales when unscale_() was not called
        scaler.update()
        scales.append(scaler.get_scale())
    assert scales == [8.0, 8.0, 16.0, 16.0, 16.0, 32.0, 32.0]
    # seven steps of lr 0.1 on the unscaled gradient 1.0
    np.testing.assert_allclose(params[0].numpy(), [1.0 - 0.7, 2.0 - 0.7], rtol=1e-6)


def test_the_chapters_step_order_with_clipping():
    params, optimizer = model()
    scaler = GradScaler(init_scale=1024.0)
    set_grads(params, [3.0 * 1024, 4.0 * 1024], [0.0])
    scaler.unscale_(optimizer)                       # step 4: unscale first, so clipping sees true gradients
    norm = clip_grad_norm_(params, 1.0)
    assert norm.item() == pytest.approx(5.0)
    assert scaler.step(optimizer) is True            # step 5: does not unscale a second time
    scaler.update()
    np.testing.assert_allclose(params[0].numpy(), [1.0 - 0.1 * 0.6, 2.0 - 0.1 * 0.8], rtol=1e-5)


def test_update_needs_a_step_first():
    scaler = GradScaler()
    with pytest.raises(RuntimeError, match="step"):
        scaler.update()


def test_disabled_is_a_pass_through():
    params, optimizer = model()
    scaler = GradScaler(enabled=False)
    loss = Tensor(np.float32(2.0))
    assert scaler.scale(loss) is loss
    set_grads(params, [1.0, np.inf], [1.0])
    scaler.unscale_(optimizer)
    np.testing.assert_array_equal(params[0].grad, [1.0, np.inf])  # untouched
    assert scaler.step(optimizer) is True                           # steps, even on inf: no checks
    scaler.update()
    assert params[1].numpy()[0] == pytest.approx(0.4)
    assert scaler.get_scale() == 1.0 and scaler.state_dict() == {}


def test_state_dict_round_trip():
    params, optimizer = model()
    scaler = GradScaler(init_scale=64.0, growth_interval=5)
    for grad in (1.0, np.inf, 1.0):
        set_grads(params, [grad, 1.0], [1.0])
        scaler.step(optimizer)
        scaler.update()
    saved = scaler.state_dict()
    assert saved == {"scale": 32.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 5,
                     "growth_tracker": 1}
    restored = GradScaler()
    restored.load_state_dict({key: np.asarray(value) for key, value in saved.items()})  # as np.load gives them
    assert restored.state_dict() == saved
    with pytest.raises(ValueError, match="disabled"):
        GradScaler().load_state_dict({})


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="backoff_factor"):
        GradScaler(backoff_factor=1.5)
    with pytest.raises(ValueError, match="growth_interval"):
        GradScaler(growth_interval=0)
