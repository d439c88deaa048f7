"""The training loop (gpt/training.py), its progress display (gpt/progress.py) and plots (gpt/plot.py): it learns,
resumes exactly, stops on NaN without touching the last good checkpoint, and refuses settings it cannot honour."""
import io
import math
from dataclasses import replace

import numpy as np
import pytest

from gpt import checkpoint, config as config_module, step as step_module, training
from gpt.checkpoint import CheckpointError, load_checkpoint
from gpt.data import CharDataset
from gpt.plot import text_plot
from gpt.progress import ProgressBar, format_duration
from gpt.config import TrainConfig, cpu_preset, gpu_preset
from gpt.training import TrainingDiverged, train
from optim import get_lr
from tinygrad_ed import mixed_precision


@pytest.fixture(scope="module")
def shakespeare():
    return CharDataset()


def tiny(out_dir, **overrides):
    """A model small enough to train in a fraction of a second: 2 layers, 2 heads, 32 wide, 16 characters.
    No health.png: drawing it would take longer than the run (tests/test_health.py tests it)."""
    settings = dict(out_dir=str(out_dir), n_layer=2, n_head=2, n_embd=32, block_size=16, batch_size=4,
                    eval_iters=4, eval_interval=10, log_interval=5, max_iters=10, warmup_iters=2, lr_decay_iters=60,
                    dropout=0.0, device="cpu", health_png=False)
    return TrainConfig(**{**settings, **overrides})


def quiet(message):
    pass


def test_loss_decreases_on_shakespeare(tmp_path, shakespeare):
    result = train(tiny(tmp_path, max_iters=50, learning_rate=1e-2, min_lr=1e-3, eval_interval=25), shakespeare,
                   log=quiet)
    (_, train_start, val_start), (_, train_end, val_end) = result.evals[0], result.evals[-1]
    assert [iteration for iteration, _, _ in result.evals] == [0, 25, 50]
    assert math.isclose(val_start, math.log(65), abs_tol=0.1)  # a random model guesses uniformly (FAQ Q1)
    assert train_end < train_start - 0.5 and val_end < val_start - 0.5
    assert result.best_val_loss == min(val for _, _, val in result.evals)
    assert result.iter_num == 50 and result.saved_at == [25, 50]
    assert [iteration for iteration, _ in result.logs] == list(range(0, 50, 5))


def test_resume_is_exact(tmp_path, shakespeare):
    # N iterations, save, resume, N more == 2N straight: weights and AdamW state bit for bit. Dropout and gradient
    # accumulation are on, so the batch generator, the pending batch and the dropout generator must all come back.
    def config(out_dir, max_iters, **overrides):
        return tiny(out_dir, max_iters=max_iters, eval_interval=3, dropout=0.1, gradient_accumulation_steps=2,
                    always_save_checkpoint=True, log_interval=2, **overrides)

    straight = train(config(tmp_path / "straight", 6), shakespeare, log=quiet)
    first_half = train(config(tmp_path / "halves", 3), shakespeare, log=quiet)
    second_half = train(config(tmp_path / "halves", 6, init_from="resume"), shakespeare, log=quiet)

    assert first_half.saved_at == [3] and second_half.iter_num == 6
    expected, actual = straight.model.state_dict(), second_half.model.state_dict()
    assert expected.keys() == actual.keys()
    for name in expected:
        assert np.array_equal(expected[name], actual[name]), name
    expected, actual = straight.optimizer.state_dict(), second_half.optimizer.state_dict()
    assert expected["param_groups"] == actual["param_groups"]
    for index, state in expected["state"].items():
        assert state["step"] == actual["state"][index]["step"] == 6
        assert np.array_equal(state["m"], actual["state"][index]["m"])
        assert np.array_equal(state["v"], actual["state"][index]["v"])
    # the resumed run re-evaluates its starting point to the numbers the first half saved
    assert second_half.evals == straight.evals[1:]
    # and the checkpoints the two runs wrote at the end hold the same state
    straight_checkpoint = load_checkpoint(tmp_path / "straight" / "ckpt.npz")
    halves_checkpoint = load_checkpoint(tmp_path / "halves" / "ckpt.npz")
    assert straight_checkpoint.generators == halves_checkpoint.generators
    assert straight_checkpoint.iter_num == halves_checkpoint.iter_num == 6


