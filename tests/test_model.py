"""The GPT of gpt/model.py: nanoGPT's names, shapes and initialisation, gradients that match finite differences,
gradient accumulation (chapter part 3, step 2), checkpoints, argument errors, dropout modes and generation.

Legend: B = batch size, T = time (sequence length), C = channels (n_embd), V = vocabulary size.
Most tests use a tiny float64 model (V = 11, T ≤ 8, C = 8) so that finite differences are exact to ~1e-10 and the
whole file runs in seconds.
"""
import math
import re
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpt.model import GPT, GPTConfig
from gpt.step import train_step
from optim import AdamW
from strategies import token_batches
from tinygrad_ed import Tensor

V, BLOCK = 11, 8  # the tiny model's vocabulary and context


def tiny_config(**overrides):
    """2 layers, 2 heads, C = 8, float64: small enough for a finite-difference check of every parameter."""
    fields = dict(n_layer=2, n_head=2, n_embd=8, block_size=BLOCK, vocab_size=V, dtype="float64")
    return GPTConfig(**{**fields, **overrides})


def random_tokens(rng, shape, vocab_size=V, device="cpu"):
    return Tensor(rng.integers(0, vocab_size, size=shape), device=device)


def randomize(model, rng):
    """Give every parameter values of order one: LayerNorm weights near 1, biases and embeddings away from 0.

    At nanoGPT's initialisation (std 0.02, biases 0, LayerNorm weights 1) attention is almost uniform and every
    bias term is zero, so a backward that mishandles a bias or a LayerNorm weight could still look right.
    """
    for name, parameter in model.named_parameters():
        if ".ln_" in name and name.endswith(".weight"):
            parameter.data[...] = 1 + 0.3 * rng.standard_normal(parameter.shape)
        else:
            parameter.data[...] = 0.4 * rng.standard_normal(parameter.shape)
    return model


def gradients(model):
    return {name: parameter.grad.copy() for name, parameter in model.named_parameters()}


# ---- the loss of a fresh model (chapter FAQ 1) ----

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fresh_model_loss_is_ln_vocab_size(device, seed):
    # a freshly initialised model spreads its probability evenly: loss ≈ -log(1/65) = ln 65 = 4.17
    config = GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32)
    model = GPT(config, device=device, seed=seed)
    rng = np.random.default_rng(seed)
    _, loss = model(random_tokens(rng, (4, 16), 65, device), random_tokens(rng, (4, 16), 65, device))
    assert abs(loss.item() - math.log(65)) < 0.1


# ---- gradients: the whole model against central finite differences ----

def finite_difference_errors(model, loss_of_model, rng, entries_per_parameter=4, eps=1e-6):
    """For a few entries of every parameter: (name, index, analytic, numeric, allowed error).

    analytic  ∂loss/∂p[i] from one loss.backward()
    numeric   (L(p[i] + eps) - L(p[i] - eps)) / (2 eps)
    allowed   1e-5 relative, plus the rounding the difference of two float64 losses cannot avoid
              (~|L|·ulp/eps ≈ 1e-9): the attention key bias, for one, has a gradient of exactly 0.
    """
    model.zero_grad()
    loss = loss_of_model()
    loss.backward()
    atol = 10 * abs(loss.item()) * np.finfo(np.float64).eps / eps
    results = []
    for name, parameter in model.named_parameters():
        count = min(entries_per_parameter, parameter.size)
        for flat_index in rng.choice(parameter.size, size=count, replace=False):
            index = np.unravel_index(flat_index, parameter.shape)
            original = parameter.data[index]
            parameter.data[index] = original + eps
            loss_plus = loss_of_model().item()
            parameter.data[index] = original - eps
            loss_minus = loss_of_model().item()
            parameter.data[index] = original
            numeric = (loss_plus - loss_minus) / (2 * eps)
            analytic = parameter.grad[index]
            allowed = 1e-5 * max(abs(analytic), abs(numeric)) + atol
            results.append((name, index, analytic, numeric, allowed))
    return results


def assert_gradients_match(results, model):
    checked = {name for name, *_ in results}
    assert checked == {name for name, _ in model.named_parameters()}  # every parameter, none skipped
    failures = [f"{name}{list(index)}: backward {analytic:.10g}, finite differences {numeric:.10g}"
                for name, index, analytic, numeric, allowed in results if abs(analytic - numeric) > allowed]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("bias", [True, False])
