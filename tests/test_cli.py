"""The command-line examples, run as a learner runs them: examples/train_char_gpt.py and examples/sample.py."""
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from gpt.config import TrainConfig
from tinygrad_ed import cuda_available

REPO = Path(__file__).resolve().parent.parent
TRAIN = str(REPO / "examples" / "train_char_gpt.py")
SAMPLE = str(REPO / "examples" / "sample.py")
TINY = ["--device", "cpu", "--max-iters", "4", "--eval-interval", "2", "--eval-iters", "2", "--batch-size", "2",
        "--block-size", "16", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--out-dir", "tmp"]
TINY_UNDERSCORES = ["--device", "cpu", "--max_iters", "4", "--eval_interval", "2", "--eval_iters", "2",
                    "--batch_size", "2", "--block_size", "16", "--n_layer", "1", "--n_head", "2", "--n_embd", "16",
                    "--out_dir", "tmp"]


def run(script, *args, cwd):
    """Run a script in a fresh Python in `cwd`, finding the packages in this checkout (as pip install -e would)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, script, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("flags", [TINY, TINY_UNDERSCORES], ids=["dashes", "underscores"])
def test_training_runs_end_to_end_and_prints_a_sample(tmp_path, flags):
    result = run(TRAIN, *flags, "--sample-tokens", "50", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "max_iters = 4" in out and "n_embd = 16" in out and "out_dir = 'tmp'" in out  # the config
    assert "number of parameters:" in out
    assert "step 4: train loss" in out and "final (iteration 4): train loss" in out
    assert "loss against iteration" in out and ". train (one batch)" in out  # the text plot
    sample = out.split("sample (50 characters after '\\n'):\n", 1)[1]
    assert len(sample.rstrip("\n")) >= 40  # the start "\n" and 50 generated characters (some may be newlines)
    assert (tmp_path / "tmp" / "ckpt.npz").is_file()
    assert "4/4" in result.stderr  # the progress line


def test_sample_generates_from_the_saved_checkpoint(tmp_path):
    assert run(TRAIN, *TINY, "--sample-tokens", "0", cwd=tmp_path).returncode == 0
    args = ["--checkpoint", "tmp/ckpt.npz", "--start", "ROMEO:", "--num-tokens", "40", "--seed", "3"]
    first, second = run(SAMPLE, *args, cwd=tmp_path), run(SAMPLE, *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "loaded tmp/ckpt.npz (iteration 4" in first.stdout
    text = first.stdout.splitlines()[1:]
    assert "\n".join(text).startswith("ROMEO:")
    assert first.stdout == second.stdout  # the same seed, the same text
    third = run(SAMPLE, *args[:-1], "4", cwd=tmp_path)
    assert third.stdout != first.stdout


def test_sample_without_a_checkpoint_says_to_train_first(tmp_path):
    result = run(SAMPLE, cwd=tmp_path)
    assert result.returncode != 0
    assert "no checkpoint file at out-shakespeare-char/ckpt.npz" in result.stderr
    assert "train_char_gpt.py" in result.stderr


def test_sample_rejects_characters_outside_the_vocabulary(tmp_path):
    assert run(TRAIN, *TINY, "--sample-tokens", "0", cwd=tmp_path).returncode == 0
    result = run(SAMPLE, "--checkpoint", "tmp/ckpt.npz", "--start", "héllo", cwd=tmp_path)
    assert result.returncode != 0 and "'é' at position 1 is not in the vocabulary" in result.stderr


def test_resume_continues_with_the_saved_settings(tmp_path):
    assert run(TRAIN, *TINY, "--sample-tokens", "0", cwd=tmp_path).returncode == 0
    # only --out-dir and --max-iters are given: the tiny model's shape comes from the checkpoint
    result = run(TRAIN, "--device", "cpu", "--resume", "--out-dir", "tmp", "--max-iters", "6", "--sample-tokens", "0",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "n_embd = 16" in result.stdout and "max_iters = 6" in result.stdout
    assert "resumed from tmp/ckpt.npz at iteration 4" in result.stdout
    assert "step 6: train loss" in result.stdout


def test_a_second_fresh_run_keeps_the_first_runs_checkpoint(tmp_path):
    assert run(TRAIN, *TINY, "--sample-tokens", "0", cwd=tmp_path).returncode == 0
    before = (tmp_path / "tmp" / "ckpt.npz").read_bytes()
    result = run(TRAIN, *TINY, "--sample-tokens", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "held an earlier run's checkpoint: kept as" in result.stdout
    kept = list((tmp_path / "tmp").glob("ckpt-previous-*.npz"))
    assert len(kept) == 1 and kept[0].read_bytes() == before


def test_float16_on_the_cpu_is_rejected_clearly(tmp_path):
    result = run(TRAIN, "--device", "cpu", "--dtype", "float16", cwd=tmp_path)
    assert result.returncode == 2
    assert "dtype='float16' needs device='cuda'" in result.stderr
    assert not (tmp_path / "out-shakespeare-char").exists()


def test_every_config_field_has_both_flag_spellings(tmp_path):
    help_text = run(TRAIN, "--help", cwd=tmp_path).stdout
    for field in fields(TrainConfig):
        assert f"--{field.name.replace('_', '-')}" in help_text, field.name
        assert f"--{field.name}" in help_text, field.name
        if field.type is bool:
            assert f"--no-{field.name.replace('_', '-')}" in help_text, field.name


@pytest.mark.parametrize("flags, message", [
    (["--n-head", "3"], "n_embd (128) must be divisible by n_head (3)"),
    (["--block-size", "100000"], "lower --block-size or --batch-size"),
    (["--n-head", "0"], "n_head must be at least 1, got 0 (--n-head)"),
    (["--seed", "-1"], "seed must be >= 0, got -1 (--seed)"),
    (["--learning-rate", "nan", "--no-decay-lr"], "learning_rate must be a finite number, got nan (--learning-rate)"),
    (["--learning-rate", "-1", "--no-decay-lr"], "learning_rate must be > 0, got -1.0 (--learning-rate)"),
    (["--weight-decay", "nan"], "weight_decay must be a finite number, got nan (--weight-decay)"),
    (["--grad-clip", "nan"], "grad_clip must be a finite number, got nan (--grad-clip)"),
    (["--beta1", "1.5"], "beta1 must be in [0, 1), got 1.5 (--beta1)"),
    (["--beta2", "-1"], "beta2 must be in [0, 1), got -1.0 (--beta2)"),
    (["--warmup-iters", "-10"], "warmup_iters must be >= 0, got -10 (--warmup-iters)"),
    (["--out-dir", ""], "out_dir must be a folder's path, not empty"),
    (["--resume", "--init-from", "scratch"], "--resume and --init-from scratch contradict each other"),
])
def test_impossible_model_settings_are_refused_before_training(tmp_path, flags, message):
    result = run(TRAIN, "--device", "cpu", *flags, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out-shakespeare-char").exists()


@pytest.mark.skipif(cuda_available(), reason="needs a machine without a usable GPU")
@pytest.mark.parametrize("program", ["train", "sample"])
def test_cuda_without_a_gpu_is_a_clear_error_not_a_traceback(tmp_path, program):
    result = run(TRAIN if program == "train" else SAMPLE, "--device", "cuda", cwd=tmp_path)
    assert result.returncode == 2 and "--device cuda: no usable GPU: cupy" in result.stderr
    assert "or use --device cpu" in result.stderr and "Traceback" not in result.stderr


def test_sample_reads_the_folder_train_char_gpt_saved_into(tmp_path):
    assert run(TRAIN, *TINY, "--sample-tokens", "0", cwd=tmp_path).returncode == 0
    result = run(SAMPLE, "--out-dir", "tmp", "--num-tokens", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "loaded tmp/ckpt.npz" in result.stdout


@pytest.mark.parametrize("flags, message", [
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--temperature", "nan"], "--temperature must be a finite number > 0, got nan"),
    (["--num-tokens", "-5"], "--num-tokens must be >= 0, got -5"),
])
def test_sample_refuses_bad_settings_before_loading(tmp_path, flags, message):
    result = run(SAMPLE, *flags, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_the_printed_config_shows_what_the_run_uses(tmp_path):
    result = run(TRAIN, *TINY, "--sample-tokens", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "lr_decay_iters = 101   (None: follows max_iters)" in result.stdout  # max_iters 4, after warmup 100
    assert "workers = 1   (0: one per usable CPU core, or mpiexec's -n)" in result.stdout  # a 32-token batch: 1 rank
    assert "backend = 'local'   ('auto': nccl on cuda, mpi under mpiexec, else local)" in result.stdout
    assert "note: max_iters 4 <= warmup_iters 100: the whole run is warmup" in result.stdout



# ---- faults: signals, a second run, damaged checkpoints, memory, a failed save ----

LONG = ["--device", "cpu", "--max-iters", "100000", "--eval-interval", "2", "--eval-iters", "1", "--batch-size", "2",
        "--block-size", "16", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--always-save-checkpoint",
        "--out-dir", "tmp", "--sample-tokens", "0"]


def start(script, *args, cwd):
    """A program in a session of its own (so that a signal to its process group reaches nothing else)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, script, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(path, process, seconds=60):
    import time
    deadline = time.time() + seconds
    while not path.exists():
        assert process.poll() is None and time.time() < deadline, process.stderr.read() if process.poll() else path
        time.sleep(0.1)


@pytest.mark.parametrize("how, code", [("ctrl-c to the process group", 130), ("sigterm to the program", 143)])
def test_an_interrupted_run_says_where_its_checkpoint_is_and_leaves_nothing_behind(tmp_path, how, code):
    import signal
    import time
    process = start(TRAIN, *LONG, "--workers", "2", cwd=tmp_path)   # two ranks: rank 1 must not outlive the run
    try:
        wait_for(tmp_path / "tmp" / "ckpt.npz", process)
        time.sleep(0.5)
        if how.startswith("ctrl-c"):
            os.killpg(process.pid, signal.SIGINT)    # what a terminal does: the workers get it too
        else:
            os.kill(process.pid, signal.SIGTERM)     # a scheduler, `kill`
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:                   # the test failed before the run ended: end it here
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == code, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted at iteration ") and "the last checkpoint this run saved is tmp/ckpt.npz" in last
    assert last.endswith("resume with: python examples/train_char_gpt.py --resume --out-dir tmp")
    time.sleep(0.5)
    survivors = subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert survivors == []                               # no worker process outlived the run
    assert sorted(path.name for path in (tmp_path / "tmp").iterdir() if path.name != "loss.png") == ["ckpt.npz"]


def test_a_second_run_in_the_same_out_dir_is_refused_naming_the_first(tmp_path):
    import signal
    first = start(TRAIN, *LONG, cwd=tmp_path)
    try:
        wait_for(tmp_path / "tmp" / "ckpt.npz", first)
        second = run(TRAIN, *TINY, "--sample-tokens", "0", cwd=tmp_path)
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert f"is in use by another training run (PID {first.pid})" in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGINT)
        first.communicate(timeout=60)