def test_a_nan_gradient_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, shakespeare, monkeypatch):
    saved = []  # the checkpoint's bytes after every save
    real_save = checkpoint.save_checkpoint

    def recording_save(path, *args):
        real_save(path, *args)
        saved.append(open(path, "rb").read())

    real_clip = step_module.clip_grad_norm_

    def clip_with_a_nan_at_iteration_5(params, max_norm):
        if len(clip_calls) == 5:
            params[0].grad[0, 0] = np.nan  # one bad gradient entry poisons the global norm
        clip_calls.append(None)
        return real_clip(params, max_norm)

    clip_calls = []
    monkeypatch.setattr(checkpoint, "save_checkpoint", recording_save)
    monkeypatch.setattr(step_module, "clip_grad_norm_", clip_with_a_nan_at_iteration_5)
    config = tiny(tmp_path, max_iters=10, eval_interval=2, log_interval=1, always_save_checkpoint=True)
    with pytest.raises(TrainingDiverged) as caught:
        train(config, shakespeare, log=quiet)
    assert caught.value.iter_num == 5
    message = str(caught.value)
    assert "iteration 5" in message and "nan" in message
    for remedy in ("learning_rate", "1e-4", "grad_clip=1.0", "float32"):
        assert remedy in message
    assert len(saved) == 2  # at iterations 2 and 4, never after the NaN
    assert (tmp_path / "ckpt.npz").read_bytes() == saved[-1]
    assert load_checkpoint(tmp_path / "ckpt.npz").iter_num == 4
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ckpt.npz"]  # no temporary file left


def test_nan_weights_are_caught_by_the_evaluation(tmp_path, shakespeare, monkeypatch):
    # a NaN learning rate at iteration 5 writes NaN into the weights after that iteration's loss was computed;
    # no log line follows (log_interval=100), so the evaluation at iteration 6 must notice and refuse to save
    real_get_lr = training.get_lr
    monkeypatch.setattr(training, "get_lr", lambda it, *args: math.nan if it == 5 else real_get_lr(it, *args))
    config = tiny(tmp_path, max_iters=10, eval_interval=3, log_interval=100, always_save_checkpoint=True)
    with pytest.raises(TrainingDiverged, match="iteration 6: the estimated loss is train nan"):
        train(config, shakespeare, log=quiet)
    assert load_checkpoint(tmp_path / "ckpt.npz").iter_num == 3


def test_float16_is_rejected_on_the_cpu():
    with pytest.raises(ValueError, match="float16.*needs device='cuda'"):
        TrainConfig(device="cpu", dtype="float16")
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float16'"):
        TrainConfig(dtype="bfloat16")


def test_float16_path_learns_and_skips_overflowing_steps(tmp_path, shakespeare, monkeypatch):
    # float16 is meant for cuda; setting it after construction bypasses the CPU check to run the same code on
    # numpy: float16 forward/backward, float32 weights in the optimizer, a loss scaler that skips an inf step
    real_backward = mixed_precision.HalfLoss.backward

    def backward_with_an_inf_at_iteration_3(self, grad):
        grads = real_backward(self, grad)    # the float16 gradients, cast to the float32 weights' dtype
        if len(moves) == 3:
            grads[0][0, 0] = np.inf          # an overflow, as too large a loss scale produces
        moves.append(None)
        return grads

    moves = []
    monkeypatch.setattr(mixed_precision.HalfLoss, "backward", backward_with_an_inf_at_iteration_3)
    config = tiny(tmp_path, max_iters=30, learning_rate=1e-2, log_interval=1, eval_interval=30)
    config.dtype = "float16"
    lines = []
    with np.errstate(over="ignore", invalid="ignore"):  # float16 overflows are expected and handled here
        result = train(config, shakespeare, log=lines.append)
    assert "step skipped" in next(line for line in lines if line.startswith("iter 3:"))
    assert all(param.dtype == np.float32 for param in result.model.parameters())
    assert all(np.isfinite(param.data).all() for param in result.model.parameters())
    (_, _, val_start), (_, _, val_end) = result.evals[0], result.evals[-1]
    assert val_end < val_start - 0.5