def test_every_parameter_gradient_matches_finite_differences(bias):
    rng = np.random.default_rng(0)
    model = randomize(GPT(tiny_config(bias=bias), seed=0), rng)
    idx, targets = random_tokens(rng, (2, BLOCK)), random_tokens(rng, (2, BLOCK))
    results = finite_difference_errors(model, lambda: model(idx, targets)[1], rng)
    assert_gradients_match(results, model)


def test_gradients_match_finite_differences_with_dropout():
    # the same dropout masks in every forward (the generator rewound each time), so the loss is a smooth function
    # of the parameters and the masks' backward (embedding, attention weights, residuals) is checked too
    rng = np.random.default_rng(1)
    model = randomize(GPT(tiny_config(dropout=0.3), seed=1), rng).train()
    idx, targets = random_tokens(rng, (2, BLOCK)), random_tokens(rng, (2, BLOCK))
    start = model.dropout_generator.bit_generator.state

    def loss_with_fixed_masks():
        model.dropout_generator.bit_generator.state = start
        return model(idx, targets)[1]

    results = finite_difference_errors(model, loss_with_fixed_masks, rng)
    assert_gradients_match(results, model)


def test_gradient_matches_finite_differences_along_a_random_direction():
    # every entry of every parameter at once: the directional derivative Σ_p <∂L/∂p, u_p> against
    # (L(θ + eps·u) - L(θ - eps·u)) / (2 eps)
    rng = np.random.default_rng(2)
    model = randomize(GPT(tiny_config(), seed=2), rng)
    idx, targets = random_tokens(rng, (3, BLOCK)), random_tokens(rng, (3, BLOCK))
    parameters = model.parameters()
    directions = [rng.standard_normal(p.shape) for p in parameters]
    model(idx, targets)[1].backward()
    analytic = sum(float((p.grad * u).sum()) for p, u in zip(parameters, directions))

    def loss_moved_by(step):
        for p, u in zip(parameters, directions):
            p.data += step * u
        loss = model(idx, targets)[1].item()
        for p, u in zip(parameters, directions):
            p.data -= step * u
        return loss

    eps = 1e-6
    numeric = (loss_moved_by(eps) - loss_moved_by(-eps)) / (2 * eps)
    assert abs(analytic - numeric) <= 1e-5 * abs(numeric) + 1e-8, (analytic, numeric)


# ---- gradient accumulation (chapter part 3, step 2) ----

@pytest.fixture(scope="module")
def accumulation_model():
    return randomize(GPT(tiny_config(), seed=3), np.random.default_rng(3))


@given(steps=st.integers(1, 4), micro_batch_size=st.integers(1, 3), length=st.integers(1, BLOCK), data=st.data())
def test_accumulated_micro_batches_equal_one_big_batch(accumulation_model, steps, micro_batch_size, length, data):
    # nanoGPT: loss = loss / gradient_accumulation_steps; loss.backward() in each of k micro-steps.
    # The gradients add up (+=) to those of the mean loss over one batch k times as large.
    model = accumulation_model
    idx, targets = data.draw(token_batches(V, steps * micro_batch_size, length))  # (k·b, T)

    model.zero_grad()
    for step in range(steps):
        rows = slice(step * micro_batch_size, (step + 1) * micro_batch_size)     # (b, T)
        _, loss = model(Tensor(idx[rows]), Tensor(targets[rows]))
        (loss / steps).backward()
    accumulated = gradients(model)

    model.zero_grad()
    _, loss = model(Tensor(idx), Tensor(targets))
    loss.backward()
    for name, grad in gradients(model).items():
        np.testing.assert_allclose(accumulated[name], grad, rtol=0, atol=1e-10, err_msg=name)


def test_accumulating_without_dividing_gives_k_times_the_gradient(accumulation_model):
    # the chapter's counter-example: without "/ 4" the four micro-steps sum to 9.8 instead of 2.45, 4× too large
    model, rng, steps = accumulation_model, np.random.default_rng(4), 4
    idx, targets = rng.integers(0, V, size=(steps * 2, BLOCK)), rng.integers(0, V, size=(steps * 2, BLOCK))
    model.zero_grad()
    for step in range(steps):
        model(Tensor(idx[2 * step:2 * step + 2]), Tensor(targets[2 * step:2 * step + 2]))[1].backward()
    undivided = gradients(model)
    model.zero_grad()
    model(Tensor(idx), Tensor(targets))[1].backward()
    for name, grad in gradients(model).items():
        np.testing.assert_allclose(undivided[name], steps * grad, rtol=0, atol=1e-10, err_msg=name)


