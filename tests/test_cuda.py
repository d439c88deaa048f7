"""cpu and cuda must agree, beyond one op at a time: a GPT in miniature on both, and moving between them. Skipped
without cupy or a GPU. (tests/test_ops.py runs every op of the table on cuda against the cpu, and its gradient checks
on cuda through the `device` fixture.)
"""
import numpy as np
import pytest

from tinygrad_ed import Tensor, cross_entropy, embedding, layer_norm

pytestmark = pytest.mark.cuda

RNG = np.random.default_rng(0)
W = RNG.standard_normal((8, 5))      # (C, V)
TABLE = RNG.standard_normal((5, 8))  # (V, C) token embeddings
IDX = np.array([[1, 4, 4], [0, 2, 1]])  # (B, T) token ids, one repeated


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_small_model_step_agrees(cuda, dtype):
    """Embedding -> layer norm -> projection -> cross-entropy: a GPT in miniature, gradients on both devices, in the
    dtype of its weights (every weight cast to it: a float64 W would promote the float32 case's products)."""
    grads = {}
    for device in ("cpu", "cuda"):
        table = Tensor(TABLE.astype(dtype), device=device, requires_grad=True)
        weight = Tensor(W.astype(dtype), device=device, requires_grad=True)
        x = layer_norm(embedding(table, Tensor(IDX, device=device)))   # (B, T, C)
        logits = x @ weight                                              # (B, T, V)
        loss = cross_entropy(logits, Tensor(IDX, device=device))
        loss.backward()
        assert logits.dtype == loss.dtype == table.grad.dtype == weight.grad.dtype == dtype
        grads[device] = loss.item(), Tensor(table.grad).numpy(), Tensor(weight.grad).numpy()
    tolerance = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for cpu, gpu in zip(grads["cpu"], grads["cuda"]):
        np.testing.assert_allclose(gpu, cpu, **tolerance)


def test_to_moves_data_and_gradient_back(cuda):
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)  # on cpu
    y = x.to("cuda")
    assert y.device == "cuda" and type(y.data).__module__.startswith("cupy")
    (y * y).sum().backward()  # the gradient crosses back to cpu
    assert isinstance(x.grad, np.ndarray)
    np.testing.assert_allclose(x.grad, 2 * x.numpy())
    assert y.to("cpu").device == "cpu"
