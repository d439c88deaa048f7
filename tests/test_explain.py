"""The --explain mode (gpt/explain.py): iteration 0 printed as the chapter's part 3, steps 1-5, with the very values
train() computes: the same weights after the update, the same loss, gradient norm, learning rate and update ratio."""
import math
import os
import re
import string
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gpt.checkpoint import CheckpointError
from gpt.data import CharDataset
from gpt.explain import DEFAULT_PARAM, LABELS, explain_iteration, parse_param_spec
from gpt.model import GPT
from gpt.config import TrainConfig
from gpt.training import train

REPO = Path(__file__).resolve().parent.parent
TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=4, gradient_accumulation_steps=2, dropout=0.0,
            device="cpu")
HEADINGS = {"en": ["Step 1: forward pass", "Step 2: gradient accumulation", "Step 3: backward pass",
                   "Step 4: gradient clipping", "Step 5: parameter update", "Learning rate", "Health check"],
            "zh": ["步骤1：前向传播", "步骤2：梯度累积", "步骤3：反向传播", "步骤4：梯度裁剪", "步骤5：参数更新",
                   "学习率", "健康检查"]}


@pytest.fixture(scope="module")
def shakespeare():
    return CharDataset()


def tiny(tmp_path, **overrides):
    return TrainConfig(out_dir=str(tmp_path / "out"), **{**TINY, **overrides})


def explain(config, dataset, param=DEFAULT_PARAM, lang="en"):
    """(the returned values, the printed text)."""
    lines = []
    result = explain_iteration(config, param, lang, dataset, out=lines.append)
    return result, "\n".join(lines)


def train_iteration_0(config, dataset):
    """train() for one iteration with the same settings: (TrainResult, its 'iter 0:' log line)."""
    lines = []
    result = train(replace(config, max_iters=1, eval_interval=1000, eval_iters=1, log_interval=1), dataset,
                   log=lines.append)
    return result, next(line for line in lines if line.startswith("iter 0:"))


@pytest.mark.parametrize("dropout", [0.0, 0.1])
# explain runs on one rank; train() on `workers`: bit for bit on one, to float32 rounding on two (the gradient is
# summed from two slices there), which is DistributedDataParallel's promise of one function at every world size
@pytest.mark.parametrize("workers, batch_size, block_size", [(1, 4, 8), (2, 8, 64)])  # 512 tokens: two slices
def test_explain_is_iteration_0_of_train(tmp_path, shakespeare, dropout, workers, batch_size, block_size):
    config = tiny(tmp_path, dropout=dropout, workers=workers, batch_size=batch_size, block_size=block_size)
    explained, text = explain(config, shakespeare, "transformer.h.0.attn.c_attn.weight[3,5]")
    trained, log_line = train_iteration_0(config, shakespeare)

    # the same update: every weight of the model after the step (dropout draws the same masks)
    expected, actual = trained.model.state_dict(), explained["model"].state_dict()
    assert expected.keys() == actual.keys()
    tolerance = dict(rtol=0, atol=0) if workers == 1 else dict(rtol=1e-5, atol=1e-7)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], err_msg=name, **tolerance)
    weight = trained.model.state_dict()["transformer.h.0.attn.c_attn.weight"][3, 5]
    np.testing.assert_allclose(explained["new"], float(weight), **tolerance)
    assert trained.optimizer.state_dict()["state"].keys() == explained["optimizer"].state_dict()["state"].keys()

    # the log line's numbers: the last micro-batch's loss, lr, gradient norm, update/param ratio
    numbers = dict(re.findall(r"(loss|lr|grad norm|update/param) ([-+.\de]+)", log_line))
    assert numbers["loss"] == f"{explained['micro_losses'][-1]:.4f}"
    assert numbers["lr"] == f"{explained['lr']:.2e}"
    assert numbers["grad norm"] == f"{explained['grad_norm']:.3f}"
    assert numbers["update/param"] == f"{explained['update_ratio']:.1e}"

    # and the text shows them
    assert f"{explained['loss']:.4f}" in text and f"{explained['grad_norm']:.4f}" in text
    assert f"= {explained['new']:+.8f}" in text and f"{explained['old']:+.8f}" in text
    assert f"lr = {explained['lr']:.3e}" in text


