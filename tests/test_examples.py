"""examples/debug_training.py and examples/experiments.py run as scripts and print what the chapter promises."""
import math
import re
import subprocess
import sys
from pathlib import Path

from gpt import GPT, GPTConfig

ROOT = Path(__file__).resolve().parent.parent


def run_example(*args):
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, encoding="utf-8",
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_debug_training_prints_every_parameter_and_the_norm():
    out = run_example("examples/debug_training.py", "--seed", "3")
    model = GPT(GPTConfig(vocab_size=65, n_layer=2, n_head=2, n_embd=64, block_size=16))
    names = [name for name, _ in model.named_parameters()]
    assert "transformer.h.1.attn.c_attn.weight" in names
    printed = re.findall(r"^(\S+)\s+\| mean: [+-]\d+\.\d{6}, std: \d+\.\d{6}, max: \d+\.\d{6}$", out, re.MULTILINE)
    assert printed == names
    loss = float(re.search(r"^Loss: (\d+\.\d+)", out, re.MULTILINE).group(1))
    assert abs(loss - math.log(65)) < 0.2                  # random targets: about the uniform guess
    assert float(re.search(r"^Gradient norm: (\d+\.\d+)", out, re.MULTILINE).group(1)) > 0


def test_accumulation_agrees_with_one_big_batch():
    out = run_example("examples/experiments.py", "accum")
    match = re.search(r"max abs difference (\S+), relative error (\S+)", out)
    assert float(match.group(1)) < 1e-10 and float(match.group(2)) < 1e-10
    assert "is 4.000000 times the big batch's" in out      # without loss / 4 the gradient is 4x too large


def test_initial_loss_is_near_ln_65():
    out = run_example("examples/experiments.py", "init-loss", "--seeds", "2")
    losses = [float(value) for value in re.findall(r"^\w+ \(.*?\)\s+\d+\s+(\d+\.\d{4})", out, re.MULTILINE)]
    assert len(losses) == 4                                # 2 seeds of 2 model sizes
    assert all(abs(loss - 4.17) < 0.2 for loss in losses)
    assert "initial loss against model seed" in out        # the text plot


def test_a_large_learning_rate_explodes_without_clipping_only():
    out = run_example("examples/experiments.py", "lr", "--iters", "12")
    no_clip = re.search(r"^no clip:  loss (\S+) at iteration (\d+)", out, re.MULTILINE)
    clipped = re.search(r"^clip 1\.0: loss (\S+) at iteration (\d+)", out, re.MULTILINE)
    assert clipped.group(2) == "12" and float(clipped.group(1)) < 5
    # deterministic (same seed, same batches): SGD at lr 2.0 is in the thousands by iteration 12 without clipping
    assert not float(no_clip.group(1)) < 100
    assert "log10(loss) against iteration" in out


def test_sgd_and_adamw_run_on_the_same_batches():
    out = run_example("examples/experiments.py", "optim", "--iters", "5")
    starts = re.findall(r"^(SGD lr 1e-3|SGD lr 0\.1|AdamW lr 1e-3)\s*: loss (\d+\.\d+) →", out, re.MULTILINE)
    assert [name for name, _ in starts] == ["SGD lr 1e-3", "SGD lr 0.1", "AdamW lr 1e-3"]
    assert len({loss for _, loss in starts}) == 1          # same initial weights and first batch: same first loss
    assert "loss against iteration" in out
