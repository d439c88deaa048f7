"""The numbers the chapter quotes (part 3, steps 1-2, and FAQ 1), reproduced with the engine.

Each test rebuilds one worked example of the chapter with tinygrad_ed and checks both the exact value and the
chapter's rounded one, so a learner can run the chapter's arithmetic and see the same digits.
"""
import math

import numpy as np
import pytest

from gpt.model import GPT, GPTConfig
from tinygrad_ed import Tensor, cross_entropy

# the chapter's batch (part 3): batch_size = 4, block_size = 8; Y is X shifted one character to the left.
# NOTE: the chapter's ids are illustrative: with tiny Shakespeare's 65-character vocabulary they decode to the
# text on the right, not to the chapter's captions ("he we ni", "Before w", "going in", "the king")
CHAPTER_X = np.array([
    [20, 43, 1, 60, 43, 1, 52, 47],   # "He ve ni"
    [18, 43, 44, 53, 43, 1, 56, 60],  # "Fefoe rv"
    [45, 53, 47, 52, 45, 1, 47, 52],  # "going in"
    [56, 46, 43, 1, 49, 47, 52, 45],  # "rhe king"
])
CHAPTER_Y = np.array([
    [43, 1, 60, 43, 1, 52, 47, 56],
    [43, 44, 53, 43, 1, 56, 60, 43],
    [53, 47, 52, 45, 1, 47, 52, 56],
    [46, 43, 1, 49, 47, 52, 45, 27],
])
VOCAB_SIZE = 65   # tiny Shakespeare's characters
TARGET = 43       # the chapter's example: X[0, 0] = 20 (the chapter says 'h'; here it is 'H'), Y[0, 0] = 43 ('e')


def logits_giving(p_correct, vocab_size=VOCAB_SIZE, target=TARGET):
    """Logits (1, V) whose softmax puts p_correct on `target` and spreads the rest evenly.
    softmax(log p) = p / Σ p = p, so logits = log(probs) reproduce the probabilities exactly."""
    probs = np.full(vocab_size, (1 - p_correct) / (vocab_size - 1))
    probs[target] = p_correct
    return np.log(probs)[None, :]


# ---- step 1: loss = -log P(correct answer) ----

@pytest.mark.parametrize("p_correct, chapter_loss", [
    (0.35, 1.05),   # the chapter's worked example: 35% on the right character
    (0.99, 0.01),   # "很好" (very good)
    (0.50, 0.69),   # "一般" (so-so)
    (0.01, 4.61),   # "很差" (very bad)
])
def test_cross_entropy_is_minus_log_of_the_correct_probability(p_correct, chapter_loss):
    loss = cross_entropy(Tensor(logits_giving(p_correct)), Tensor(np.array([TARGET]))).item()
    assert loss == pytest.approx(-math.log(p_correct), abs=1e-12)
    assert round(loss, 2) == chapter_loss


@pytest.mark.parametrize("shift", [0.0, 2.8, -100.0])
def test_only_the_probabilities_matter_not_the_raw_scores(shift):
    # the chapter's logits are scores like 2.8 for the right character; adding one constant to every score changes
    # no probability, so the loss stays -log 0.35 (float32 here, as in training)
    logits = Tensor((logits_giving(0.35) + shift).astype(np.float32))
    assert cross_entropy(logits, Tensor(np.array([TARGET]))).item() == pytest.approx(1.0498, abs=1e-4)


def test_batch_loss_is_the_average_over_every_position():
    # total_loss = average([loss₀₀, loss₀₁, ..., loss₃₇]): the mean over the chapter batch's 4 × 8 positions
    probs = np.random.default_rng(0).dirichlet(np.ones(VOCAB_SIZE), size=(4, 8))      # (B, T, V)
    per_position = -np.log(np.take_along_axis(probs, CHAPTER_Y[..., None], axis=-1))[..., 0]  # (B, T)
    loss = cross_entropy(Tensor(np.log(probs)), Tensor(CHAPTER_Y)).item()
    assert loss == pytest.approx(per_position.mean(), abs=1e-12)


# ---- FAQ 1: why the loss starts near 4.17 ----

def test_initial_loss_on_the_chapter_batch_is_about_ln_65():
    # initial loss ≈ -log(1/vocab_size) = -log(1/65) = 4.17: a fresh model guesses uniformly.
    # NOTE: a small width keeps the logits near 0. The init std 0.02 gives logits of std ≈ 0.02·√n_embd, which adds
    # about n_embd·0.02²/2 to the loss: ≈ 0.006 here, ≈ 0.08 for the chapter's n_embd = 384 (4.27-4.29 measured).
    assert round(-math.log(1 / VOCAB_SIZE), 2) == 4.17
    config = GPTConfig(vocab_size=VOCAB_SIZE, block_size=8, n_layer=2, n_head=2, n_embd=32)
    for seed in range(3):
        _, loss = GPT(config, seed=seed)(Tensor(CHAPTER_X), Tensor(CHAPTER_Y))
        assert abs(loss.item() - math.log(VOCAB_SIZE)) < 0.1, (seed, loss.item())


# ---- step 2: gradient accumulation, loss / gradient_accumulation_steps ----

MICRO_LOSSES = [2.5, 2.3, 2.4, 2.6]   # the chapter's four micro-step losses


def micro_step_loss(value, w, divide_by):
    """loss_i / k as a function of a parameter w with ∂(loss_i / k · w)/∂w = loss_i / k at any w."""
    return Tensor(np.float64(value)) / divide_by * w


def test_accumulating_the_divided_losses_gives_2_45():
    # micro_step 1..4: 0.625 → 1.200 → 1.800 → 2.450, "equivalent to the average gradient of the big batch"
    w = Tensor(np.float64(1.0), requires_grad=True)
    running = []
    for value in MICRO_LOSSES:
        micro_step_loss(value, w, divide_by=4).backward()   # each backward adds (+=) into w.grad
        running.append(w.grad.item())
    assert running == pytest.approx([0.625, 1.200, 1.800, 2.450], abs=1e-12)
    assert w.grad.item() == pytest.approx(np.mean(MICRO_LOSSES), abs=1e-12)


def test_accumulating_without_dividing_is_four_times_too_large():
    # 2.5 → 4.8 → 7.2 → 9.8: "太大了！是正常的4倍" (too large, 4× the normal gradient)
    w = Tensor(np.float64(1.0), requires_grad=True)
    running = []
    for value in MICRO_LOSSES:
        micro_step_loss(value, w, divide_by=1).backward()
        running.append(w.grad.item())
    assert running == pytest.approx([2.5, 4.8, 7.2, 9.8], abs=1e-12)
    assert w.grad.item() == pytest.approx(4 * 2.45, abs=1e-12)


def test_one_backward_of_the_summed_losses_gives_the_same_2_45():
    # the four backward passes above equal one backward of Σ loss_i / 4: accumulation is just the sum rule
    w = Tensor(np.float64(1.0), requires_grad=True)
    total = micro_step_loss(MICRO_LOSSES[0], w, 4)
    for value in MICRO_LOSSES[1:]:
        total = total + micro_step_loss(value, w, 4)
    total.backward()
    assert w.grad.item() == pytest.approx(2.45, abs=1e-12)
    assert total.item() == pytest.approx(2.45, abs=1e-12)   # at w = 1 the loss itself is the 2.45 average