@pytest.mark.parametrize("stop_at, lang", [(3, "en"), (6, "zh")])   # 3: in the warmup (4 iterations); 6: past it
def test_explain_of_a_checkpoint_is_the_resumed_runs_next_iteration(tmp_path, shakespeare, stop_at, lang):
    """--explain --resume walks through a checkpoint's next update (a converted nanoGPT model's too): the weights
    after it equal those of train() resumed for one iteration, and the text shows AdamW's m and v carried over."""
    config = tiny(tmp_path, warmup_iters=4, lr_decay_iters=20, eval_interval=stop_at, eval_iters=1,
                  always_save_checkpoint=True, dropout=0.1)
    train(replace(config, max_iters=stop_at), shakespeare, log=lambda line: None)
    resumed = replace(config, init_from="resume", max_iters=stop_at + 1)
    explained, text = explain(resumed, shakespeare, "transformer.h.0.attn.c_attn.weight[3,5]", lang)
    trained = train(replace(resumed, eval_interval=1000), shakespeare, log=lambda line: None)

    assert explained["iter_num"] == stop_at and explained["update"]["step"] == stop_at + 1
    expected, actual = trained.model.state_dict(), explained["model"].state_dict()
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
    update = explained["update"]
    assert update["m_before"] != 0 and update["v_before"] > 0   # the checkpoint's moments, not m_0 = v_0 = 0
    assert f"× {update['m_before']:+.4e} +" in text and f"× {update['v_before']:+.4e} +" in text
    if lang == "en":
        assert f"iteration {stop_at} of train()" in text and f"m and v carry the {stop_at} updates" in text
        assert f"iteration {stop_at} is in the warmup" in text and f"× {stop_at + 1}/5 =" in text
    else:
        assert f"train() 的第{stop_at}次迭代" in text and f"此前 {stop_at} 次更新" in text
        assert f"第{stop_at}次迭代已过预热阶段" in text


def test_the_printed_numbers_are_the_returned_ones_and_add_up(tmp_path, shakespeare):
    config = tiny(tmp_path)
    result, text = explain(config, shakespeare)
    update, steps = result["update"], config.gradient_accumulation_steps
    for heading in HEADINGS["en"]:
        assert heading in text

    # step 1: the batch and the forward pass at sample 0, position 0
    assert "X.shape = [4, 8]" in text and "logits.shape = [4, 8, 65]" in text
    assert math.isclose(result["position_loss"], -math.log(result["p_correct"]), rel_tol=1e-12)
    assert f"-log({result['p_correct']:.4f}) = {result['position_loss']:.4f}" in text
    probabilities = [p for _, _, p in result["top"]]
    assert probabilities == sorted(probabilities, reverse=True) and len(probabilities) == 5
    assert f"ln 65 = {math.log(65):.4f}" in text
    # step 2: one row per micro-step, each micro-loss divided by the number of steps
    assert len(result["micro_losses"]) == len(result["running_grads"]) == steps
    for loss, grad in zip(result["micro_losses"], result["running_grads"]):
        assert f"{loss:.4f}   {loss / steps:.4f}" in text and f"{grad:+.4e}" in text
    assert math.isclose(result["loss"], sum(result["micro_losses"]) / steps)
    # step 3: the accumulated gradient and its meaning
    assert result["grad"] == result["running_grads"][-1] != 0
    assert ("increasing w lowers the loss" if result["grad"] < 0 else "increasing w raises the loss") in text
    assert f"{result['grad'] * 0.001:+.4e}" in text
    # step 4: clipping by min(1, clip / (norm + 1e-6))
    assert result["clip_factor"] == min(1.0, config.grad_clip / (result["grad_norm"] + 1e-6))
    assert math.isclose(result["grad_clipped"], result["grad"] * result["clip_factor"], rel_tol=1e-5)
    # step 5: AdamW's own numbers, consistent with its first step (t = 1, m and v from 0)
    g = update["grad"]
    assert update["step"] == 1 and g == result["grad_clipped"]
    assert math.isclose(update["m"], (1 - config.beta1) * g, rel_tol=1e-5)
    assert math.isclose(update["v"], (1 - config.beta2) * g * g, rel_tol=1e-5)
    assert math.isclose(update["m_hat"], g, rel_tol=1e-5) and math.isclose(update["v_hat"], g * g, rel_tol=1e-5)
    assert math.isclose(update["new"], update["old"] - update["weight_decay_term"] - update["adam_term"],
                        rel_tol=1e-6)
    for key in ("m", "v", "m_hat", "v_hat", "adam_term", "weight_decay_term"):
        assert f"{update[key]:+.4e}" in text, key
    # the schedule and the health check
    assert result["lr"] == config.learning_rate / (config.warmup_iters + 1)
    assert "as expected in the warmup" in text
    assert set(result["group_ratios"]) == {"decay", "no_decay"}
    assert f"update/param = {result['update_ratio']:.1e}" in text
    assert "saves no checkpoint" in text and not os.path.exists(config.out_dir)


def test_chinese_labels_use_the_chapters_headings(tmp_path, shakespeare):
    config = tiny(tmp_path)
    english, english_text = explain(config, shakespeare)
    chinese, text = explain(config, shakespeare, lang="zh")
    for heading in HEADINGS["zh"]:
        assert heading in text
    assert "Step 1" not in text
    # the same run, the same digits
    assert chinese["new"] == english["new"] and chinese["grad_norm"] == english["grad_norm"]
    numbers = re.compile(r"[-+]?\d+\.\d+(?:e[-+]\d+)?")
    assert numbers.findall(text) and set(numbers.findall(text)) == set(numbers.findall(english_text))


def test_both_languages_have_every_label_with_the_same_placeholders():
    def placeholders(label):
        return sorted(name for _, name, _, _ in string.Formatter().parse(label) if name)
    assert LABELS["en"].keys() == LABELS["zh"].keys()
    for key in LABELS["en"]:
        assert placeholders(LABELS["en"][key]) == placeholders(LABELS["zh"][key]), key