def test_a_fresh_run_keeps_the_earlier_checkpoint_under_another_name(tmp_path, shakespeare):
    train(tiny(tmp_path, max_iters=2, eval_interval=2), shakespeare, log=quiet)
    before = (tmp_path / "ckpt.npz").read_bytes()
    train(tiny(tmp_path, max_iters=2, eval_interval=2), shakespeare, log=quiet)
    kept = list(tmp_path.glob("ckpt-previous-*.npz"))
    assert len(kept) == 1 and kept[0].read_bytes() == before
    assert (tmp_path / "ckpt.npz").exists()


def test_a_fresh_run_that_saves_nothing_leaves_the_earlier_checkpoint_in_place(tmp_path, shakespeare):
    train(tiny(tmp_path, max_iters=2, eval_interval=2), shakespeare, log=quiet)
    before = (tmp_path / "ckpt.npz").read_bytes()
    train(tiny(tmp_path, max_iters=0), shakespeare, log=quiet)   # evaluates iteration 0 only: nothing to save
    assert (tmp_path / "ckpt.npz").read_bytes() == before
    assert not list(tmp_path.glob("ckpt-previous-*.npz"))


def test_an_out_dir_that_is_a_file_is_refused_before_training(tmp_path, shakespeare):
    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        train(tiny(tmp_path / "taken"), shakespeare, log=quiet)


def test_resume_needs_a_checkpoint_of_the_same_model(tmp_path, shakespeare):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        train(tiny(tmp_path, init_from="resume"), shakespeare, log=quiet)
    train(tiny(tmp_path, max_iters=2, eval_interval=2), shakespeare, log=quiet)
    with pytest.raises(CheckpointError, match="n_embd: checkpoint 32, requested 64"):
        train(tiny(tmp_path, init_from="resume", n_embd=64), shakespeare, log=quiet)
    other_65_characters = CharDataset(text="".join(chr(0x100 + i) for i in range(65)) * 20)
    with pytest.raises(CheckpointError, match="another vocabulary"):
        train(tiny(tmp_path, init_from="resume"), other_65_characters, log=quiet)
    # dropout is a training setting, not the model's shape: it may change on resume, as in nanoGPT
    resumed = train(tiny(tmp_path, init_from="resume", dropout=0.1, max_iters=3), shakespeare, log=quiet)
    assert resumed.iter_num == 3


def test_eval_only_evaluates_once_and_saves_nothing(tmp_path, shakespeare):
    train(tiny(tmp_path, max_iters=2, eval_interval=2), shakespeare, log=quiet)
    before = (tmp_path / "ckpt.npz").read_bytes()
    result = train(tiny(tmp_path, init_from="resume", eval_only=True, always_save_checkpoint=True), shakespeare,
                   log=quiet)
    assert len(result.evals) == 1 and result.evals[0][0] == 2 and result.logs == []
    assert (tmp_path / "ckpt.npz").read_bytes() == before


def test_log_lines_carry_the_health_numbers_and_mfu_against_a_stated_peak(tmp_path, shakespeare):
    lines = []
    train(tiny(tmp_path / "a", max_iters=3, log_interval=1, grad_clip=0.0), shakespeare, log=lines.append)
    iteration_lines = [line for line in lines if line.startswith("iter ")]
    assert len(iteration_lines) == 3
    for line in iteration_lines:
        for part in ("loss", "lr", "ms/iter", "tok/s", "grad norm", "update/param", "mfu"):
            assert part in line
    assumed = f"of {config_module.assumed_peak_flops(tiny(tmp_path)) / 1e9:,.0f} GFLOP/s"
    assert assumed in iteration_lines[0]
    lines = []
    train(tiny(tmp_path / "b", max_iters=1, peak_flops=1e12), shakespeare, log=lines.append)
    assert "of 1,000 GFLOP/s" in next(line for line in lines if line.startswith("iter 0:"))