# ---- parameter names and shapes: nanoGPT's, in nanoGPT's order ----

def test_parameter_names_and_shapes_are_nanogpts():
    # distinct sizes (V = 11, block = 7, C = 12) so a swapped axis cannot pass
    model = GPT(GPTConfig(vocab_size=11, block_size=7, n_layer=2, n_head=3, n_embd=12))
    expected = [
        ("transformer.wte.weight", (11, 12)),
        ("transformer.wpe.weight", (7, 12)),
        ("transformer.h.0.ln_1.weight", (12,)),
        ("transformer.h.0.ln_1.bias", (12,)),
        ("transformer.h.0.attn.c_attn.weight", (36, 12)),
        ("transformer.h.0.attn.c_attn.bias", (36,)),
        ("transformer.h.0.attn.c_proj.weight", (12, 12)),
        ("transformer.h.0.attn.c_proj.bias", (12,)),
        ("transformer.h.0.ln_2.weight", (12,)),
        ("transformer.h.0.ln_2.bias", (12,)),
        ("transformer.h.0.mlp.c_fc.weight", (48, 12)),
        ("transformer.h.0.mlp.c_fc.bias", (48,)),
        ("transformer.h.0.mlp.c_proj.weight", (12, 48)),
        ("transformer.h.0.mlp.c_proj.bias", (12,)),
        ("transformer.h.1.ln_1.weight", (12,)),
        ("transformer.h.1.ln_1.bias", (12,)),
        ("transformer.h.1.attn.c_attn.weight", (36, 12)),
        ("transformer.h.1.attn.c_attn.bias", (36,)),
        ("transformer.h.1.attn.c_proj.weight", (12, 12)),
        ("transformer.h.1.attn.c_proj.bias", (12,)),
        ("transformer.h.1.ln_2.weight", (12,)),
        ("transformer.h.1.ln_2.bias", (12,)),
        ("transformer.h.1.mlp.c_fc.weight", (48, 12)),
        ("transformer.h.1.mlp.c_fc.bias", (48,)),
        ("transformer.h.1.mlp.c_proj.weight", (12, 48)),
        ("transformer.h.1.mlp.c_proj.bias", (12,)),
        ("transformer.ln_f.weight", (12,)),
        ("transformer.ln_f.bias", (12,)),
    ]
    assert [(name, p.shape) for name, p in model.named_parameters()] == expected
    assert list(model.state_dict()) == [name for name, _ in expected]

    unbiased = GPT(GPTConfig(vocab_size=11, block_size=7, n_layer=2, n_head=3, n_embd=12, bias=False))
    assert [(name, p.shape) for name, p in unbiased.named_parameters()] == \
        [(name, shape) for name, shape in expected if not name.endswith(".bias")]


def test_lm_head_is_tied_to_the_token_embedding():
    model = GPT(tiny_config())
    assert model.lm_head.weight is model.transformer.wte.weight  # one array, updated once per step
    assert model.lm_head.bias is None
    assert "lm_head.weight" not in dict(model.named_parameters())


def test_parameter_count_of_the_shakespeare_char_model_is_nanogpts():
    # nanoGPT's config/train_shakespeare_char.py (6 layers, 6 heads, 384 channels, block 256, bias False) prints
    # "number of parameters: 10.65M", counting without the position embedding (get_num_params(non_embedding=True))
    model = GPT(GPTConfig(block_size=256, vocab_size=65, n_layer=6, n_head=6, n_embd=384, bias=False))
    C, L = 384, 6
    assert model.num_parameters() == 65 * C + 256 * C + L * (12 * C * C + 2 * C) + C
    assert model.num_parameters() - model.transformer.wpe.weight.size == 10_646_784


# ---- initialisation ----

def test_initialisation_statistics_follow_gpt2():
    # Linear and Embedding weights ~ N(0, 0.02²); the two residual projections per block (c_proj) ~ N(0, 0.02²/(2L)),
    # so the residual stream's variance does not grow with depth; biases 0; LayerNorm weights 1.
    # The smallest matrix has 8320 entries, so a sample std is within ~1% of the truth: 5% is a tight bound.
    config = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    residual_std = 0.02 / math.sqrt(2 * config.n_layer)
    checked_projections = 0
    for name, parameter in GPT(config, seed=5).named_parameters():
        values = parameter.numpy().astype(np.float64)
        if name.endswith(".bias"):
            assert np.all(values == 0), name
        elif ".ln_" in name:
            assert np.all(values == 1), name
        else:
            expected_std = residual_std if name.endswith("c_proj.weight") else 0.02
            checked_projections += name.endswith("c_proj.weight")
            assert abs(values.std() - expected_std) < 0.05 * expected_std, (name, values.std(), expected_std)
            assert abs(values.mean()) < 5 * expected_std / math.sqrt(values.size), (name, values.mean())
    assert checked_projections == 2 * config.n_layer


