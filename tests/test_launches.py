"""Kernel launches a training step costs on cuda, counted by the cupy stand-in (tests/cupy_standin.py): on a GPU each
launch costs a few microseconds of CPU time however small its work, so the step's fixed costs are counted here, where
there is no GPU (these skip where there is one). Issue 14, item 5."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest

from gpt.model import GPT, GPTConfig
from gpt.step import configure_optimizers
from optim import GradScaler, clip_grad_norm_
from tinygrad_ed import Tensor, cross_entropy, layer_norm
from tinygrad_ed.distributed import DistributedDataParallel
from tinygrad_ed.distributed.group import ProcessGroup

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


def _trained_gradients(device, scale=1.0):
    """A 6-layer GPT (39 parameters) after one backward of its loss times `scale`; on cuda the second backward, into
    the flat gradient buffer that the first step's clipping made."""
    model = small_gpt(device, n_layer=6)
    for repeat in range(1 if device == "cpu" else 2):
        model.zero_grad()
        _, loss = model(*gpt_batch(device))
        (loss * scale).backward()
        if device == "cuda" and repeat == 0:
            clip_grad_norm_(model.parameters(), 1e9)  # makes the buffer (copying each gradient in, this once)
    return model


def _grads(model):
    return [np.array(Tensor(param.grad).numpy()) for param in model.parameters()]