def test_the_learning_rate_follows_the_schedule(tmp_path, shakespeare):
    config = tiny(tmp_path, max_iters=7, warmup_iters=3, lr_decay_iters=6, learning_rate=1e-2, min_lr=1e-3)
    result = train(config, shakespeare, log=quiet)
    # the last value set (step 2.1 of iteration 6, the last update) is the schedule's: min_lr from lr_decay_iters on
    for group in result.optimizer.param_groups:
        assert group["lr"] == get_lr(6, 1e-2, 3, 6, 1e-3) == 1e-3
    constant = train(replace(config, out_dir=str(tmp_path / "constant"), decay_lr=False), shakespeare, log=quiet)
    assert all(group["lr"] == 1e-2 for group in constant.optimizer.param_groups)


def test_presets_are_nanogpts_shakespeare_char():
    cpu, gpu = cpu_preset(), gpu_preset()
    assert (cpu.n_layer, cpu.n_head, cpu.n_embd, cpu.block_size, cpu.batch_size) == (4, 4, 128, 64, 12)
    assert (cpu.max_iters, cpu.decay_iters, cpu.dropout, cpu.eval_iters, cpu.device) == (2000, 2000, 0.0, 20, "cpu")
    assert (gpu.n_layer, gpu.n_head, gpu.n_embd, gpu.block_size, gpu.batch_size) == (6, 6, 384, 256, 64)
    assert (gpu.max_iters, gpu.decay_iters, gpu.dropout, gpu.eval_iters, gpu.device) == (5000, 5000, 0.2, 200,
                                                                                         "cuda")
    assert cpu.lr_decay_iters is None and gpu.lr_decay_iters is None  # the cosine follows max_iters
    for preset in (cpu, gpu):
        assert (preset.learning_rate, preset.min_lr, preset.beta2, preset.warmup_iters) == (1e-3, 1e-4, 0.99, 100)
        assert (preset.eval_interval, preset.gradient_accumulation_steps) == (250, 1)


@pytest.mark.parametrize("overrides, message", [
    (dict(batch_size=0), "batch_size must be at least 1"),
    (dict(learning_rate=math.nan, decay_lr=False), r"learning_rate must be a finite number, got nan \(--learning-rate\)"),
    (dict(learning_rate=math.inf), r"learning_rate must be a finite number, got inf"),
    (dict(learning_rate=-1.0, decay_lr=False), r"learning_rate must be > 0, got -1.0 \(--learning-rate\)"),
    (dict(weight_decay=math.nan), r"weight_decay must be a finite number, got nan \(--weight-decay\)"),
    (dict(grad_clip=math.nan), r"grad_clip must be a finite number, got nan \(--grad-clip\)"),
    (dict(beta1=1.5), r"beta1 must be in \[0, 1\), got 1.5 \(--beta1\)"),
    (dict(beta2=-1.0), r"beta2 must be in \[0, 1\), got -1.0 \(--beta2\)"),
    (dict(warmup_iters=-10), r"warmup_iters must be >= 0, got -10 \(--warmup-iters\)"),
    (dict(seed=-1), r"seed must be >= 0, got -1 \(--seed\)"),
    (dict(n_head=0), r"n_head must be at least 1, got 0 \(--n-head\)"),
    (dict(out_dir=""), r"out_dir must be a folder's path, not empty, got '' \(--out-dir\)"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0 \(--dropout\)"),
    (dict(grad_clip=-1.0), "grad_clip must be >= 0"),
    (dict(warmup_iters=10, lr_decay_iters=5), "lr_decay_iters .5. must be greater than warmup_iters .10."),
    (dict(min_lr=1.0), "min_lr <= learning_rate"),
    (dict(init_from="gpt2"), "init_from must be 'scratch' or 'resume'"),
    (dict(device="tpu"), "device must be one of"),
    (dict(peak_flops=0.0), "peak_flops must be positive"),
])
def test_bad_settings_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides)


@pytest.mark.parametrize("overrides, message", [
    (dict(batch_size="12"), r"batch_size must be an integer, got '12' \(--batch-size\)"),
    (dict(max_iters=2.5), r"max_iters must be an integer, got 2.5"),
    (dict(decay_lr="no"), r"decay_lr must be a bool, got 'no'"),
    (dict(learning_rate="fast"), r"learning_rate must be a number, got 'fast'"),
])
def test_settings_of_the_wrong_type_are_named(overrides, message):
    with pytest.raises(TypeError, match=message):
        TrainConfig(**overrides)