def test_explain_param_chooses_the_weight(tmp_path, shakespeare):
    config = tiny(tmp_path, gradient_accumulation_steps=1)
    result, text = explain(config, shakespeare, "transformer.wte.weight[43,5]")
    assert result["param"] == "transformer.wte.weight" and result["index"] == (43, 5)
    assert "w = transformer.wte.weight[43, 5]" in text and "shape (65, 16)" in text
    assert result["old"] == float(GPT(config.model_config(65), seed=config.seed).transformer.wte.weight.data[43, 5])
    assert result["new"] == float(result["model"].transformer.wte.weight.data[43, 5])
    # a vector without weight decay, a negative index, the tied lm_head, and a bare name (entry [0, ...])
    result, text = explain(config, shakespeare, "transformer.ln_f.weight[-1]")
    assert result["index"] == (15,) and "no-decay group" in text and result["update"]["weight_decay"] == 0.0
    model = GPT(config.model_config(65), seed=config.seed)
    assert parse_param_spec("lm_head.weight[1,2]", model)[0] == "transformer.wte.weight"
    assert parse_param_spec("transformer.h.0.mlp.c_fc.weight", model)[2] == (0, 0)


@pytest.mark.parametrize("spec, message", [
    ("transformer.h.0.attn.c_atn.weight", r"unknown parameter .*did you mean transformer\.h\.0\.attn\.c_attn\.weight"),
    ("foo", r"unknown parameter 'foo'.*transformer\.wte\.weight \(65, 16\).*transformer\.ln_f\.weight \(16,\)"),
    ("transformer.h.1.attn.c_attn.weight", r"unknown parameter"),  # the tiny model has one block
    ("transformer.h.0.attn.c_attn.weight[48,0]", r"\[48, 0\] .*shape \(48, 16\)"),
    ("transformer.h.0.attn.c_attn.weight[1]", r"\[1\] .*shape \(48, 16\): give 2 indices"),
    ("transformer.h.0.attn.c_attn.weight[a,b]", r"expected 2 integers .*shape \(48, 16\)"),
    ("transformer.h.0.attn.c_attn.weight(1,2)", r"expected NAME or NAME\[i,j\]"),
])
def test_bad_names_and_indices_are_refused_clearly(spec, message):
    model = GPT(TrainConfig(**TINY).model_config(65))
    with pytest.raises(ValueError, match=message):
        parse_param_spec(spec, model)


def test_settings_explain_cannot_show_are_refused(tmp_path, shakespeare):
    with pytest.raises(ValueError, match="lang must be one of"):
        explain(tiny(tmp_path), shakespeare, lang="fr")
    with pytest.raises(CheckpointError, match="ckpt.npz"):   # nothing to resume from
        explain(tiny(tmp_path, init_from="resume"), shakespeare)


def test_clipping_off_and_a_constant_learning_rate(tmp_path, shakespeare):
    result, text = explain(tiny(tmp_path, grad_clip=0.0, decay_lr=False), shakespeare)
    assert result["clip_factor"] is None and result["grad_clipped"] == result["grad"]
    assert "clipping is off" in text and f"lr = learning_rate = {result['lr']:.3e}" in text
    assert result["lr"] == 1e-3


def test_strong_clipping_scales_every_gradient(tmp_path, shakespeare):
    result, text = explain(tiny(tmp_path, grad_clip=0.05), shakespeare)
    assert result["clip_factor"] < 1 and f"= {result['clip_factor']:.4f}; the direction is kept" in text
    assert "the norm becomes 0.0500" in text


def run_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(REPO / "examples" / "train_char_gpt.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


CLI_TINY = ["--explain", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "8", "--batch-size", "4",
            "--device", "cpu"]


def test_the_command_line_prints_every_step_and_saves_nothing(tmp_path):
    result = run_cli(*CLI_TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for heading in ["The batch: X, Y = get_batch('train')"] + HEADINGS["en"]:
        assert heading in result.stdout
    assert "n_layer=1" in result.stdout and "X.shape = [4, 8]" in result.stdout
    assert list(tmp_path.iterdir()) == []  # no out-shakespeare-char/, no checkpoint

    chinese = run_cli(*CLI_TINY, "--lang", "zh", "--explain-param", "transformer.wpe.weight[7,15]", cwd=tmp_path)
    assert chinese.returncode == 0, chinese.stderr
    assert all(heading in chinese.stdout for heading in HEADINGS["zh"])
    assert "w = transformer.wpe.weight[7, 15]" in chinese.stdout


def test_the_command_line_names_the_shape_of_a_bad_index(tmp_path):
    result = run_cli(*CLI_TINY, "--explain-param", "transformer.wte.weight[65,0]", cwd=tmp_path)
    assert result.returncode == 2 and "shape (65, 16)" in result.stderr
    result = run_cli(*CLI_TINY, "--resume", cwd=tmp_path)     # no checkpoint in the out dir: said, nothing made
    assert result.returncode != 0 and "ckpt.npz" in result.stderr and "Traceback" not in result.stderr
