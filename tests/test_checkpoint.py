"""Checkpoints (gpt/checkpoint.py): a faithful round trip without pickle, an atomic write that survives a crash,
and a clear CheckpointError for every way a file can be missing, damaged or wrong."""
import json
import os
import signal

import numpy as np
import pytest

from gpt import checkpoint as checkpoint_module
from gpt.checkpoint import CheckpointError, load_checkpoint, restore, save_checkpoint
from gpt.data import CharTokenizer
from gpt.config import TrainConfig
from gpt.model import GPT, GPTConfig
from gpt.step import configure_optimizers, train_step
from optim import GradScaler
from tinygrad_ed import Tensor

CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CONFIG = GPTConfig(block_size=8, vocab_size=len(CHARS), n_layer=1, n_head=2, n_embd=16, bias=False)


def trained_objects(seed=0, steps=2):
    """A tiny model and its AdamW after a few steps, so the optimizer has m, v and a step count to save."""
    model = GPT(CONFIG, seed=seed)
    optimizer = configure_optimizers(model, weight_decay=0.1, learning_rate=1e-2, betas=(0.9, 0.999))
    rng = np.random.default_rng(seed)

    def get_batch():
        ids = rng.integers(0, CONFIG.vocab_size, size=(2, 9))
        return Tensor(ids[:, :-1]), Tensor(ids[:, 1:])

    batch = get_batch()
    for _ in range(steps):
        batch = train_step(model, optimizer, batch, get_batch, lr=1e-2).next_batch
    return model, optimizer


def save(path, model, optimizer, scaler=None, iter_num=7, best_val_loss=2.5):
    generators = {"batch": np.random.default_rng(3).bit_generator.state, "dropout": None}
    return save_checkpoint(path, model, optimizer, scaler or GradScaler(enabled=False), iter_num, best_val_loss,
                           TrainConfig(), CONFIG, CharTokenizer(CHARS), generators)


@pytest.fixture
def saved(tmp_path):
    model, optimizer = trained_objects()
    path = tmp_path / "ckpt.npz"
    save(path, model, optimizer)
    return path, model, optimizer


def test_round_trip_restores_weights_optimizer_and_metadata(saved):
    path, model, optimizer = saved
    checkpoint = load_checkpoint(path, model_config=CONFIG)
    assert checkpoint.iter_num == 7 and checkpoint.best_val_loss == 2.5
    assert checkpoint.model_config == CONFIG and checkpoint.tokenizer.chars == CHARS
    assert checkpoint.train_config["out_dir"] == TrainConfig().out_dir
    assert checkpoint.generators["batch"] == np.random.default_rng(3).bit_generator.state

    fresh_model, fresh_optimizer = trained_objects(seed=1, steps=1)  # different weights, different state
    restore(checkpoint, fresh_model, fresh_optimizer)
    for name, value in model.state_dict().items():
        assert np.array_equal(fresh_model.state_dict()[name], value), name
    expected, actual = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert expected["param_groups"] == actual["param_groups"]
    assert expected["state"].keys() == actual["state"].keys()
    for index, state in expected["state"].items():
        assert actual["state"][index]["step"] == state["step"] == 2
        for name in ("m", "v"):
            assert np.array_equal(actual["state"][index][name], state[name])


def test_the_file_is_plain_numpy_without_pickle(saved):
    path, _, _ = saved
    with np.load(path, allow_pickle=False) as npz:
        assert "model/transformer.wte.weight" in npz.files
        assert "optimizer/state/0/m" in npz.files and "optimizer/state/0/v" in npz.files
        assert all(npz[key].dtype != object for key in npz.files)
        metadata = json.loads(str(npz["metadata"]))
    assert metadata["format"] == "tinygrad_ed checkpoint" and metadata["iter_num"] == 7
    assert metadata["model_config"]["n_embd"] == 16 and metadata["tokenizer"]["chars"] == CHARS
    assert "lm_head.weight" not in {key.split("/", 1)[1] for key in npz.files if key.startswith("model/")}  # tied