def test_the_cosine_follows_max_iters_unless_set(tmp_path, shakespeare):
    assert TrainConfig(max_iters=50, warmup_iters=10).decay_iters == 50
    assert TrainConfig(max_iters=50, warmup_iters=10, lr_decay_iters=300).decay_iters == 300
    assert TrainConfig(max_iters=5, warmup_iters=10).decay_iters == 11  # never inside the warmup
    # a short run decays over its own length: its last update is at min_lr's end of the cosine, not at the start
    result = train(tiny(tmp_path, max_iters=12, warmup_iters=2, lr_decay_iters=None, log_interval=1,
                        learning_rate=1e-2, min_lr=1e-3), shakespeare, log=quiet)
    assert result.optimizer.param_groups[0]["lr"] == pytest.approx(get_lr(11, 1e-2, 2, 12, 1e-3))
    assert get_lr(11, 1e-2, 2, 12, 1e-3) < 2e-3
    assert load_checkpoint(tmp_path / "ckpt.npz").train_config["lr_decay_iters"] == 12  # saved as used


def test_a_run_that_is_all_warmup_or_oversubscribed_says_so(tmp_path, shakespeare):
    from tinygrad_ed.distributed.local import usable_cores
    lines, workers = [], usable_cores() + 1   # one more than this machine has
    train(tiny(tmp_path, max_iters=2, warmup_iters=5, lr_decay_iters=None, workers=workers), shakespeare,
          log=lines.append)
    notes = [line for line in lines if line.startswith("note: ")]
    assert any("the whole run is warmup" in note and "--warmup-iters" in note for note in notes)
    assert any(f"workers {workers} on {workers - 1} usable CPU cores" in note for note in notes)


# ---- gpt/progress.py and gpt/plot.py ----

def test_text_plot_draws_each_series_with_its_marker():
    plot = text_plot({"train": ([0, 1, 2], [4.0, 3.0, 2.0]), "val": ([0, 2], [4.2, 2.5])}, width=20, height=5,
                     title="loss")
    lines = plot.split("\n")
    assert lines[0] == "loss" and len(lines) == 1 + 5 + 3
    assert lines[1].startswith("4.200 |") and lines[5].startswith("2.000 |")
    grid = [line.split("|", 1)[1] for line in lines[1:6]]
    assert grid[0][0] == "*"        # val's 4.2 at x=0: the top left corner
    assert grid[4][19] == "."       # train's 2.0 at x=2: the bottom right corner
    assert grid[2][10] == "."       # train's 3.0 at x=1: (4.2 - 3.0) / 2.2 · 4 ≈ 2 rows down, half way across
    assert ". train" in lines[-1] and "* val" in lines[-1]
    assert lines[-2].split() == ["0", "2"]


def test_text_plot_skips_non_finite_points_and_handles_empty_input():
    plot = text_plot({"train": ([0, 1], [3.0, math.nan])}, width=10, height=3)
    grid = "".join(line.split("|", 1)[1] for line in plot.split("\n")[1:4])
    assert grid.count(".") == 1  # the one finite point
    assert plot.split("\n")[1].startswith("3.500 |") and plot.split("\n")[3].startswith("2.500 |")
    assert "nothing to plot" in text_plot({"train": ([], [])})
    with pytest.raises(ValueError, match="2 x values and 1 y values"):
        text_plot({"train": ([0, 1], [1.0])})


def test_progress_bar_redraws_in_a_terminal_and_prints_lines_elsewhere():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    bar = ProgressBar(total=4, stream=terminal)
    bar.update(4, loss=1.5)
    bar.close()
    assert terminal.getvalue().startswith("\r[") and "4/4 last logged loss 1.5000" in terminal.getvalue()

    log_file = io.StringIO()
    bar = ProgressBar(total=100, start=50, stream=log_file, plain_every_s=0.0)
    bar.update(51)
    bar.update(52)
    assert log_file.getvalue().splitlines()[1].startswith("[############............] 52/100 elapsed")
    log_file = io.StringIO()
    bar = ProgressBar(total=100, start=50, stream=log_file, plain_every_s=3600)
    bar.update(51)   # within plain_every_s of the start: not printed
    bar.update(100)  # the end always is
    lines = log_file.getvalue().splitlines()
    assert len(lines) == 1 and "100/100" in lines[0] and "eta 0s" in lines[0] and "\r" not in log_file.getvalue()


