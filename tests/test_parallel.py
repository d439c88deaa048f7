"""Data parallelism: splitting the batch across worker threads (DataParallel) or worker processes
(ProcessDataParallel) must give the same loss and gradients as one forward/backward."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gpt import GPT, GPTConfig
from tinygrad_ed import Tensor, no_grad
from tinygrad_ed.parallel import DataParallel, ProcessDataParallel, data_parallel, replicate
from tinygrad_ed.parallel import sharding

KINDS = [DataParallel, ProcessDataParallel]


@pytest.fixture(autouse=True, scope="module")
def shard_even_tiny_batches():
    """These tests use batches of a few tokens; let them split anyway so the sharded path is what is tested."""
    saved, sharding.MIN_SHARD_TOKENS = sharding.MIN_SHARD_TOKENS, 1
    yield
    sharding.MIN_SHARD_TOKENS = saved


def tiny_model(dropout=0.0, seed=0):
    return GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=8, dropout=dropout,
                         dtype="float64"), seed=seed)


def batch(batch_size, length, seed):
    rng = np.random.default_rng(seed)
    return (Tensor(rng.integers(0, 11, (batch_size, length))), Tensor(rng.integers(0, 11, (batch_size, length))))


def reference_gradients(model, X, Y, scale=1.0):
    """The model's own gradients of scale·loss on the whole batch (left zeroed afterwards), and the loss."""
    _, loss = model(X, Y)
    (loss * scale).backward()
    gradients = {name: param.grad.copy() for name, param in model.named_parameters()}
    model.zero_grad()
    return gradients, loss.item()


def assert_gradients(model, expected):
    for name, param in model.named_parameters():
        np.testing.assert_allclose(param.grad, expected[name], rtol=1e-10, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=10, deadline=None)