def test_scaler_state_round_trips(tmp_path):
    model, optimizer = trained_objects()
    scaler = GradScaler(init_scale=1024.0)
    save(tmp_path / "ckpt.npz", model, optimizer, scaler=scaler)
    fresh = GradScaler()
    restore(load_checkpoint(tmp_path / "ckpt.npz"), GPT(CONFIG), scaler=fresh)
    assert fresh.get_scale() == 1024.0


def leftovers(directory):
    return sorted(name for name in os.listdir(directory) if name != "ckpt.npz")


def test_a_crash_while_writing_leaves_the_old_checkpoint(saved, monkeypatch):
    path, model, optimizer = saved
    before = path.read_bytes()

    def savez_that_dies_half_way(file, **arrays):
        file.write(b"PK\x03\x04 half of a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.np, "savez", savez_that_dies_half_way)
    other_model, other_optimizer = trained_objects(seed=5)
    with pytest.raises(OSError, match="disk full"):
        save(path, other_model, other_optimizer, iter_num=99)
    assert path.read_bytes() == before
    assert load_checkpoint(path).iter_num == 7
    assert leftovers(path.parent) == []  # the partial temporary file is gone


def test_a_failing_rename_leaves_the_old_checkpoint(saved, monkeypatch):
    path, model, optimizer = saved
    before = path.read_bytes()

    def replace_that_fails(source, target):
        raise OSError("rename failed")

    monkeypatch.setattr(checkpoint_module.os, "replace", replace_that_fails)
    with pytest.raises(OSError, match="rename failed"):
        save(path, model, optimizer, iter_num=99)
    assert path.read_bytes() == before
    assert leftovers(path.parent) == []


def test_an_interrupt_while_writing_leaves_the_old_checkpoint(saved, monkeypatch):
    path, model, optimizer = saved
    before = path.read_bytes()

    def fsync_interrupted(handle):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.os, "fsync", fsync_interrupted)
    with pytest.raises(KeyboardInterrupt):
        save(path, model, optimizer, iter_num=99)
    assert path.read_bytes() == before and leftovers(path.parent) == []


def test_saving_creates_the_directory(tmp_path):
    model, optimizer = trained_objects()
    path = tmp_path / "new" / "dir" / "ckpt.npz"
    save(path, model, optimizer)
    assert load_checkpoint(path).iter_num == 7


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "flipped"])
def test_a_damaged_file_raises_checkpoint_error(saved, damage):
    path, _, _ = saved
    data = path.read_bytes()
    if damage == "truncated":
        data = data[:len(data) // 2]
    elif damage == "garbage":
        data = np.random.default_rng(0).bytes(len(data))
    elif damage == "empty":
        data = b""
    else:  # one byte changed inside the stored weights: the zip's CRC check catches it
        middle = len(data) // 3
        data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="ckpt.npz"):
        load_checkpoint(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"no checkpoint file at .*nothing-here\.npz"):
        load_checkpoint(tmp_path / "nothing-here.npz")