def test_format_duration():
    assert [format_duration(s) for s in (5, 65, 3723, math.nan)] == ["5s", "1m05s", "1h02m03s", "?"]


def test_the_update_ratio_ignores_all_zero_parameters(tmp_path, shakespeare):
    # with bias=True the biases start at zero: ‖Δp‖ / ‖p‖ would be infinite for them on the first step
    lines = []
    train(tiny(tmp_path, bias=True, max_iters=1), shakespeare, log=lines.append)
    ratio = float(next(line for line in lines if line.startswith("iter 0:")).split("update/param ")[1].split(",")[0])
    assert 1e-4 < ratio < 1e-1


def test_gradient_accumulation_averages_like_one_larger_batch(tmp_path, shakespeare):
    # two micro-batches of 2 draw the same 4 windows as one batch of 4 (the generator continues its stream), so
    # with the loss divided by the number of micro-steps (step 2.2) the accumulated gradient is the same mean
    def first_gradient_norm(out_dir, **overrides):
        lines = []
        train(tiny(out_dir, max_iters=1, **overrides), shakespeare, log=lines.append)
        return float(next(line for line in lines if line.startswith("iter 0:")).split("grad norm ")[1].split(",")[0])

    one_batch = first_gradient_norm(tmp_path / "one", batch_size=4)
    accumulated = first_gradient_norm(tmp_path / "two", batch_size=2, gradient_accumulation_steps=2)
    assert accumulated == pytest.approx(one_batch, abs=2e-3)  # the log prints 3 decimals


def test_a_failed_save_is_reported_and_the_next_evaluation_saves_again(tmp_path, shakespeare, monkeypatch):
    real_save, calls = checkpoint.save_checkpoint, []

    def disk_full_once(path, *args):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real_save(path, *args)

    monkeypatch.setattr(checkpoint, "save_checkpoint", disk_full_once)
    lines = []
    result = train(tiny(tmp_path, max_iters=4, eval_interval=2, always_save_checkpoint=True), shakespeare,
                   log=lines.append)
    warning = next(line for line in lines if line.startswith("warning: could not save"))
    assert "No space left on device" in warning and "Training goes on" in warning
    assert result.iter_num == 4 and result.saved_at == [4] and result.save_error is None
    assert load_checkpoint(tmp_path / "ckpt.npz").iter_num == 4

    def disk_always_full(path, *args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_checkpoint", disk_always_full)
    result = train(tiny(tmp_path / "full", max_iters=2, eval_interval=2, always_save_checkpoint=True), shakespeare,
                   log=quiet)
    assert result.saved_at == [] and "iteration 2: could not save" in result.save_error


def test_resuming_a_finished_run_says_how_to_go_on(tmp_path, shakespeare):
    train(tiny(tmp_path, max_iters=2, eval_interval=2, always_save_checkpoint=True), shakespeare, log=quiet)
    with pytest.raises(training.NothingToTrain, match=r"iteration 2 and max_iters is 2: nothing to train; .*"
                                                       r"larger --max-iters.*--eval-only"):
        train(tiny(tmp_path, max_iters=2, init_from="resume"), shakespeare, log=quiet)
    assert len(train(tiny(tmp_path, max_iters=2, init_from="resume", eval_only=True), shakespeare,
                     log=quiet).evals) == 1


def test_a_fresh_run_names_the_checkpoints_kept_in_its_out_dir(tmp_path, shakespeare):
    for _ in range(2):
        train(tiny(tmp_path, max_iters=2, eval_interval=2, always_save_checkpoint=True), shakespeare, log=quiet)
    lines = []
    train(tiny(tmp_path, max_iters=2, eval_interval=2, always_save_checkpoint=True), shakespeare, log=lines.append)
    assert any(line.startswith(f"note: {tmp_path} keeps 1 earlier run's checkpoint (ckpt-previous-*.npz; the "
                               f"newest: ckpt-previous-") for line in lines)
    assert len(list(tmp_path.glob("ckpt-previous-*.npz"))) == 2
