"""cpu and cuda must agree: the same forward and backward, run on both, compared. Skipped without cupy or a GPU.

(The gradient checks in test_gradcheck_ops.py also run on cuda through the `device` fixture; these tests
check the two devices against each other, and what only two devices can show: moving between them.)
"""
import numpy as np
import pytest

from tinygrad_ed import Tensor, cross_entropy, embedding, layer_norm, scaled_dot_product_attention

pytestmark = pytest.mark.cuda

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 3, 8))   # (B, T, C)
W = RNG.standard_normal((8, 5))      # (C, V)
TABLE = RNG.standard_normal((5, 8))  # (V, C) token embeddings
IDX = np.array([[1, 4, 4], [0, 2, 1]])  # (B, T) token ids, one repeated

OPS = {
    "matmul": lambda x: x @ Tensor(W, device=x.device),
    "softmax": lambda x: x.softmax(axis=-1),
    "log_softmax": lambda x: x.log_softmax(axis=1),
    "gelu": lambda x: x.gelu(),
    "gelu_tanh": lambda x: x.gelu(approximate="tanh"),
    "layer_norm": lambda x: layer_norm(x, None, None),
    "max": lambda x: x.max(axis=(0, 2)),
    "var": lambda x: x.var(axis=-1, correction=1),
    "fancy_index": lambda x: x[Tensor(np.array([1, 1, 0]), device=x.device)],
    "attention": lambda x: scaled_dot_product_attention(*(x.reshape(2, 2, 3, 4),) * 3),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(OPS))
def test_forward_and_backward_agree(cuda, name, dtype):
    results = {}
    for device in ("cpu", "cuda"):
        x = Tensor(X.astype(dtype), device=device, requires_grad=True)
        out = OPS[name](x)
        assert out.device == device and out.dtype == dtype
        (out * Tensor(np.linspace(-1, 1, out.size).reshape(out.shape).astype(dtype), device=device)).sum().backward()
        results[device] = out.numpy(), Tensor(x.grad).numpy()
    tolerance = 1e-10 if dtype == np.float64 else 1e-4
    for cpu, gpu in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(gpu, cpu, rtol=tolerance, atol=tolerance)


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