def rewrite(path, change):
    """Rewrite the checkpoint's archive after `change(arrays, metadata)` edits it in place."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    metadata = json.loads(str(arrays.pop("metadata")))
    change(arrays, metadata)
    np.savez(path, metadata=np.array(json.dumps(metadata)), **arrays)


def test_a_missing_weight_raises_checkpoint_error_on_restore(saved):
    path, _, _ = saved
    rewrite(path, lambda arrays, metadata: arrays.pop("model/transformer.h.0.mlp.c_fc.weight"))
    with pytest.raises(CheckpointError, match="transformer.h.0.mlp.c_fc.weight"):
        restore(load_checkpoint(path), GPT(CONFIG))


def test_a_missing_metadata_entry_raises_checkpoint_error(saved):
    path, _, _ = saved
    rewrite(path, lambda arrays, metadata: metadata.pop("tokenizer"))
    with pytest.raises(CheckpointError, match=r"lacks the metadata entries \['tokenizer'\]"):
        load_checkpoint(path)


def test_missing_optimizer_arrays_raise_checkpoint_error(saved):
    path, _, _ = saved
    rewrite(path, lambda arrays, metadata: arrays.pop("optimizer/state/0/v"))
    with pytest.raises(CheckpointError, match="does not fit"):
        model, optimizer = trained_objects()
        restore(load_checkpoint(path), model, optimizer)


def test_an_archive_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "ckpt.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="no 'metadata' entry"):
        load_checkpoint(path)
    np.savez(path, stuff=np.array([{"a": 1}], dtype=object))  # a pickled object array
    with pytest.raises(CheckpointError, match="ckpt.npz"):
        load_checkpoint(path)


def test_a_different_model_config_is_refused_with_the_differences(saved):
    path, _, _ = saved
    requested = GPTConfig(block_size=8, vocab_size=len(CHARS), n_layer=2, n_head=2, n_embd=16, bias=True)
    with pytest.raises(CheckpointError, match="n_layer: checkpoint 1, requested 2; bias: checkpoint False, "
                                              "requested True"):
        load_checkpoint(path, model_config=requested)
    # dropout only matters while training: a different value is allowed
    load_checkpoint(path, model_config=GPTConfig(**{**vars(CONFIG), "dropout": 0.2}))


# ---- what guards a run's out_dir (CheckpointSaver) ----

def saver_state(model, optimizer):
    """What a run hands CheckpointSaver.save: save_checkpoint's arguments without the path."""
    generators = {"batch": np.random.default_rng(3).bit_generator.state, "dropout": None}
    return (model, optimizer, GradScaler(enabled=False), 7, 2.5, TrainConfig(), CONFIG, CharTokenizer(CHARS),
            generators)


def test_the_message_names_a_single_array_and_a_file_that_is_no_archive(tmp_path):
    np.save(tmp_path / "lone.npy", np.zeros(3))
    os.replace(tmp_path / "lone.npy", tmp_path / "ckpt.npz")
    with pytest.raises(CheckpointError, match=r"holds a single numpy array \(a .npy file\), not a checkpoint"):
        load_checkpoint(tmp_path / "ckpt.npz")
    (tmp_path / "ckpt.npz").write_bytes(np.random.default_rng(1).bytes(1000))
    with pytest.raises(CheckpointError, match=r"is not a checkpoint: a checkpoint is a .npz \(zip\) archive") as caught:
        load_checkpoint(tmp_path / "ckpt.npz")
    assert "allow_pickle" not in str(caught.value)


def test_a_checkpoint_with_nan_weights_is_named_as_such(tmp_path):
    model, optimizer = trained_objects()
    model.transformer.h[0].attn.c_attn.weight.data[0, 0] = np.nan
    save(tmp_path / "ckpt.npz", model, optimizer)
    with pytest.raises(CheckpointError, match=r"holds NaN or infinite weights \(transformer.h.0.attn.c_attn.weight\)"):
        load_checkpoint(tmp_path / "ckpt.npz")


def test_a_missing_checkpoint_names_the_kept_ones(tmp_path):
    (tmp_path / "ckpt-previous-20261202-101010.npz").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no checkpoint file .*keeps earlier runs' checkpoints "
                                              r"\(ckpt-previous-20261202-101010.npz\): copy one to ckpt.npz"):
        load_checkpoint(tmp_path / "ckpt.npz")


def test_an_out_dir_that_cannot_be_written_is_refused_at_the_start(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"cannot save checkpoints in out_dir .*afile/sub.*Not a directory"):
        checkpoint_module.CheckpointSaver(str(tmp_path / "afile" / "sub"), fresh_run=True)

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")   # as a read-only mount answers (root ignores chmod)

    monkeypatch.setattr(checkpoint_module.tempfile, "mkstemp", read_only)
    with pytest.raises(CheckpointError, match=r"cannot save checkpoints in out_dir .*Read-only file system"):
        checkpoint_module.CheckpointSaver(str(tmp_path / "ro"), fresh_run=True)
    checkpoint_module.CheckpointSaver(str(tmp_path / "ro"), fresh_run=False, will_save=False).close()  # eval only


