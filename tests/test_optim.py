"""The optimizers of step 5: the chapter's numbers, a plain reference AdamW, parameter groups and checkpoints."""
import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optim import SGD, AdamW, weight_decay_groups
from strategies import arrays, shapes
from tinygrad_ed.device import to_device
from tinygrad_ed.tensor import Tensor


def parameter(value, device="cpu"):
    return Tensor(np.array(value, dtype=np.float64), device=device, requires_grad=True)


def reference_adamw(w, grads, lr, betas, eps, weight_decay):
    """AdamW written out the straightforward way, in float64: the arrays after len(grads) steps."""
    beta1, beta2 = betas
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        w = w - lr * weight_decay * w
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w, m, v


# ---- the chapter's step 5, by hand ----

def test_adamw_reproduces_the_chapters_first_two_steps():
    w = parameter(0.523)
    optimizer = AdamW([w], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    key = optimizer.watch(w)

    w.grad = np.array(-0.38)
    optimizer.step()
    first = optimizer.last_update(key)
    assert first["step"] == 1
    assert first["m"] == pytest.approx(-0.038, abs=1e-12)
    assert first["v"] == pytest.approx(0.00722, abs=1e-12)
    assert first["m_hat"] == pytest.approx(-0.38, abs=1e-12)
    assert first["v_hat"] == pytest.approx(0.1444, abs=1e-12)
    assert round(first["new"], 5) == 0.52395            # the chapter prints 0.52395
    assert w.data.item() == first["new"]
    assert first["weight_decay_term"] == pytest.approx(0.001 * 0.1 * 0.523, rel=1e-12)
    assert first["adam_term"] == pytest.approx(-0.001 * 0.38 / (0.38 + 1e-8), rel=1e-12)

    w.grad = np.array(-0.42)
    optimizer.step()
    state = optimizer.state[w]
    assert state["step"] == 2
    assert state["m"].item() == pytest.approx(-0.0762, abs=1e-12)
    # the chapter prints v = 0.01567: 0.95·0.00722 + 0.05·0.42² = 0.015679, cut after five decimals
    assert state["v"].item() == pytest.approx(0.015679, abs=1e-12)
    assert state["v"].item() == pytest.approx(0.01567, abs=1e-5)
    assert optimizer.last_update(key)["v"] == state["v"].item()


def test_sgd_reproduces_the_chapters_update():
    w = parameter(0.523)
    optimizer = SGD([w], lr=1e-3)
    w.grad = np.array(-0.38)
    optimizer.step()
    assert w.data.item() == pytest.approx(0.52338, abs=1e-12)  # 0.523 − 0.001 × (−0.38)


def test_watched_terms_add_up_to_the_update():
    w = parameter(np.linspace(-1, 1, 6).reshape(2, 3))
    optimizer = AdamW([w], lr=0.01, weight_decay=0.5)
    key = optimizer.watch(w, (1, -1))
    for g in (0.3, -0.7, 0.1):
        w.grad = np.full((2, 3), g)
        optimizer.step()
        update = optimizer.last_update(key)
        assert update["grad"] == g
        assert update["new"] == w.data[1, 2]
        assert update["new"] == pytest.approx(update["old"] - update["weight_decay_term"] - update["adam_term"],
                                              abs=1e-15)
        assert update["adam_term"] == pytest.approx(
            update["lr"] * update["m_hat"] / (np.sqrt(update["v_hat"]) + 1e-8), rel=1e-12)


def test_watch_rejects_an_entry_that_does_not_exist():
    w = parameter(np.zeros((2, 3)))
    optimizer = AdamW([w])
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        optimizer.watch(w, (2, 0))
    with pytest.raises(ValueError, match="not in this optimizer"):
        optimizer.watch(parameter(1.0))
    with pytest.raises(KeyError, match="not been updated"):
        optimizer.last_update(optimizer.watch(w, (0, 0)))


# ---- AdamW against the reference ----

@st.composite
def adamw_runs(draw):
    shape = draw(shapes(max_dims=3))
    steps = draw(st.integers(1, 4))
    return dict(w=draw(arrays(shape)), grads=[draw(arrays(shape)) for _ in range(steps)],
                lr=draw(st.floats(1e-4, 0.1)), betas=(draw(st.floats(0.0, 0.99)), draw(st.floats(0.5, 0.999))),
                eps=draw(st.floats(1e-10, 1e-6)), weight_decay=draw(st.floats(0.0, 0.5)))


@given(run=adamw_runs())
def test_adamw_matches_the_reference(device, run):
    w = parameter(run["w"], device)
    optimizer = AdamW([w], lr=run["lr"], betas=run["betas"], eps=run["eps"], weight_decay=run["weight_decay"])
    for g in run["grads"]:
        w.grad = to_device(g, device)
        optimizer.step()
    expected_w, expected_m, expected_v = reference_adamw(run["w"], run["grads"], run["lr"], run["betas"],
                                                         run["eps"], run["weight_decay"])
    np.testing.assert_allclose(w.numpy(), expected_w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_device(optimizer.state[w]["m"], "cpu"), expected_m, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(to_device(optimizer.state[w]["v"], "cpu"), expected_v, rtol=1e-10, atol=1e-15)
    assert optimizer.state[w]["step"] == len(run["grads"])


def test_parameter_groups_use_their_own_hyperparameters():
    start = np.array([[0.5, -1.0], [2.0, 0.25]])
    grads = [np.array([[0.1, -0.2], [0.3, 0.4]]), np.array([[-0.5, 0.2], [0.1, 0.0]])]
    a, b = parameter(start), parameter(start)
    optimizer = AdamW([{"params": [a], "lr": 0.1, "weight_decay": 0.5}, {"params": [b]}],
                      lr=0.01, betas=(0.8, 0.9), weight_decay=0.0)
    for g in grads:
        a.grad, b.grad = g.copy(), g.copy()
        optimizer.step()
    np.testing.assert_allclose(a.data, reference_adamw(start, grads, 0.1, (0.8, 0.9), 1e-8, 0.5)[0], rtol=1e-12)
    np.testing.assert_allclose(b.data, reference_adamw(start, grads, 0.01, (0.8, 0.9), 1e-8, 0.0)[0], rtol=1e-12)


def test_parameters_without_grad_are_skipped():
    used, unused = parameter([1.0, 2.0]), parameter([3.0, 4.0])
    optimizer = AdamW([used, unused], weight_decay=0.1)
    used.grad = np.array([0.5, -0.5])
    optimizer.step()
    optimizer.step()
    np.testing.assert_array_equal(unused.data, [3.0, 4.0])  # not even weight decay touches it
    assert unused not in optimizer.state
    assert optimizer.state[used]["step"] == 2


@pytest.mark.parametrize("make", [lambda p: AdamW(p, weight_decay=0.1), lambda p: SGD(p, 0.1, 0.9, 0.1)],
                         ids=["adamw", "sgd"])
def test_float32_stays_float32(make):
    w = Tensor(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), requires_grad=True)
    optimizer = make([w])
    for _ in range(2):
        w.grad = np.full((3, 4), 0.25, dtype=np.float32)
        optimizer.step()
    assert w.data.dtype == np.float32
    assert all(value.dtype == np.float32 for value in optimizer.state[w].values() if hasattr(value, "dtype"))


def test_zero_grad():
    w = parameter([1.0, 2.0])
    optimizer = SGD([w], lr=0.1)
    w.grad = np.array([3.0, 4.0])
    grad = w.grad
    optimizer.zero_grad(set_to_none=False)
    assert w.grad is grad and not grad.any()
    optimizer.zero_grad()
    assert w.grad is None


def test_a_parameter_listed_twice_is_rejected():
    w = parameter([1.0])
    with pytest.raises(ValueError, match="twice"):
        AdamW([{"params": [w]}, {"params": [w]}])


def test_bad_hyperparameters_are_rejected():
    with pytest.raises(ValueError, match="beta"):
        AdamW([parameter(1.0)], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="lr"):
        SGD([parameter(1.0)], lr=-1.0)


# ---- SGD with momentum and weight decay ----

def test_sgd_momentum_and_weight_decay_match_the_reference():
    start, lr, momentum, wd = np.array([0.5, -2.0, 1.0]), 0.1, 0.9, 0.01
    grads = [np.array([1.0, 0.5, -0.5]), np.array([0.2, -0.1, 0.0]), np.array([-1.0, 1.0, 2.0])]
    w = parameter(start)
    optimizer = SGD([w], lr=lr, momentum=momentum, weight_decay=wd)
    expected, buffer = start.copy(), None
    for g in grads:
        w.grad = g.copy()
        optimizer.step()
        d = g + wd * expected
        buffer = d if buffer is None else momentum * buffer + d
        expected = expected - lr * buffer
    np.testing.assert_allclose(w.data, expected, rtol=1e-12)
    np.testing.assert_allclose(optimizer.state[w]["momentum_buffer"], buffer, rtol=1e-12)
    np.testing.assert_array_equal(w.grad, grads[-1])  # weight decay did not write into the gradient


# ---- checkpoints ----

def assert_plain(value, where="state_dict"):
    """Only what np.savez stores without pickle: arrays, numbers, strings, lists and dicts."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, (str, int)), f"{where}: key {key!r}"
            assert_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_plain(item, f"{where}[{i}]")
    else:
        assert isinstance(value, (np.ndarray, int, float, str)), f"{where} is a {type(value).__name__}"


def run_steps(optimizer, params, grads):
    for step_grads in grads:
        for name, param in params.items():
            param.grad = step_grads[name].copy()
        optimizer.step()


@pytest.mark.parametrize("make", [lambda p: AdamW(weight_decay_groups(p, 0.1), lr=0.01, betas=(0.9, 0.95)),
                                  lambda p: SGD(weight_decay_groups(p, 0.1), lr=0.01, momentum=0.9)],
                         ids=["adamw", "sgd"])
def test_state_dict_round_trip_continues_the_same_trajectory(make):
    rng = np.random.default_rng(0)
    named = {"h.0.mlp.c_fc.weight": rng.standard_normal((3, 4)), "h.0.mlp.c_fc.bias": rng.standard_normal(4)}
    grads = [{name: rng.standard_normal(value.shape) for name, value in named.items()} for _ in range(6)]
    originals = {name: parameter(value) for name, value in named.items()}
    optimizer = make(originals)
    run_steps(optimizer, originals, grads[:3])

    saved = optimizer.state_dict()
    assert_plain(saved)
    snapshot = copy.deepcopy(saved)
    copies = {name: parameter(p.data.copy()) for name, p in originals.items()}
    restored = make(copies)
    restored.load_state_dict(saved)

    run_steps(optimizer, originals, grads[3:])
    run_steps(restored, copies, grads[3:])
    for name in named:
        np.testing.assert_array_equal(copies[name].data, originals[name].data)
    for index, entry in saved["state"].items():  # the saved dict is a snapshot: training on left it alone
        for name, value in entry.items():
            np.testing.assert_array_equal(value, snapshot["state"][index][name])


def test_load_state_dict_names_a_wrong_shape():
    w, b = parameter(np.ones((2, 3))), parameter(np.ones(3))
    optimizer = AdamW([w, b])
    w.grad, b.grad = np.ones((2, 3)), np.ones(3)
    optimizer.step()
    saved = optimizer.state_dict()
    other = AdamW([parameter(np.ones((3, 2))), parameter(np.ones(3))])
    with pytest.raises(ValueError, match=r"'m' of parameter 0 has shape \(2, 3\).*\(3, 2\)"):
        other.load_state_dict(saved)
    assert other.state == {}  # nothing was half-loaded
    with pytest.raises(ValueError, match="1 parameters in the state dict and 2"):
        AdamW([w, b]).load_state_dict({"param_groups": [{**saved["param_groups"][0], "params": [0]}], "state": {}})


def test_load_state_dict_accepts_what_np_load_gives_back():
    w = parameter([1.0, 2.0])
    optimizer = AdamW([w], betas=(0.8, 0.9))
    w.grad = np.array([0.1, 0.2])
    optimizer.step()
    saved = optimizer.state_dict()
    # np.load returns numbers as 0-d arrays, and a flattened layout may key the state by strings
    as_loaded = {"param_groups": [{key: np.asarray(value) for key, value in saved["param_groups"][0].items()}],
                 "state": {"0": {name: np.asarray(value) for name, value in saved["state"][0].items()}}}
    restored = AdamW([parameter([1.0, 2.0])])
    restored.load_state_dict(as_loaded)
    group = restored.param_groups[0]
    assert group["betas"] == (0.8, 0.9) and isinstance(group["lr"], float)
    state = next(iter(restored.state.values()))
    assert state["step"] == 1 and isinstance(state["step"], int)


# ---- nanoGPT's weight-decay groups ----

def test_weight_decay_groups_decay_matrices_only():
    wte = parameter(np.zeros((5, 4)))
    named = [("transformer.wte.weight", wte),
             ("transformer.h.0.ln_1.weight", parameter(np.ones(4))),
             ("transformer.h.0.attn.c_attn.weight", parameter(np.zeros((4, 12)))),
             ("transformer.h.0.attn.c_attn.bias", parameter(np.zeros(12))),
             ("frozen.weight", Tensor(np.zeros((2, 2)))),
             ("lm_head.weight", wte)]  # tied to wte: must be updated once
    decay, no_decay = weight_decay_groups(named, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [(5, 4), (4, 12)]
    assert [p.shape for p in no_decay["params"]] == [(4,), (12,)]
    AdamW([decay, no_decay])  # the groups go straight into the optimizer