def test_a_checkpoint_with_nan_weights_is_named_by_every_program(tmp_path):
    assert run(TRAIN, *TINY, "--sample-tokens", "0", "--always-save-checkpoint", cwd=tmp_path).returncode == 0
    path = tmp_path / "tmp" / "ckpt.npz"
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["model/transformer.wte.weight"] = arrays["model/transformer.wte.weight"] * np.nan
    np.savez(path, **arrays)
    for program, args in ((SAMPLE, ["--out-dir", "tmp"]), (TRAIN, ["--resume", "--out-dir", "tmp",
                                                                    "--max-iters", "8"])):
        result = run(program, *args, cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert "holds NaN or infinite weights (transformer.wte.weight)" in result.stderr


def test_resuming_a_finished_run_says_how_to_go_on(tmp_path):
    assert run(TRAIN, *TINY, "--sample-tokens", "0", "--always-save-checkpoint", cwd=tmp_path).returncode == 0
    result = run(TRAIN, "--resume", "--out-dir", "tmp", cwd=tmp_path)
    assert result.returncode == 1 and "nothing to train" in result.stderr and "--max-iters" in result.stderr
    evaluated = run(TRAIN, "--resume", "--out-dir", "tmp", "--eval-only", "--sample-tokens", "0", cwd=tmp_path)
    assert evaluated.returncode == 0 and "no training iteration ran" in evaluated.stdout   # not "nan ms"
    assert "nan ms" not in evaluated.stdout


def test_a_model_larger_than_the_memory_limit_is_refused_before_training(tmp_path):
    import resource

    def four_gib():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, TRAIN, "--device", "cpu", "--n-embd", "2048", "--n-layer", "8",
                             "--n-head", "8"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                            preexec_fn=four_gib)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "this process may address (ulimit -v)" in result.stderr and "gradients and AdamW state" in result.stderr
    assert not (tmp_path / "out-shakespeare-char").exists()


def test_a_run_whose_last_save_failed_exits_with_an_error(tmp_path):
    code = ("import runpy, sys\n"
            "import gpt.checkpoint as checkpoint\n"
            "def full(path, *args): raise OSError(28, 'No space left on device')\n"
            "checkpoint.save_checkpoint = full\n"
            f"sys.argv = [{TRAIN!r}] + {TINY + ['--sample-tokens', '0', '--always-save-checkpoint']!r}\n"
            f"runpy.run_path({TRAIN!r}, run_name='__main__')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "warning: could not save" in result.stdout
    assert "error: the last checkpoint save failed" in result.stderr and "No space left on device" in result.stderr