def test_a_second_run_in_the_same_out_dir_is_refused_with_the_first_runs_pid(tmp_path):
    import subprocess
    import sys
    code = ("import sys; from gpt.checkpoint import CheckpointSaver, CheckpointError\n"
            "try: CheckpointSaver(sys.argv[1], fresh_run=True)\n"
            "except CheckpointError as error: print(error); sys.exit(3)\n")
    with checkpoint_module.CheckpointSaver(str(tmp_path), fresh_run=True):
        other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
        assert other.returncode == 3, other.stderr
        assert f"in use by another training run (PID {os.getpid()})" in other.stdout
    # released: the next run takes the folder, and no lock file is left behind
    assert not (tmp_path / ".lock").exists()
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True).returncode == 0


def test_a_lock_and_temporary_files_left_by_a_dead_run_are_cleared(tmp_path):
    (tmp_path / ".lock").write_text("999999\n")                 # a PID file whose process holds no lock any more
    (tmp_path / ".ckpt.npz.k3j2.tmp").write_bytes(b"half")      # what a save killed mid-write leaves
    with checkpoint_module.CheckpointSaver(str(tmp_path), fresh_run=True):
        assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
        assert not (tmp_path / ".ckpt.npz.k3j2.tmp").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_kept_checkpoints_never_overwrite_each_other(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module.time, "strftime", lambda pattern: "20261202-101010")  # one second
    model, optimizer = trained_objects()
    (tmp_path / "ckpt.npz").write_bytes(b"the first run's")
    second = None
    for _ in range(2):  # two more fresh runs in the same second, each saving once
        with checkpoint_module.CheckpointSaver(str(tmp_path), fresh_run=True) as saver:
            saver.save(*saver_state(model, optimizer))
        second = second or (tmp_path / "ckpt.npz").read_bytes()
    assert (tmp_path / "ckpt-previous-20261202-101010.npz").read_bytes() == b"the first run's"
    assert (tmp_path / "ckpt-previous-20261202-101010-2.npz").read_bytes() == second   # the second run's, kept too
    assert load_checkpoint(tmp_path / "ckpt.npz").iter_num == 7


def test_a_failed_save_leaves_the_earlier_checkpoint_in_place(tmp_path, monkeypatch):
    model, optimizer = trained_objects()
    (tmp_path / "ckpt.npz").write_bytes(b"the earlier run's")

    def full_disk(path, arrays):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "_write_atomically", full_disk)
    with checkpoint_module.CheckpointSaver(str(tmp_path), fresh_run=True) as saver:
        with pytest.raises(checkpoint_module.CheckpointSaveError,
                           match=r"could not save .*No space left on device; the previous checkpoint.*still whole"):
            saver.save(*saver_state(model, optimizer))
    assert (tmp_path / "ckpt.npz").read_bytes() == b"the earlier run's"   # --resume still finds it
    kept = list(tmp_path.glob("ckpt-previous-*.npz"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"the earlier run's"


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_an_interrupt_during_a_save_waits_for_the_checkpoint_to_be_whole(tmp_path, monkeypatch):
    savez = np.savez

    def interrupted_savez(file, **arrays):   # Ctrl-C arrives while the checkpoint is being written
        os.kill(os.getpid(), signal.SIGINT)
        savez(file, **arrays)

    monkeypatch.setattr(checkpoint_module.np, "savez", interrupted_savez)
    path = tmp_path / "ckpt.npz"
    with pytest.raises(KeyboardInterrupt):
        checkpoint_module._write_atomically(str(path), {"weights": np.arange(5.0)})
    np.testing.assert_array_equal(np.load(path)["weights"], np.arange(5.0))   # delivered after the save, not in it
