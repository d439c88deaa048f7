"""The run's health as pictures and TensorBoard logs (issue 16): health.png beside the checkpoint, drawn from the
numbers the log lines print (gpt/progress.py's RunHealth, gpt/plot.py), and --tensorboard's event file, read back
record by record and compared with what the run printed and returned (gpt/tensorboard_log.py)."""
import math
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpt import progress
from gpt.config import TrainConfig
from gpt.data import CharDataset
from gpt.plot import plot_available, save_health_png, save_png
from gpt.progress import RunHealth
from gpt.tensorboard_log import TensorBoardError
from gpt.training import train
from tinygrad_ed import mixed_precision

REPO = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LOG_LINE = re.compile(r"iter (\d+): loss (\S+), lr (\S+), (\S+) ms/iter, \d+ tok/s, grad norm (\S+), "
                      r"update/param (\S+),")


@pytest.fixture(scope="module")
def shakespeare():
    return CharDataset()


def tiny(out_dir, **overrides):
    """1 layer, 16 wide, 16 characters: a run of 20 iterations takes well under a second."""
    settings = dict(out_dir=str(out_dir), n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, eval_iters=2,
                    eval_interval=10, log_interval=2, max_iters=20, warmup_iters=2, lr_decay_iters=40, dropout=0.0,
                    device="cpu", workers=1)
    return TrainConfig(**{**settings, **overrides})


def printed(lines):
    """The log lines' numbers, as text: {iter: (loss, lr, ms/iter, grad norm, update/param)}."""
    return {int(match[1]): match.groups()[1:] for match in map(LOG_LINE.match, lines) if match}


def as_printed(health):
    """The recorded series formatted as the log line formats them."""
    return {iteration: (f"{loss:.4f}", f"{lr:.2e}", f"{ms:.1f}", f"{norm:.3f}", f"{ratio:.1e}")
            for iteration, loss, lr, ms, norm, ratio in zip(health.iters, health.losses, health.lrs,
                                                            health.ms_per_iter, health.grad_norms,
                                                            health.update_ratios)}


# ---- health.png ----

def test_the_health_record_is_what_the_run_printed(tmp_path, shakespeare):
    lines = []
    # grad_clip 0.1 is below every norm of this run: each log line's step is clipped
    result = train(tiny(tmp_path, grad_clip=0.1, health_png=False), shakespeare, log=lines.append)
    health = result.health
    assert health.iters == [iteration for iteration, _ in result.logs] == list(range(0, 20, 2))
    assert health.losses == [loss for _, loss in result.logs]
    assert as_printed(health) == printed(lines)
    assert health.evals == result.evals and [iteration for iteration, _, _ in health.evals] == [0, 10, 20]
    # after clipping, measured on the gradients the update used: the threshold, as clipping's factor makes it
    assert all(norm > 0.1 for norm in health.grad_norms)
    assert health.clipped_norms == pytest.approx([0.1 * norm / (norm + 1e-6) for norm in health.grad_norms],
                                                 rel=1e-5)
    assert health.grad_clip == 0.1 and health.skipped == []
    assert not (tmp_path / "health.png").exists()  # health_png=False


def test_without_clipping_the_norm_after_is_the_norm_before(tmp_path, shakespeare):
    health = train(tiny(tmp_path, grad_clip=0.0, max_iters=6, health_png=False), shakespeare,
                   log=lambda line: None).health
    assert health.clipped_norms == pytest.approx(health.grad_norms, rel=1e-6)


def test_a_skipped_float16_step_is_recorded(tmp_path, shakespeare, monkeypatch):
    # float16 on numpy, as tests/test_training.py runs it: an inf gradient at iteration 3, which the scaler skips
    real_backward = mixed_precision.HalfLoss.backward

    def backward_with_an_inf_at_iteration_3(self, grad):
        grads = real_backward(self, grad)
        if len(calls) == 3:
            grads[0][0, 0] = np.inf
        calls.append(None)
        return grads

    calls = []
    monkeypatch.setattr(mixed_precision.HalfLoss, "backward", backward_with_an_inf_at_iteration_3)
    config = tiny(tmp_path, max_iters=8, log_interval=1, eval_interval=8, health_png=False)
    config.dtype = "float16"
    lines = []
    with np.errstate(over="ignore", invalid="ignore"):
        health = train(config, shakespeare, log=lines.append).health
    assert health.skipped == [3]
    assert health.update_ratios[3] == 0.0 and math.isinf(health.grad_norms[3])
    assert as_printed(health) == printed(lines)