def test_clipping_every_gradient_is_three_launches(standin):
    """One dot product, its square root and one scaling kernel over one flat buffer of every gradient, whatever the
    number of parameters (it was a dot, an add, a cast and a multiply per parameter: 156 launches for 39)."""
    expected = _trained_gradients("cpu")
    expected_norm = clip_grad_norm_(expected.parameters(), 0.05).item()
    model = _trained_gradients("cuda")
    standin.launches.clear()
    norm = clip_grad_norm_(model.parameters(), 0.05)
    assert standin.launches.count == 3, standin.launches.names
    assert norm.device == "cuda" and norm.item() == pytest.approx(expected_norm, rel=1e-5)
    assert norm.item() > 0.05  # the gradients were clipped, not passed through
    for got, want in zip(_grads(model), _grads(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)


def test_unscaling_every_gradient_is_two_launches_with_one_read(standin):
    """The scaler's unscale_ divides every gradient and checks it for inf in one pass (plus the flag's fill): it was
    four launches per parameter. step() reads the flag back once; an inf gradient still skips the step."""
    expected = _trained_gradients("cpu", scale=1024.0)
    expected_optimizer = configure_optimizers(expected, 0.1, 1e-3, (0.9, 0.99))
    GradScaler(init_scale=1024.0).unscale_(expected_optimizer)
    model = _trained_gradients("cuda", scale=1024.0)
    optimizer = configure_optimizers(model, 0.1, 1e-3, (0.9, 0.99))
    scaler = GradScaler(init_scale=1024.0)
    standin.launches.clear()
    scaler.unscale_(optimizer)
    assert standin.launches.count == 2, standin.launches.names
    for got, want in zip(_grads(model), _grads(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
    standin.transfers.clear()
    assert scaler.step(optimizer) is True
    scaler.update()
    assert len(standin.transfers.reads) == 1, standin.transfers.reads
    # an overflow in one gradient: the fused pass sees it, the step is skipped and the scale halved
    model.parameters()[3].grad[0] = np.inf
    scaler.unscale_(optimizer)
    assert scaler.step(optimizer) is False
    scaler.update()
    assert scaler.get_scale() == 512.0


def test_a_gradient_set_by_hand_takes_the_plain_clip(standin):
    """A .grad that is not its place in the flat buffer (set by hand) is clipped by optim/clip.py's loop, correctly."""
    model = _trained_gradients("cuda")
    clip_grad_norm_(model.parameters(), 1e6)  # makes the buffer
    param = model.parameters()[0]
    param.grad = param.xp.ones(param.shape, dtype=np.float32) * 100
    norm = clip_grad_norm_(model.parameters(), 1.0)
    assert norm.item() > 100
    total = sum(float((Tensor(p.grad).numpy().astype(np.float64) ** 2).sum()) for p in model.parameters())
    assert total ** 0.5 == pytest.approx(1.0, rel=1e-4)


def test_layer_norm_without_bias_allocates_nothing_per_call(standin):
    """nanoGPT's bias=False (the GPU preset): the LayerNorm kernel's zero bias is made once, not at each of a forward's
    2·n_layer + 1 LayerNorms (13 fills per forward of a 6-layer GPT)."""
    model = small_gpt("cuda", n_layer=6)
    X, Y = gpt_batch("cuda")
    model(X, Y)
    standin.launches.clear()
    _, loss = model(X, Y)
    fills = {name: n for name, n in standin.launches.names.items() if name in ("zeros", "ones", "full")}
    assert fills == {}, fills
    assert standin.launches.names["layer_norm_forward"] == 13
    loss.backward()
    assert all(np.isfinite(Tensor(param.grad).numpy()).all() for param in model.parameters())


def test_the_float16_bench_hook_reports_both_dtypes(standin, tmp_path, monkeypatch):
    """bench/float16_cost.py, which scripts/gpu_check.sh can call on a GPU, measures float32 and float16 as train()
    sets them up; on the stand-in it reports their launches per iteration."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "bench"))
    import float16_cost
    report = tmp_path / "float16.json"
    assert float16_cost.main(["--size", "tiny", "--iters", "1", "--warmup", "1", "--json", str(report)]) == 0
    results = {result["dtype"]: result for result in json.loads(report.read_text())["results"]}
    assert set(results) == {"float32", "float16"}
    assert 0 < results["float32"]["launches_per_iter"] < results["float16"]["launches_per_iter"]
    assert all(result["ms_per_iter"] > 0 for result in results.values())


def test_float16_gelu_layer_norm_and_cross_entropy_take_the_kernels(standin):
    """float16 GELU is one kernel (float16 stored, float computed); float16 LayerNorm and cross-entropy are the
    float32 kernels between casts: a handful of launches where the plain float16 code takes ~12 to ~20 each."""
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((4, 16, 32)).astype(np.float16), device="cuda", requires_grad=True)
    weight = Tensor(np.ones(32, dtype=np.float16), device="cuda", requires_grad=True)
    targets = Tensor(rng.integers(0, 32, (4, 16)), device="cuda")
    targets.id_range = (0, 31)
    for name, op, most in (("tinygrad_ed_gelu_forward_half", lambda: x.gelu(), 1),
                           ("layer_norm_forward", lambda: layer_norm(x, weight), 5),
                           ("cross_entropy_forward", lambda: cross_entropy(x, targets), 6)):
        standin.launches.clear()
        out = op()
        assert out.dtype == np.float16
        assert standin.launches.names[name] == 1 and standin.launches.count <= most, (name, standin.launches.names)


class _TwoRanksOfTheSameBatch(ProcessGroup):
    """Rank 0 of two whose other rank holds the same numbers: all_reduce doubles, broadcast keeps (one launch)."""
    rank, world_size = 0, 2

    def all_reduce(self, array):
        array *= 2


def test_data_parallel_sums_the_flat_gradient_buffer_itself(standin):
    """On cuda the gradients already are one flat buffer: DistributedDataParallel all-reduces it in place, without
    copying each gradient into its own bucket and back (two copies per parameter, 78 for a 6-layer GPT)."""
    model = small_gpt("cuda", n_layer=6)
    ddp = DistributedDataParallel(model, _TwoRanksOfTheSameBatch())
    X, Y = gpt_batch("cuda")
    ddp.require_backward_grad_sync = False
    _, loss = ddp(X, Y)
    loss.backward()
    unsynced = _grads(model)
    clip_grad_norm_(model.parameters(), 1e9)  # the first step's clipping makes the buffer
    for sync in (False, True):
        model.zero_grad()
        ddp.require_backward_grad_sync = sync
        _, loss = ddp(X, Y)
        standin.launches.clear()
        loss.backward()
        if sync:  # the one launch more is the all-reduce
            assert standin.launches.count == without_sync.count + 1, standin.launches.names - without_sync.names
        else:
            without_sync = copy.deepcopy(standin.launches)
    assert ddp.gradient_syncs == 1
    for got, want in zip(_grads(model), unsynced):
        np.testing.assert_allclose(got, 2 * want, rtol=1e-6)
