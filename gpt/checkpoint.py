"""Checkpoints: everything a run needs to continue exactly where it stopped (chapter step 2.6: "save checkpoint").

A checkpoint is one numpy .npz file, and nothing in it is pickled (it loads with allow_pickle=False, so opening a
checkpoint from elsewhere cannot run code):
  "model/<parameter name>"        the weights, e.g. "model/transformer.wte.weight"
  "optimizer/state/<i>/<name>"    AdamW's per-parameter arrays ("m", "v") for parameter number i
  "metadata"                      one JSON string: configs, vocabulary, iteration, best val loss, the optimizer's
                                  hyperparameters and step counts, the loss scaler, the random generators' states

It is written atomically: to a temporary file in the same directory, flushed to disk, then renamed over the old
checkpoint in one step (os.replace). A crash at any moment leaves either the old checkpoint or the new one, whole.
A run saves through a CheckpointSaver, which keeps an earlier run's checkpoint instead of overwriting it.
"""
import contextlib
import glob
import json
import os
import shutil
import signal
import tempfile
import threading
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass, fields, is_dataclass

import numpy as np

try:
    import fcntl  # POSIX: the out_dir lock
except ImportError:  # elsewhere a run takes no lock
    fcntl = None

from gpt.data import CharTokenizer
from gpt.model import GPTConfig

CHECKPOINT_NAME = "ckpt.npz"  # in a run's out_dir
FORMAT = "tinygrad_ed checkpoint"
VERSION = 1
METADATA_KEYS = ("format", "version", "iter_num", "best_val_loss", "train_config", "model_config", "tokenizer",
                 "generators", "optimizer", "scaler")
# GPTConfig fields that may change when a run resumes: dropout only acts during training (nanoGPT allows it too)
RESUMABLE_CHANGES = ("dropout",)


class CheckpointError(Exception):
    """A checkpoint that is missing, unreadable, incomplete, or does not fit the model it is loaded into."""


@dataclass
class Checkpoint:
    """What load_checkpoint returns: plain numpy arrays and Python values, not yet loaded into anything."""
    path: str
    iter_num: int              # iterations done: a resumed run continues with this iteration
    best_val_loss: float
    model_state: dict          # parameter name -> numpy array, for model.load_state_dict
    optimizer_state: dict      # {"param_groups": [...], "state": {i: {"step", "m", "v"}}}, as optimizer.state_dict()
    scaler_state: dict         # for GradScaler.load_state_dict; {} when the run did not scale its loss
    train_config: dict         # the TrainConfig of the run that saved it, as a dict
    model_config: GPTConfig
    tokenizer: CharTokenizer
    generators: dict           # name -> numpy bit_generator.state (None for a generator that cannot be saved)


def save_checkpoint(path, model, optimizer, scaler, iter_num, best_val_loss, train_config, model_config, tokenizer,
                    generators):
    """Write a checkpoint to `path` atomically (see the module docstring); returns `path`."""
    write_checkpoint(path, Checkpoint(
        path=path, iter_num=iter_num, best_val_loss=best_val_loss, model_state=model.state_dict(),
        optimizer_state=optimizer.state_dict(), scaler_state=scaler.state_dict(),
        train_config=asdict(train_config) if is_dataclass(train_config) else dict(train_config),
        model_config=model_config, tokenizer=tokenizer, generators=generators))
    return path


def write_checkpoint(path, checkpoint):
    """Write a Checkpoint (what load_checkpoint returns, or what gpt/exchange.py builds from another format) to
    `path` atomically, in the layout of the module docstring."""
    arrays = {f"model/{name}": value for name, value in checkpoint.model_state.items()}
    step_counts = {}  # the per-parameter numbers ("step") go to the metadata, the arrays to their own entries
    for index, entries in checkpoint.optimizer_state["state"].items():
        step_counts[str(index)] = {}
        for name, value in entries.items():
            if isinstance(value, np.ndarray):
                arrays[f"optimizer/state/{index}/{name}"] = value
            else:
                step_counts[str(index)][name] = value
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "iter_num": int(checkpoint.iter_num),
        "best_val_loss": float(checkpoint.best_val_loss),
        "train_config": checkpoint.train_config,
        "model_config": asdict(checkpoint.model_config),
        "tokenizer": checkpoint.tokenizer.to_dict(),
        "generators": checkpoint.generators,
        "optimizer": {"param_groups": checkpoint.optimizer_state["param_groups"], "state": step_counts},
        "scaler": checkpoint.scaler_state,
    }
    arrays["metadata"] = np.array(json.dumps(metadata))  # a 0-d string array: no pickle needed
    _write_atomically(path, arrays)


