"""The examples run as scripts (from a fresh clone too) and print what the chapter promises."""
import math
import os
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


def test_debug_training_draws_the_graph_one_node_per_block(tmp_path):
    out = run_example("examples/debug_training.py", "--seed", "3", "--graph", str(tmp_path / "gpt.dot"))
    assert f"autograd graph drawn to {tmp_path / 'gpt.dot'}" in out and "Gradient norm:" in out
    dot = (tmp_path / "gpt.dot").read_text(encoding="utf-8")
    boxes = dict(re.findall(r"^  (\w+) \[tooltip=\"([^\"]*)\"", dot, re.MULTILINE))     # DOT id -> name or op
    edges = re.findall(r"^  (\w+) -> (\w+);$", dot, re.MULTILINE)
    by_name = {name: node_id for node_id, name in boxes.items()}
    assert {"transformer.wte", "transformer.wpe", "transformer.h.0", "transformer.h.1", "transformer.ln_f",
            "lm_head", "CrossEntropy"} <= set(by_name)
    assert len(boxes) < 12                                   # hundreds of ops, drawn as a handful of boxes
    chain = ["transformer.h.0", "transformer.h.1", "transformer.ln_f", "lm_head", "CrossEntropy"]
    assert all((by_name[a], by_name[b]) in edges for a, b in zip(chain, chain[1:]))
    # a block's 12 parameters: ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj, each a weight and a bias
    assert len(re.findall(r"Block: \d+ ops, 12 parameters", dot)) == 2


def test_debug_training_refuses_a_graph_path_it_cannot_write():
    result = subprocess.run([sys.executable, "examples/debug_training.py", "--graph", "gpt.pdf"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "extension must be one of" in result.stderr and result.stdout == ""


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


def test_every_example_runs_from_a_clone_without_pip_install(tmp_path):
    """With numpy alone importable, not this project (no `pip install -e .`): each example finds the repository's
    packages from its own place, as a fresh clone needs."""
    code = ("import importlib.util, runpy, sys\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]\n"
            f"sys.path[:] = [p for p in sys.path if p not in ('', {str(ROOT)!r})]\n"
            "assert importlib.util.find_spec('gpt') is None, 'the project is still importable'\n"
            "sys.argv = sys.argv[1:]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    for example, args in (("linear_w.py", []), ("debug_training.py", []),
                          ("train_char_gpt.py", ["--device", "cpu", "--max-iters", "2", "--eval-iters", "1",
                                                 "--out-dir", "out", "--sample-tokens", "5"]),
                          ("sample.py", ["--out-dir", "out", "--num-tokens", "5"]),
                          ("experiments.py", ["accum"])):
        result = subprocess.run([sys.executable, "-c", code, str(ROOT / "examples" / example), *args], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (example, result.stderr[-2000:])


def test_experiments_without_an_argument_runs_them_all():
    out = run_example("examples/experiments.py", "--iters", "2", "--seeds", "1")
    for heading in ("== lr:", "== optim:", "== accum:", "== init-loss:"):
        assert heading in out


def test_help_texts_say_each_default_once():
    sample = subprocess.run([sys.executable, str(ROOT / "examples" / "sample.py"), "--help"], capture_output=True,
                            text=True, check=True).stdout
    assert "(default: None)" not in sample and sample.count("(default:") >= 6
    train = subprocess.run([sys.executable, str(ROOT / "examples" / "train_char_gpt.py"), "--help"],
                           capture_output=True, text=True, check=True).stdout
    flat = " ".join(train.split())
    assert "(both presets: False)" in flat and "(cpu preset: 4, cuda preset: 6)" in flat
    assert "small data set overfits later on) (both presets: False)" in flat   # the whole reason, not cut
    for cpu, gpu in re.findall(r"cpu preset: ([^,]+), cuda preset: ([^)]+)\)", flat):
        assert cpu != gpu