@given(batch_size=st.integers(1, 5), workers=st.integers(1, 4), length=st.integers(1, 8), seed=st.integers(0, 99))
def test_sharded_gradients_equal_the_full_batch_gradients(kind, batch_size, workers, length, seed):
    model = tiny_model()
    X, Y = batch(batch_size, length, seed)
    expected, expected_loss = reference_gradients(model, X, Y)

    _, parallel_loss = kind(model, workers)(X, Y)
    parallel_loss.backward()
    assert parallel_loss.item() == pytest.approx(expected_loss, rel=1e-12)
    assert_gradients(model, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_accumulate_across_parallel_backwards_like_plain_ones(kind):
    model = tiny_model()
    X, Y = batch(4, 8, 1)
    parallel = kind(model, 2)
    for _ in range(2):
        _, loss = parallel(X, Y)
        loss.backward()
    twice = model.transformer.wte.weight.grad.copy()
    model.zero_grad()
    _, loss = model(X, Y)
    loss.backward()
    np.testing.assert_allclose(twice, 2 * model.transformer.wte.weight.grad, rtol=1e-12)


def test_replicas_share_weights_but_not_gradients():
    model = tiny_model()
    replica = replicate(model)
    for (name, original), (_, copy) in zip(model.named_parameters(), replica.named_parameters()):
        assert copy is not original and copy.data is original.data, name
    assert replica.lm_head.weight is replica.transformer.wte.weight  # tying survives
    model.transformer.wte.weight.data[0, 0] += 1.0                 # an in-place optimizer step is seen
    assert replica.transformer.wte.weight.data[0, 0] == model.transformer.wte.weight.data[0, 0]


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_runs_are_reproducible_from_the_model_seed(kind):
    X, Y = batch(4, 8, 2)
    losses = []
    for _ in range(2):
        parallel = kind(tiny_model(dropout=0.3, seed=5), 2)
        losses.append([parallel(X, Y)[1].item() for _ in range(3)])
    assert losses[0] == losses[1]
    assert len(set(losses[0])) == 3  # dropout draws new masks at each forward


@pytest.mark.parametrize("kind", KINDS)
def test_eval_under_no_grad_builds_no_graph_and_matches(kind):
    model = tiny_model(dropout=0.3).eval()
    X, Y = batch(3, 8, 3)
    with no_grad():
        logits, loss = kind(model, 2).eval()(X, Y)
        expected_logits, expected = model(X, Y)
    assert not loss.requires_grad
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(logits.numpy(), expected_logits.numpy(), rtol=1e-12)


def test_small_batches_run_whole_in_the_calling_thread(monkeypatch):
    monkeypatch.setattr(sharding, "MIN_SHARD_TOKENS", 256)
    model = tiny_model()
    X, Y = batch(4, 8, 4)                              # 32 tokens: below one shard's worth
    calls = []
    wrapped = DataParallel(model, 2)
    monkeypatch.setattr(wrapped._pool, "map", lambda *args: calls.append(args) or map(*args))
    _, loss = wrapped(X, Y)
    loss.backward()
    assert calls == []                                 # no thread hand-off
    assert model.transformer.wte.weight.grad is not None


def test_worker_processes_see_the_optimizers_in_place_updates():
    from gpt.step import train_step
    from optim import AdamW
    model, reference = tiny_model(), tiny_model()
    X, Y = batch(4, 8, 5)
    parallel = ProcessDataParallel(model, 2)
    optimizer, reference_optimizer = AdamW(model.parameters(), lr=0.1), AdamW(reference.parameters(), lr=0.1)
    for _ in range(3):                 # if the worker kept the old weights, the second step's gradients would differ
        for runner, opt in ((parallel, optimizer), (reference, reference_optimizer)):
            train_step(runner, opt, (X, Y), lambda: (X, Y), lr=0.1)
    for (name, param), (_, expected) in zip(model.named_parameters(), reference.named_parameters()):
        np.testing.assert_allclose(param.data, expected.data, rtol=1e-7, atol=1e-8, err_msg=name)


def test_a_failure_in_a_worker_process_is_raised_in_the_main_process():
    parallel = ProcessDataParallel(tiny_model(), 2)
    X, Y = batch(4, 8, 6)
    Y.data[3, 0] = 99                  # an id outside the vocabulary, in the worker's half of the batch
    with pytest.raises(RuntimeError, match="worker process failed"):
        parallel(X, Y)
    Y.data[3, 0] = 1                   # the worker keeps serving after reporting the error
    _, loss = parallel(X, Y)
    assert np.isfinite(loss.item())


def test_data_parallel_picks_processes_on_the_cpu_and_the_model_itself_for_one_worker():
    model = tiny_model()
    assert data_parallel(model, 1) is model
    assert isinstance(data_parallel(model, 2), ProcessDataParallel)


def test_worker_gradients_follow_a_scaled_loss():
    # a loss divided for gradient accumulation (or multiplied by a float16 loss scale) scales the workers' gradients
    model = tiny_model()
    X, Y = batch(4, 8, 7)
    expected, _ = reference_gradients(model, X, Y, scale=0.25)
    _, loss = ProcessDataParallel(model, 2)(X, Y)
    (loss * 0.25).backward()
    assert_gradients(model, expected)


def test_a_forward_that_is_never_backpropagated_leaves_the_next_step_right():
    model = tiny_model()
    X, Y = batch(4, 8, 8)
    expected, _ = reference_gradients(model, X, Y)
    parallel = ProcessDataParallel(model, 2)
    parallel(*batch(4, 8, 9))          # a loss nobody calls backward() on
    _, loss = parallel(X, Y)
    loss.backward()
    assert_gradients(model, expected)


def test_backward_through_an_earlier_forwards_loss_is_refused():
    parallel = ProcessDataParallel(tiny_model(), 2)
    _, first = parallel(*batch(4, 8, 10))
    parallel(*batch(4, 8, 11))
    with pytest.raises(RuntimeError, match="after a later forward"):
        first.backward()


def test_a_failure_in_the_main_process_shard_leaves_the_workers_in_step():
    model = tiny_model()
    X, Y = batch(4, 8, 12)
    expected, _ = reference_gradients(model, X, Y)
    parallel = ProcessDataParallel(model, 2)
    bad = Tensor(Y.data.copy())
    bad.data[0, 0] = 99                # out of the vocabulary in the main process's half: it raises there, after
    with pytest.raises(ValueError):    # the worker has already sent its forward's result
        parallel(X, bad)
    _, loss = parallel(X, Y)
    loss.backward()
    assert_gradients(model, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_backward_leaves_no_gradients_behind(kind, monkeypatch):
    # one shard's backward fails once, in a worker (thread or process); the other shards' gradients, summed so
    # far, must not leak into the next step
    import os
    import threading
    from tinygrad_ed.ops import layers
    model = tiny_model()
    X, Y = batch(4, 8, 13)
    expected, _ = reference_gradients(model, X, Y)
    main_process, main_thread = os.getpid(), threading.get_ident()
    original, failures = layers.LayerNormFunction.backward, []

    def fail_once_in_a_worker(self, grad):
        if (os.getpid(), threading.get_ident()) != (main_process, main_thread) and not failures:
            failures.append(1)
            raise FloatingPointError("injected failure")
        return original(self, grad)

    monkeypatch.setattr(layers.LayerNormFunction, "backward", fail_once_in_a_worker)
    parallel = kind(model, 2)          # a worker process is forked with the failure in place
    _, loss = parallel(X, Y)
    with pytest.raises((FloatingPointError, RuntimeError), match="injected failure"):
        loss.backward()
    _, loss = parallel(X, Y)
    loss.backward()
    assert_gradients(model, expected)
