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


def test_small_model_step_agrees(cuda):
    """Embedding -> layer norm -> projection -> cross-entropy: a GPT in miniature, gradients on both devices."""
    grads = {}
    for device in ("cpu", "cuda"):
        table = Tensor(TABLE, device=device, requires_grad=True)
        weight = Tensor(W, device=device, requires_grad=True)
        x = layer_norm(embedding(table, Tensor(IDX, device=device)))   # (B, T, C)
        loss = cross_entropy(x @ weight, Tensor(IDX, device=device))    # logits (B, T, V)
        loss.backward()
        grads[device] = loss.item(), Tensor(table.grad).numpy(), Tensor(weight.grad).numpy()
    for cpu, gpu in zip(grads["cpu"], grads["cuda"]):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-10, atol=1e-12)


def test_to_moves_data_and_gradient_back(cuda):
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)  # on cpu
    y = x.to("cuda")
    assert y.device == "cuda" and type(y.data).__module__.startswith("cupy")
    (y * y).sum().backward()  # the gradient crosses back to cpu
    assert isinstance(x.grad, np.ndarray)
    np.testing.assert_allclose(x.grad, 2 * x.numpy())
    assert y.to("cpu").device == "cpu"