def test_health_png_is_written_beside_the_checkpoint(tmp_path, shakespeare):
    pytest.importorskip("matplotlib")
    lines = []
    train(tiny(tmp_path), shakespeare, log=lines.append)
    assert (tmp_path / "ckpt.npz").is_file()
    assert (tmp_path / "health.png").read_bytes()[:8] == PNG_SIGNATURE
    assert not any(line.startswith("note: matplotlib") for line in lines)
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []  # drawn whole, then renamed


def test_a_resumed_run_draws_the_whole_history(tmp_path, shakespeare):
    pytest.importorskip("matplotlib")
    straight = train(tiny(tmp_path / "straight"), shakespeare, log=lambda line: None).health
    train(tiny(tmp_path / "halves", max_iters=10), shakespeare, log=lambda line: None)
    second = train(tiny(tmp_path / "halves", init_from="resume"), shakespeare, log=lambda line: None)
    assert second.health.iters == list(range(10, 20, 2))     # TrainResult: this session's log lines
    drawn = RunHealth.load(tmp_path / "halves" / "health.json")  # the picture: the whole run, as one straight run
    assert RunHealth.load(tmp_path / "straight" / "health.json") == straight
    for name in RunHealth.SERIES:
        if name != "ms_per_iter":                              # the only number that depends on the machine
            assert getattr(drawn, name) == getattr(straight, name), name
    assert drawn.evals == straight.evals and drawn.skipped == straight.skipped == []


def test_an_unreadable_health_record_costs_only_the_pictures_past(tmp_path, shakespeare):
    pytest.importorskip("matplotlib")
    train(tiny(tmp_path, max_iters=10), shakespeare, log=lambda line: None)
    (tmp_path / "health.json").write_text('{"iters": [0, 2], "losses": [4.1]}')
    lines = []
    train(tiny(tmp_path, init_from="resume"), shakespeare, log=lines.append)
    assert any(line.startswith("note: ") and "health.json is not a health record: its series have different "
               "lengths; health.png starts at iteration 10" in line for line in lines)
    assert RunHealth.load(tmp_path / "health.json").iters == list(range(10, 20, 2))


def test_health_png_is_redrawn_at_evaluations_only_every_so_often(tmp_path, shakespeare, monkeypatch):
    pytest.importorskip("matplotlib")
    from gpt import plot
    drawn = []
    real_save = plot.save_health_png
    monkeypatch.setattr(plot, "save_health_png", lambda health, path: drawn.append(list(health.iters))
                        or real_save(health, path))
    train(tiny(tmp_path / "a", max_iters=20, eval_interval=5), shakespeare, log=lambda line: None)
    assert len(drawn) == 1 and drawn[0][-1] == 18       # a short run: once, at the end
    drawn.clear()
    monkeypatch.setattr(progress, "HEALTH_REDRAW_S", 0.0)
    train(tiny(tmp_path / "b", max_iters=20, eval_interval=5), shakespeare, log=lambda line: None)
    # at every evaluation (0, 5, 10, 15, 20), with what was logged by then, and once more at the end
    assert [iters[-1] if iters else None for iters in drawn] == [None, 4, 8, 14, 18, 18]


def test_health_png_draws_skipped_steps_and_infinite_norms(tmp_path):
    pytest.importorskip("matplotlib")
    health = RunHealth(iters=[0, 1, 2, 3], losses=[4.2, 4.1, math.inf, 3.9], lrs=[1e-4, 2e-4, 3e-4, 4e-4],
                       grad_norms=[2.0, 1.5, math.inf, 0.5], clipped_norms=[1.0, 1.0, math.nan, 0.5],
                       update_ratios=[3e-3, 2e-3, 0.0, 1e-3], ms_per_iter=[5.0] * 4, skipped=[2],
                       evals=[(0, 4.2, 4.2), (3, 3.9, 4.0)], grad_clip=1.0)
    assert save_health_png(health, str(tmp_path / "deep" / "health.png")) is True
    assert (tmp_path / "deep" / "health.png").read_bytes()[:8] == PNG_SIGNATURE
    assert save_health_png(RunHealth(), str(tmp_path / "empty.png")) is True  # a run stopped before its first log