class CheckpointSaveError(CheckpointError):
    """A save that failed (a full disk, a folder that went away): the checkpoint before it is still whole."""


KEPT_PATTERN = "ckpt-previous-*.npz"  # an earlier run's checkpoint, kept by a fresh run in the same out_dir
LOCK_NAME = ".lock"                   # held by the run that saves into the out_dir (it holds the run's PID)


def kept_checkpoints(folder):
    """The earlier runs' checkpoints a folder keeps (KEPT_PATTERN), oldest first."""
    return sorted(glob.glob(os.path.join(glob.escape(folder or "."), KEPT_PATTERN)))


class CheckpointSaver:
    """Where a run saves, out_dir/ckpt.npz, and what guards what is already there:

    - the folder is made and checked for writing now, at the start, not at the first save;
    - a lock (out_dir/.lock, with the run's PID) keeps a second run out of the folder; a lock left by a process that
      died is free again (POSIX record locks end with their process);
    - temporary files that a killed save left behind are removed;
    - a fresh run that finds an earlier run's ckpt.npz keeps it, at its first save, under a name of its own
      (ckpt-previous-<date>-<time>[-<n>].npz, never one that exists), and ckpt.npz is replaced only once the new
      checkpoint is whole on disk;
    - a save that fails raises CheckpointSaveError, and the checkpoint before it is still in place.
    Use it in a `with` block, or close() it: that releases the lock.
    """

    def __init__(self, out_dir, fresh_run, will_save=True):
        self.out_dir, self.path = out_dir, os.path.join(out_dir, CHECKPOINT_NAME)
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise CheckpointError(f"out_dir {out_dir!r} is a file, not a folder: checkpoints could not be saved")
        self._lock = None
        if will_save:
            self._prepare_folder()
        self._keep_earlier = fresh_run and os.path.exists(self.path)

    def _prepare_folder(self):
        try:
            os.makedirs(self.out_dir, exist_ok=True)
            probe, probe_path = tempfile.mkstemp(prefix=".write-test.", dir=self.out_dir)
            os.close(probe)
            os.unlink(probe_path)
        except OSError as error:
            raise CheckpointError(f"cannot save checkpoints in out_dir {self.out_dir!r}: {error.strerror or error} "
                                  f"(checked before training; choose another --out-dir)") from None
        self._lock = _take_lock(os.path.join(self.out_dir, LOCK_NAME))
        for stale in glob.glob(os.path.join(glob.escape(self.out_dir), f".{CHECKPOINT_NAME}.*.tmp")):
            os.unlink(stale)  # no save is under way: the lock says no other run writes here

    def kept(self):
        """The earlier runs' checkpoints kept in out_dir, oldest first."""
        return kept_checkpoints(self.out_dir)

    def save(self, *state):
        """save_checkpoint(self.path, *state); returns where the earlier run's checkpoint was kept, or None.
        Raises CheckpointSaveError when the save fails; the checkpoint before it is left as it was."""
        try:
            kept_as = self._keep_earlier_checkpoint() if self._keep_earlier else None
            save_checkpoint(self.path, *state)
        except OSError as error:
            raise CheckpointSaveError(f"could not save the checkpoint to {self.path!r}: {type(error).__name__}: "
                                      f"{error}; the previous checkpoint, if any, is still whole there") from error
        self._keep_earlier = False
        return kept_as

    def _keep_earlier_checkpoint(self):
        """A second name for the earlier run's ckpt.npz (a hard link, or a copy), one that no file has yet."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for number in range(1, 10_000):
            kept_as = os.path.join(self.out_dir, f"ckpt-previous-{stamp}{'' if number == 1 else f'-{number}'}.npz")
            try:
                os.link(self.path, kept_as)          # fails when kept_as exists: nothing is ever overwritten
                return kept_as
            except FileExistsError:
                continue
            except OSError:                          # a file system without hard links
                try:
                    with open(self.path, "rb") as source, open(kept_as, "xb") as target:
                        shutil.copyfileobj(source, target)
                    return kept_as
                except FileExistsError:
                    continue
        raise CheckpointSaveError(f"no free name to keep the earlier checkpoint {self.path!r} under")

    def close(self):
        """Release the out_dir: the lock file goes, so that nothing of the run is left but what it saved."""
        if self._lock is not None:
            os.unlink(self._lock.name)  # while still holding it: whoever locks next makes a new one
            self._lock.close()
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _take_lock(path):
    """An open lock file, locked and holding this process's PID; CheckpointError naming the PID that holds it.
    None where the OS has no POSIX record locks."""
    if fcntl is None:
        return None
    while True:
        lock = open(path, "a+")
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise CheckpointError(f"out_dir {os.path.dirname(path)!r} is in use by another training run (PID "
                                  f"{holder}); wait for it to finish, or choose another --out-dir") from None
        try:
            if os.stat(path).st_ino == os.fstat(lock.fileno()).st_ino:
                break  # the lock file that is there now, not one its previous holder removed as we opened it
        except FileNotFoundError:
            pass
        lock.close()
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


@contextlib.contextmanager
def _interrupts_deferred():
    """Ctrl-C and SIGTERM wait until the block ends: an interrupt in the middle of np.savez would leave its zip file
    half-closed and replace the KeyboardInterrupt with zipfile's ValueError. The save takes well under a second;
    a signal that came during it is raised again, to its own handler, once the checkpoint is whole on disk.
    (Handlers are Python's to replace in the main thread only; elsewhere the block runs as it is.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came = []
    handlers = {stop: signal.signal(stop, lambda signum, frame: came.append(signum))
                for stop in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for stop, handler in handlers.items():
            signal.signal(stop, handler if handler is not None else signal.SIG_DFL)
        for signum in came[:1]:
            signal.raise_signal(signum)


def write_atomically(path, write):
    """Make the file at `path` by calling write(file) on a binary file object, atomically: the bytes go to a
    temporary file beside `path`, reach the disk, and only then take its name (os.replace). An error or an
    interrupt part way leaves whatever was at `path` before, whole, and no temporary file. The other formats of
    gpt/exchange.py (safetensors, nanoGPT's ckpt.pt and meta.pkl) and a run's health.png and health.json are
    written through this too."""
    with _interrupts_deferred():
        _write(path, write)


def _write_atomically(path, arrays):
    write_atomically(path, lambda file: np.savez(file, **arrays))


def _write(path, write):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # the temporary file lives next to the target: os.replace is only atomic within one file system
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as file:
            os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's file is private (0600): give it open()'s usual mode
            write(file)
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the new name points at them
        os.replace(temporary, path)
    except BaseException:  # an error or Ctrl-C mid-write: the old checkpoint is still in place, drop the partial one
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _umask():
    mask = os.umask(0)  # the only way to read the umask is to set it: put it straight back
    os.umask(mask)
    return mask


def _fsync_directory(directory):
    """Make the rename itself survive a power cut (POSIX). Best effort: the checkpoint is already in place, and
    systems or file systems that cannot sync a directory skip this rather than fail a finished save."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
    except OSError:
        pass


# what reading a damaged .npz can raise: a truncated zip, a bad CRC, a short array, JSON that does not parse...
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error)


def load_checkpoint(path, model_config=None):
    """Read the checkpoint at `path`. With `model_config`, also check the checkpoint was saved from a model of
    that shape (only dropout may differ). Any problem raises CheckpointError naming the path and the problem."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        kept = kept_checkpoints(os.path.dirname(path))
        raise CheckpointError(f"no checkpoint file at {path!r}" + (
            f"; that folder keeps earlier runs' checkpoints ({', '.join(os.path.basename(k) for k in kept)}): "
            f"copy one to {CHECKPOINT_NAME} to resume from it" if kept else ""))
    with open(path, "rb") as file:
        start = file.read(6)
    if start == b"\x93NUMPY":
        raise CheckpointError(f"{path!r} holds a single numpy array (a .npy file), not a checkpoint archive")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path!r} is not a checkpoint: a checkpoint is a .npz (zip) archive, and this file is "
                              f"not one (it starts with {start!r}); it may be damaged or another kind of file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}  # read everything now, so damage shows up here
        if "metadata" not in arrays:
            raise CheckpointError(f"{path!r} has no 'metadata' entry: it is not a checkpoint written by "
                                  f"save_checkpoint")
        metadata = json.loads(str(arrays.pop("metadata")))
        return _parse(path, metadata, arrays, model_config)
    except CheckpointError:
        raise
    except _READ_ERRORS as error:
        raise CheckpointError(f"cannot read checkpoint {path!r} (truncated or corrupt?): "
                              f"{type(error).__name__}: {error}") from error


def _parse(path, metadata, arrays, model_config):
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path!r} is not a {FORMAT!r} file")
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise CheckpointError(f"checkpoint {path!r} lacks the metadata entries {missing}")
    if metadata["version"] != VERSION:
        raise CheckpointError(f"checkpoint {path!r} has format version {metadata['version']}, this code reads "
                              f"version {VERSION}")

    saved_config = GPTConfig(**metadata["model_config"])
    if model_config is not None:
        check_model_config(path, saved_config, model_config)

    model_state = {}
    optimizer_arrays = {}
    for key, value in arrays.items():
        kind, _, rest = key.partition("/")
        if kind == "model":
            model_state[rest] = value
        elif kind == "optimizer" and rest.startswith("state/"):
            index, name = rest[len("state/"):].split("/")
            optimizer_arrays.setdefault(index, {})[name] = value
        else:
            raise CheckpointError(f"checkpoint {path!r} has an unexpected entry {key!r}")
    if not model_state:
        raise CheckpointError(f"checkpoint {path!r} has no model weights")
    broken = [name for name, value in model_state.items() if value.dtype.kind == "f" and not np.isfinite(value).all()]
    if broken:
        raise CheckpointError(f"checkpoint {path!r} holds NaN or infinite weights ({', '.join(broken[:3])}"
                              f"{', ...' if len(broken) > 3 else ''}): it was saved from a diverged model; use an "
                              f"earlier checkpoint ({KEPT_PATTERN} in its folder) or train again")
    step_counts = metadata["optimizer"]["state"]
    if set(step_counts) != set(optimizer_arrays):
        raise CheckpointError(f"checkpoint {path!r} has optimizer numbers for parameters {sorted(step_counts)} "
                              f"but arrays for {sorted(optimizer_arrays)}")
    optimizer_state = {"param_groups": metadata["optimizer"]["param_groups"],
                       "state": {int(index): {**step_counts[index], **optimizer_arrays[index]}
                                 for index in step_counts}}
    return Checkpoint(path=path, iter_num=int(metadata["iter_num"]), best_val_loss=float(metadata["best_val_loss"]),
                      model_state=model_state, optimizer_state=optimizer_state, scaler_state=metadata["scaler"],
                      train_config=metadata["train_config"], model_config=saved_config,
                      tokenizer=CharTokenizer.from_dict(metadata["tokenizer"]), generators=metadata["generators"])


def check_model_config(path, saved, requested):
    """CheckpointError naming every field where the saved model's shape differs from the requested one."""
    names = [field.name for field in fields(GPTConfig) if field.name not in RESUMABLE_CHANGES]
    differences = [f"{name}: checkpoint {getattr(saved, name)!r}, requested {getattr(requested, name)!r}"
                   for name in names if getattr(saved, name) != getattr(requested, name)]
    if differences:
        raise CheckpointError(f"checkpoint {path!r} was saved from a different model ({'; '.join(differences)}); "
                              f"use the settings it was trained with, or another out_dir")


def restore(checkpoint, model, optimizer=None, scaler=None):
    """Load the checkpoint's weights into `model` and, when given, its state into `optimizer` and `scaler`.
    A missing, unexpected or mis-shaped entry raises CheckpointError."""
    try:
        model.load_state_dict(checkpoint.model_state)
        if optimizer is not None:
            optimizer.load_state_dict(checkpoint.optimizer_state)
        # a run saved without loss scaling ({}) resumed with it starts from a fresh scale
        if scaler is not None and checkpoint.scaler_state:
            scaler.load_state_dict(checkpoint.scaler_state)
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"checkpoint {checkpoint.path!r} does not fit: {error}") from error
