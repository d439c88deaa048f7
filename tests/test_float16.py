"""float16 reductions accumulate in float32 (tinygrad_ed/fast/rows.py): a float16 sum overflows at 65,504 and stops
counting at 2,048, so every sum, mean, softmax denominator and LayerNorm statistic is taken in float32 and only the
result is rounded to float16. Run on numpy here; on cuda by the same tests through the cupy stand-in."""
import numpy as np
import pytest

from gpt.model import GPT, GPTConfig
from tinygrad_ed import Tensor, cross_entropy, layer_norm
from tinygrad_ed.mixed_precision import HalfPrecision

GPU_BATCH, GPU_CONTEXT = 64, 256  # gpt/config.py's gpu_preset: 16,384 positions per batch


def test_float16_mean_of_100000_ones_is_one(device):
    ones = Tensor(np.ones(100_000, dtype=np.float16), device=device, requires_grad=True)
    mean = ones.mean()
    assert mean.dtype == np.float16 and mean.item() == 1.0
    mean.backward()
    assert ones.grad.dtype == np.float16
    np.testing.assert_allclose(Tensor(ones.grad).numpy(), np.float16(1e-5))
    rows = Tensor(np.ones((3, 100_000), dtype=np.float16), device=device)
    np.testing.assert_array_equal(rows.mean(axis=1).numpy(), np.ones(3, dtype=np.float16))


def test_float16_variance_of_large_values_is_finite(device):
    x = np.linspace(-300, 300, 4000).astype(np.float16)  # squares up to 90,000: past float16's largest value
    variance = Tensor(x, device=device).var()
    assert variance.dtype == np.float16
    np.testing.assert_allclose(float(variance.item()), x.astype(np.float64).var(), rtol=1e-3)


def test_float16_cross_entropy_over_a_gpu_batch_is_finite(device):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((GPU_BATCH, GPU_CONTEXT, 65)) * 2
    targets = Tensor(rng.integers(0, 65, (GPU_BATCH, GPU_CONTEXT)), device=device)
    half = Tensor(logits.astype(np.float16), device=device, requires_grad=True)
    loss = cross_entropy(half, targets)     # the summed losses, ~70,000, pass 65,504 on the way to the mean
    reference = cross_entropy(Tensor(logits.astype(np.float16).astype(np.float32), device=device), targets)
    assert loss.dtype == np.float16
    np.testing.assert_allclose(float(loss.item()), float(reference.item()), rtol=2e-3)
    loss.backward()
    assert half.grad.dtype == np.float16 and np.isfinite(Tensor(half.grad).numpy()).all()


def test_float16_softmax_and_layer_norm_statistics_are_float32(device):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 384)) * 300).astype(np.float16)  # (x - mean)² past 65,504
    weight = Tensor(np.ones(384, dtype=np.float16), device=device, requires_grad=True)
    out = layer_norm(Tensor(x, device=device, requires_grad=True), weight)
    reference = layer_norm(Tensor(x.astype(np.float32)), Tensor(np.ones(384, dtype=np.float32)))
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.numpy().astype(np.float32), reference.numpy(), atol=4e-3)
    out.sum().backward()
    assert weight.grad.dtype == np.float16 and np.isfinite(Tensor(weight.grad).numpy()).all()
    # 5,000 equal scores: a float16 running sum of their exponentials would stick at 2,048
    probs = Tensor(np.zeros((2, 5000), dtype=np.float16), device=device).softmax(axis=-1)
    assert probs.dtype == np.float16
    np.testing.assert_allclose(probs.numpy().astype(np.float64), 1 / 5000, rtol=1e-3)


@pytest.mark.slow
def test_float16_gpt_at_the_gpu_preset_batch_has_a_finite_loss(device):
    """The float16 run of the GPU preset died at iteration 0 with an inf loss: 16,384 positions' losses summed in
    float16. A small model at the preset's batch and context, float16 compute on float32 weights as training runs."""
    config = GPTConfig(block_size=GPU_CONTEXT, vocab_size=65, n_layer=1, n_head=2, n_embd=32, bias=False)
    model = GPT(config, device=device, seed=3)
    ids = np.random.default_rng(2).integers(0, 65, (GPU_BATCH, GPU_CONTEXT + 1))
    X, Y = Tensor(ids[:, :-1], device=device), Tensor(ids[:, 1:], device=device)
    _, loss = HalfPrecision(model)(X, Y)
    _, reference = model(X, Y)
    assert np.isfinite(loss.item())
    np.testing.assert_allclose(loss.item(), reference.item(), rtol=2e-3)  # ln 65 = 4.17 at initialisation
    loss.backward()
    assert all(np.isfinite(Tensor(p.grad).numpy()).all() for p in model.parameters())