def test_without_matplotlib_the_run_trains_and_says_so_once(tmp_path, shakespeare, monkeypatch):
    # what an import sees where matplotlib is not installed (its submodules too: earlier tests imported them)
    for name in [name for name in sys.modules if name.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    lines = []
    result = train(tiny(tmp_path), shakespeare, log=lines.append)
    notes = [line for line in lines if line.startswith("note:")]
    assert notes == ["note: matplotlib is not installed, so health.png is not drawn (pip install -e '.[plot]')"]
    assert result.iter_num == 20 and (tmp_path / "ckpt.npz").is_file() and not (tmp_path / "health.png").exists()
    assert save_health_png(result.health, str(tmp_path / "h.png")) is False
    assert save_png({"loss": ([0], [1.0])}, str(tmp_path / "l.png")) is False


# ---- TensorBoard ----

def read_events(folder):
    """Every event in the folder's event files, read as TensorBoard reads them: TFRecords (the length, its masked
    CRC-32C, the Event proto, its masked CRC-32C), each CRC checked. Returns {file name: [Event]}."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c
    files = {}
    for name in sorted(os.listdir(folder)):
        if not name.startswith("events.out.tfevents."):
            continue
        data, events, at = (Path(folder) / name).read_bytes(), [], 0
        while at < len(data):
            header = data[at:at + 8]
            (length,), (header_crc,) = struct.unpack("<Q", header), struct.unpack("<I", data[at + 8:at + 12])
            assert header_crc == masked_crc32c(header)
            record = data[at + 12:at + 12 + length]
            (record_crc,) = struct.unpack("<I", data[at + 12 + length:at + 16 + length])
            assert record_crc == masked_crc32c(record)
            events.append(Event.FromString(record))
            at += 16 + length
        files[name] = events
    return files


def summaries(events, kind):
    """{tag: {step: value}} of the summaries of one kind: "simple_value" (a scalar) or "histo" (a histogram)."""
    found = {}
    for event in events:
        for value in event.summary.value:
            if value.HasField(kind):
                found.setdefault(value.tag, {})[event.step] = getattr(value, kind)
    return found


def scalars(events):
    return summaries(events, "simple_value")


def histograms(events):
    return summaries(events, "histo")


def float32(values):
    """{step: value} as the event file stores a scalar: a float32."""
    return {step: float(np.float32(value)) for step, value in values}


def test_tensorboard_logs_what_the_run_printed(tmp_path, shakespeare):
    pytest.importorskip("tensorboardX")
    lines = []
    result = train(tiny(tmp_path / "out", tensorboard=str(tmp_path / "tb"), eval_interval=5, max_iters=10,
                        health_png=False), shakespeare, log=lines.append)
    (events,) = read_events(tmp_path / "tb").values()   # one run, one file
    found, health = scalars(events), result.health
    assert found["train/loss"] == float32(result.logs)
    assert found["eval/train"] == float32((step, train_loss) for step, train_loss, _ in result.evals)
    assert found["eval/val"] == float32((step, val_loss) for step, _, val_loss in result.evals)
    for tag, series in (("train/lr", health.lrs), ("train/grad_norm", health.grad_norms),
                        ("train/grad_norm_clipped", health.clipped_norms), ("train/update_ratio", health.update_ratios),
                        ("train/ms_per_iter", health.ms_per_iter)):
        assert found[tag] == float32(zip(health.iters, series)), tag
    assert found["train/skipped_steps"] == float32((step, 0) for step in health.iters)
    assert set(found["train/mfu"]) == set(found["train/tokens_per_s"]) == set(health.iters)
    # and what the log lines printed, to their precision
    assert {step: (f"{found['train/loss'][step]:.4f}", f"{found['train/lr'][step]:.2e}",
                   f"{found['train/grad_norm'][step]:.3f}") for step in health.iters} \
        == {step: (loss, lr, norm) for step, (loss, lr, _, norm, _) in printed(lines).items()}

    # every eval_interval, each parameter under nanoGPT's name: its weights and the gradients of that update
    names = [name for name, _ in result.model.named_parameters()]
    assert "transformer.h.0.attn.c_attn.weight" in names and "transformer.wte.weight" in names
    found = histograms(events)
    assert set(found) == {f"weights/{name}" for name in names} | {f"grads/{name}" for name in names}
    for name in names:
        assert set(found[f"weights/{name}"]) == {0, 5, 10}     # every evaluation, the last one included
        assert set(found[f"grads/{name}"]) == {0, 5}           # the updates that follow an evaluation
    weights = dict(result.model.named_parameters())["transformer.wte.weight"].numpy()
    final = found["weights/transformer.wte.weight"][10]        # the model as the run returned it
    assert final.num == weights.size and final.min == pytest.approx(weights.min()) \
        and final.max == pytest.approx(weights.max()) and final.sum == pytest.approx(weights.sum(), abs=1e-4)


def test_an_interrupted_run_loses_no_event_and_draws_its_picture(tmp_path, shakespeare, monkeypatch):
    pytest.importorskip("tensorboardX")
    from gpt import training
    real_lr = training.scheduled_lr

    def ctrl_c_at_iteration_7(config, iter_num):
        if iter_num == 7:
            raise KeyboardInterrupt
        return real_lr(config, iter_num)

    monkeypatch.setattr(training, "scheduled_lr", ctrl_c_at_iteration_7)
    lines = []
    with pytest.raises(training.TrainingInterrupted, match="interrupted at iteration 7"):
        train(tiny(tmp_path / "out", tensorboard=str(tmp_path / "tb"), eval_interval=5), shakespeare,
              log=lines.append)
    (events,) = read_events(tmp_path / "tb").values()   # the writer was closed on the way out: all of it is there
    logged = scalars(events)["train/loss"]
    assert sorted(logged) == [0, 2, 4, 6]
    assert [f"{logged[step]:.4f}" for step in sorted(logged)] == [loss for loss, *_ in printed(lines).values()]
    assert sorted(scalars(events)["eval/val"]) == [0, 5]
    if plot_available():
        assert RunHealth.load(tmp_path / "out" / "health.json").iters == [0, 2, 4, 6]
        assert (tmp_path / "out" / "health.png").read_bytes()[:8] == PNG_SIGNATURE


def test_with_two_ranks_only_rank_0_writes_one_event_file(tmp_path, shakespeare):
    pytest.importorskip("tensorboardX")
    if not hasattr(os, "fork"):
        pytest.skip("the local backend forks its ranks")
    result = train(tiny(tmp_path / "out", workers=2, tensorboard=str(tmp_path / "tb"), max_iters=4, eval_interval=2,
                        health_png=False), shakespeare, log=lambda line: None)
    files = read_events(tmp_path / "tb")
    assert len(files) == 1 and sorted(os.listdir(tmp_path / "tb")) == list(files)
    (events,) = files.values()
    assert scalars(events)["train/loss"] == float32(result.logs)


def test_a_bad_tensorboard_folder_is_refused_before_training(tmp_path, shakespeare):
    pytest.importorskip("tensorboardX")
    (tmp_path / "a-file").write_text("not a folder")
    for folder, message in ((tmp_path / "a-file", "is a file, not a folder"),
                            (tmp_path / "a-file" / "below", "cannot write TensorBoard event files")):
        with pytest.raises(TensorBoardError, match=message):
            train(tiny(tmp_path / "out", tensorboard=str(folder)), shakespeare, log=lambda line: None)
    assert not (tmp_path / "out").exists()  # refused before the out_dir was even made


def test_without_tensorboardx_the_flag_is_refused_naming_the_extra(tmp_path, shakespeare, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(TensorBoardError, match=re.escape("tensorboardX is not installed (pip install -e "
                                                         "'.[tensorboard]')")):
        train(tiny(tmp_path / "out", tensorboard=str(tmp_path / "tb")), shakespeare, log=lambda line: None)
    assert not (tmp_path / "out").exists() and not (tmp_path / "tb").exists()


def test_an_empty_tensorboard_folder_name_is_refused():
    with pytest.raises(ValueError, match=r"tensorboard must be a folder's path, not empty, got ' ' \(--tensorboard\)"):
        tiny("out", tensorboard=" ")


# ---- the command line ----

TRAIN = str(REPO / "examples" / "train_char_gpt.py")
TINY_FLAGS = ["--device", "cpu", "--max-iters", "4", "--eval-interval", "2", "--eval-iters", "2", "--batch-size",
              "2", "--block-size", "16", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--out-dir", "out",
              "--sample-tokens", "0", "--log-interval", "1"]


def run(*args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, TRAIN, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_command_line_writes_events_and_a_resume_does_not_inherit_the_folder(tmp_path):
    pytest.importorskip("tensorboardX")
    first = run(*TINY_FLAGS, "--tensorboard", "tb", "--always-save-checkpoint", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "tensorboard = 'tb'" in first.stdout
    (events,) = read_events(tmp_path / "tb").values()
    logged = scalars(events)["train/loss"]
    assert [f"{logged[step]:.4f}" for step in sorted(logged)] == re.findall(r"iter \d+: loss (\S+),", first.stdout)
    # a machine/output setting: a resumed run writes TensorBoard events only where its own command line says
    second = run("--resume", "--out-dir", "out", "--max-iters", "6", "--sample-tokens", "0", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "tensorboard = None" in second.stdout and len(read_events(tmp_path / "tb")) == 1


def test_the_command_line_refuses_a_bad_tensorboard_folder_before_training(tmp_path):
    pytest.importorskip("tensorboardX")
    (tmp_path / "a-file").write_text("")
    result = run(*TINY_FLAGS, "--tensorboard", "a-file/tb", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: cannot write TensorBoard event files in 'a-file/tb'" in result.stderr
    assert "number of parameters" not in result.stdout and not (tmp_path / "out").exists()


# ---- examples/experiments.py: one PNG per experiment ----

def experiments_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("experiments", REPO / "examples" / "experiments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_experiments_save_each_experiments_curves(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    experiments_module().main(["--iters", "2", "--seeds", "1", "--out-dir", str(tmp_path / "curves")])
    out = capsys.readouterr().out
    for experiment in ("lr", "optim", "accum", "init-loss"):
        path = tmp_path / "curves" / f"{experiment}.png"
        assert path.read_bytes()[:8] == PNG_SIGNATURE, experiment
        assert f"curves saved to {path}" in out


def test_experiments_without_matplotlib_say_so_once_and_run(tmp_path, capsys, monkeypatch):
    for name in [name for name in sys.modules if name.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    experiments_module().main(["accum", "--out-dir", str(tmp_path / "curves")])
    out = capsys.readouterr().out
    assert out.count("matplotlib") == 1 and out.startswith("note: matplotlib is not installed, so the curves are not "
                                                           "saved as PNGs (pip install -e '.[plot]')")
    assert "max abs difference" in out and not (tmp_path / "curves").exists()


def test_experiments_refuse_an_out_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit) as exited:
        experiments_module().main(["accum", "--out-dir", str(tmp_path / "a-file")])
    assert exited.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err


def test_under_mpiexec_only_rank_0_writes(tmp_path):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("mpi4py")
    import shutil
    if shutil.which("mpiexec") is None:
        pytest.skip("needs mpiexec: pip install -e '.[mpi]'")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(["mpiexec", "-n", "2", sys.executable, TRAIN, *TINY_FLAGS, "--tensorboard", "tb"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "workers = 2" in result.stdout
    (events,) = read_events(tmp_path / "tb").values()
    logged = scalars(events)["train/loss"]
    assert [f"{logged[step]:.4f}" for step in sorted(logged)] == re.findall(r"iter \d+: loss (\S+),", result.stdout)
    assert (tmp_path / "out" / "health.png").exists() == plot_available()


@pytest.mark.cuda
def test_on_cuda_the_numbers_and_histograms_come_to_the_host(tmp_path, shakespeare, cuda):
    # a GPU, or the cupy stand-in (tests/conftest.py): the recorded numbers are Python floats, the histograms numpy's
    pytest.importorskip("tensorboardX")
    result = train(tiny(tmp_path / "out", device=cuda, max_iters=4, eval_interval=2, tensorboard=str(tmp_path / "tb"),
                        health_png=False), shakespeare, log=lambda line: None)
    health = result.health
    assert all(type(value) is float for name in ("losses", "grad_norms", "clipped_norms", "update_ratios")
               for value in getattr(health, name))
    (events,) = read_events(tmp_path / "tb").values()
    assert scalars(events)["train/loss"] == float32(result.logs)
    found = histograms(events)
    assert set(found["grads/transformer.wte.weight"]) == {0, 2}
    assert set(found["weights/transformer.wte.weight"]) == {0, 2, 4}


def test_histograms_leave_out_the_infinite_gradients_of_a_skipped_step(tmp_path):
    pytest.importorskip("tensorboardX")
    from gpt.tensorboard_log import TensorBoardLog
    log = TensorBoardLog(str(tmp_path))
    log.histograms(7, "grads", [("a", np.array([1.0, np.inf, -2.0, np.nan])), ("b", np.array([np.inf]))])
    log.close()
    log.close()  # once is enough; twice does no harm
    (events,) = read_events(tmp_path).values()
    found = histograms(events)
    assert set(found) == {"grads/a"}
    assert (found["grads/a"][7].num, found["grads/a"][7].min, found["grads/a"][7].max) == (2, -2.0, 1.0)