def test_same_seed_same_model_different_seed_different_model():
    first, again, other = GPT(tiny_config(), seed=7), GPT(tiny_config(), seed=7), GPT(tiny_config(), seed=8)
    for name, value in first.state_dict().items():
        assert np.array_equal(value, again.state_dict()[name]), name
        if name.endswith(("wte.weight", "wpe.weight", "c_attn.weight", "c_fc.weight", "c_proj.weight")):
            assert not np.array_equal(value, other.state_dict()[name]), name


def test_same_seed_gives_the_same_dropout_masks():
    rng = np.random.default_rng(9)
    idx = random_tokens(rng, (2, BLOCK))
    first, again = GPT(tiny_config(dropout=0.5), seed=9), GPT(tiny_config(dropout=0.5), seed=9)
    assert np.array_equal(first(idx)[0].numpy(), again(idx)[0].numpy())


# ---- training: a tiny model memorises one batch ----

def test_tiny_model_overfits_one_batch(device):
    config = GPTConfig(vocab_size=65, block_size=8, n_layer=2, n_head=2, n_embd=32)
    model = GPT(config, device=device, seed=0)
    rng = np.random.default_rng(0)
    idx, targets = random_tokens(rng, (2, 8), 65, device), random_tokens(rng, (2, 8), 65, device)
    optimizer = AdamW(model.parameters(), lr=1e-2)
    start, losses = time.perf_counter(), []
    for _ in range(300):
        losses.append(train_step(model, optimizer, (idx, targets), lambda: (idx, targets), lr=1e-2).loss.item())
        if losses[-1] < 0.1:
            break
    assert losses[0] > 3.5  # it started from guessing (ln 65 = 4.17) ...
    assert losses[-1] < 0.1, f"loss after {len(losses)} steps ({time.perf_counter() - start:.1f} s): {losses[-1]}"


# ---- checkpoints: state_dict and load_state_dict ----

def test_state_dict_round_trips_exactly(device, tmp_path):
    config = tiny_config(dtype="float32")
    source, target = GPT(config, device=device, seed=0), GPT(config, device=device, seed=1)
    state = source.state_dict()
    np.savez(tmp_path / "checkpoint.npz", **state)            # through a file, as a checkpoint travels
    with np.load(tmp_path / "checkpoint.npz") as saved:
        target.load_state_dict(dict(saved))
    for name, value in target.state_dict().items():
        assert value.dtype == state[name].dtype and np.array_equal(value, state[name]), name
    assert target.lm_head.weight is target.transformer.wte.weight  # still tied after loading
    rng = np.random.default_rng(0)
    idx = random_tokens(rng, (2, BLOCK), device=device)
    assert np.array_equal(source(idx)[0].numpy(), target(idx)[0].numpy())


def test_state_dict_is_a_copy():
    model = GPT(tiny_config())
    state = model.state_dict()
    state["transformer.wte.weight"][...] = 0
    assert not np.all(model.transformer.wte.weight.numpy() == 0)
    model.load_state_dict(state)
    state["transformer.wte.weight"][...] = 1    # the model copied the array in; it does not alias it
    assert np.all(model.transformer.wte.weight.numpy() == 0)


