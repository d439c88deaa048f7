"""Kernel launches a training step costs on cuda, counted by the cupy stand-in (tests/cupy_standin.py): on a GPU each
launch costs a few microseconds of CPU time however small its work, so the step's fixed costs are counted here, where
there is no GPU (these skip where there is one). Issue 14, item 5."""
import numpy as np
import pytest

from gpt.model import GPT, GPTConfig
from tinygrad_ed import Tensor

pytestmark = pytest.mark.cuda


def small_gpt(device, n_layer=2, bias=False):
    return GPT(GPTConfig(block_size=16, vocab_size=65, n_layer=n_layer, n_head=2, n_embd=16, bias=bias),
               device=device)


def gpt_batch(device, seed=0):
    ids = np.random.default_rng(seed).integers(0, 65, (4, 17))
    return Tensor(ids[:, :-1], device=device), Tensor(ids[:, 1:], device=device)


def test_backward_makes_no_copy_of_a_leaf_gradient(standin):
    """The gradient an op computes for a parameter becomes its .grad as it is: no copy per leaf (there were 39 for a
    6-layer GPT, one per parameter)."""
    model = small_gpt("cuda")
    _, loss = model(*gpt_batch("cuda"))
    standin.launches.clear()
    loss.backward()
    assert standin.launches.names["copy"] == 0, standin.launches.names
    assert all(param.grad is not None for param in model.parameters())


def test_leaf_gradients_never_share_memory():
    """The same array handed to two inputs (a + b), passed on (a reshape, a cast to the same dtype) or given by the
    caller stays each leaf's own: changing one gradient changes no other, nor the caller's array."""
    a = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    b = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    c = Tensor(np.ones(6, dtype=np.float32), requires_grad=True)
    out = a + b + c.reshape(2, 3)
    seed = np.full((2, 3), 2.0, dtype=np.float32)
    out.backward(seed)
    a.grad += 1
    np.testing.assert_array_equal(b.grad, seed)
    np.testing.assert_array_equal(c.grad, seed.reshape(6))
    np.testing.assert_array_equal(seed, np.full((2, 3), 2.0))
    leaf = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    given = np.ones(3, dtype=np.float32)
    leaf.backward(given)
    leaf.grad += 1
    np.testing.assert_array_equal(given, np.ones(3))