def test_load_state_dict_rejects_a_missing_key():
    model = GPT(tiny_config())
    state = model.state_dict()
    del state["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(KeyError, match=re.escape("transformer.h.1.mlp.c_fc.bias")):
        model.load_state_dict(state)


def test_load_state_dict_rejects_an_unexpected_key():
    # a checkpoint of a deeper model: its third block has nowhere to go
    model = GPT(tiny_config())
    state = model.state_dict()
    state["transformer.h.2.ln_1.weight"] = np.ones(8)
    with pytest.raises(KeyError, match=re.escape("transformer.h.2.ln_1.weight")):
        model.load_state_dict(state)


def test_load_state_dict_rejects_a_mis_shaped_array():
    # a checkpoint trained with a longer context: wpe has 16 rows, the model 8
    model = GPT(tiny_config())
    state = model.state_dict()
    state["transformer.wpe.weight"] = np.zeros((16, 8))
    with pytest.raises(ValueError, match=re.escape("transformer.wpe.weight")) as error:
        model.load_state_dict(state)
    assert "(16, 8)" in str(error.value) and "(8, 8)" in str(error.value)


def test_a_rejected_load_leaves_the_model_unchanged():
    model, other = GPT(tiny_config(), seed=0), GPT(tiny_config(), seed=1)
    before = model.state_dict()
    state = other.state_dict()
    state["transformer.ln_f.bias"] = np.zeros(3)   # the last parameter, mis-shaped
    with pytest.raises(ValueError):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():
        assert np.array_equal(value, before[name]), f"{name} was overwritten by a load that failed"


# ---- forward: argument errors name the offending value ----

def test_forward_rejects_a_sequence_longer_than_block_size():
    model = GPT(tiny_config())
    with pytest.raises(ValueError, match=r"sequence length 9 exceeds block_size 8"):
        model(Tensor(np.zeros((1, 9), dtype=np.int64)))


@pytest.mark.parametrize("overrides, error, message", [
    (dict(n_embd="128"), TypeError, "GPTConfig.n_embd must be an integer, got '128'"),
    (dict(n_head=0), ValueError, "GPTConfig.n_head must be positive, got 0"),   # not a ZeroDivisionError
    (dict(dropout=math.nan), ValueError, r"GPTConfig.dropout must be a number in \[0, 1\), got nan"),
    (dict(bias="yes"), TypeError, "GPTConfig.bias must be True or False"),
    (dict(dtype="int8"), ValueError, "GPTConfig.dtype must be"),
])
def test_bad_model_settings_are_named(overrides, error, message):
    with pytest.raises(error, match=message):
        GPTConfig(**overrides)


@pytest.mark.parametrize("bad_id", [-1, V, 1000])
def test_forward_rejects_token_ids_outside_the_vocabulary(bad_id):
    model = GPT(tiny_config())
    idx = np.zeros((2, 4), dtype=np.int64)
    idx[1, 2] = bad_id
    with pytest.raises(ValueError, match=rf"embedding: id {bad_id}\b.*\[0, {V}\)"):
        model(Tensor(idx))
    with pytest.raises(ValueError, match=rf"cross_entropy targets: id {bad_id}\b"):
        model(Tensor(np.zeros((2, 4), dtype=np.int64)), Tensor(idx))


def test_forward_rejects_targets_of_another_shape():
    model = GPT(tiny_config())
    idx, targets = Tensor(np.zeros((2, 3), dtype=np.int64)), Tensor(np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=re.escape("targets shape (2, 4) must equal idx shape (2, 3)")):
        model(idx, targets)


@pytest.mark.parametrize("idx, message", [
    (Tensor(np.zeros((2, 3))), "(2, 3) float64"),                          # float ids
    (Tensor(np.zeros(3, dtype=np.int64)), "(3,) int64"),                   # no batch axis
    (np.zeros((2, 3), dtype=np.int64), "(2, 3) int64"),                    # a bare array, not a Tensor
])
def test_forward_rejects_idx_that_is_not_a_2d_integer_tensor(idx, message):
    model = GPT(tiny_config())
    with pytest.raises(TypeError, match=re.escape(message)):
        model(idx)


# ---- dropout: train() and eval() ----

def test_eval_disables_dropout_and_train_enables_it(device):
    rng = np.random.default_rng(10)
    idx = random_tokens(rng, (2, BLOCK), device=device)
    model = GPT(tiny_config(dropout=0.5), device=device, seed=10)
    without_dropout = GPT(tiny_config(dropout=0.0), device=device, seed=10)    # the same weights

    model.eval()
    assert all(not module.training for module in model.modules())
    first, second = model(idx)[0].numpy(), model(idx)[0].numpy()
    assert np.array_equal(first, second)
    assert np.array_equal(first, without_dropout(idx)[0].numpy())  # eval's dropout is exactly the identity

    model.train()
    assert all(module.training for module in model.modules())
    third, fourth = model(idx)[0].numpy(), model(idx)[0].numpy()
    assert not np.array_equal(third, fourth)
    assert not np.array_equal(third, first)


# ---- generate ----

def test_generate_appends_max_new_tokens(device):
    model = GPT(tiny_config(), device=device).eval()
    idx = random_tokens(np.random.default_rng(11), (2, 3), device=device)
    out = model.generate(idx, 5, generator=np.random.default_rng(0))
    assert out.shape == (2, 8) and out.dtype == np.int64 and out.device == device
    assert np.array_equal(out.numpy()[:, :3], idx.numpy())          # the prompt is kept
    assert out.numpy().min() >= 0 and out.numpy().max() < V


def test_generate_top_k_1_is_greedy():
    # 20 new tokens after a 3-token prompt: from the 6th on, the context is cropped to the last 8 tokens
    model = randomize(GPT(tiny_config(), seed=12), np.random.default_rng(12)).eval()
    idx = random_tokens(np.random.default_rng(12), (2, 3))
    out = model.generate(idx, 20, top_k=1, generator=np.random.default_rng(0)).numpy()
    assert out.shape == (2, 23)
    again = model.generate(idx, 20, top_k=1, generator=np.random.default_rng(1)).numpy()
    assert np.array_equal(out, again)                          # greedy: the generator does not matter

    tokens = idx.numpy()                                       # the same loop by hand: argmax of the last logits
    for _ in range(20):
        logits, _ = model(Tensor(tokens[:, -BLOCK:]))          # (B, 1, V)
        tokens = np.concatenate([tokens, logits.numpy()[:, -1].argmax(axis=-1)[:, None]], axis=1)
    assert np.array_equal(out, tokens)


def test_generate_looks_at_the_last_block_size_tokens():
    # prompts of 12 tokens, longer than the 8-token context: the next token is predicted from the last 8
    model = randomize(GPT(tiny_config(), seed=14), np.random.default_rng(14)).eval()
    prompts = np.random.default_rng(14).integers(0, V, size=(16, 12))                       # (B, 12)
    out = model.generate(Tensor(prompts), 1, top_k=1).numpy()
    last_window = model(Tensor(prompts[:, -BLOCK:]))[0].numpy()[:, -1].argmax(axis=-1)      # (B,)
    first_window = model(Tensor(prompts[:, :BLOCK]))[0].numpy()[:, -1].argmax(axis=-1)
    assert np.array_equal(out[:, -1], last_window)
    assert not np.array_equal(last_window, first_window)  # the check can tell the two windows apart

    earlier_differs = prompts.copy()
    earlier_differs[:, :-BLOCK] = (prompts[:, :-BLOCK] + 1) % V  # same last 8 tokens, different first 4
    assert np.array_equal(model.generate(Tensor(earlier_differs), 1, top_k=1).numpy()[:, -1], out[:, -1])


def test_generate_with_a_seeded_generator_reproduces():
    model = GPT(tiny_config()).eval()
    idx = random_tokens(np.random.default_rng(13), (2, 2))
    first = model.generate(idx, 12, generator=np.random.default_rng(5)).numpy()
    again = model.generate(idx, 12, generator=np.random.default_rng(5)).numpy()
    other = model.generate(idx, 12, generator=np.random.default_rng(6)).numpy()
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)   # 24 near-uniform draws from 11 tokens: equal by chance ~1e-25


@pytest.mark.parametrize("arguments, message", [
    (dict(max_new_tokens=-5), "max_new_tokens must be an integer >= 0, got -5"),      # returned the input unchanged
    (dict(max_new_tokens=2.5), "max_new_tokens must be an integer >= 0, got 2.5"),
    (dict(max_new_tokens=3, temperature=math.nan), "temperature must be positive, got nan"),  # numpy's error
    (dict(max_new_tokens=3, top_k=0), "top_k must be an integer >= 1"),
])
def test_generate_checks_its_arguments_before_sampling(arguments, message):
    model = GPT(tiny_config())
    with pytest.raises(ValueError, match=re.escape(message)):
        model.generate(Tensor(np.zeros((1, 1), dtype=np.int64)), **arguments)
    with pytest.raises(TypeError, match=r"got a numpy.ndarray \(1, 1\) int64: wrap it, Tensor\(idx\)"):
        model.generate(np.zeros((1, 1), dtype=np.int64), 1)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_generate_rejects_a_non_positive_temperature(temperature):
    model = GPT(tiny_config())
    with pytest.raises(ValueError, match=rf"temperature must be positive, got {temperature}"):
        model.generate(Tensor(np.zeros((1, 1), dtype=np.int64)), 1, temperature=temperature)
