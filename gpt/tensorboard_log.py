"""A training run as TensorBoard timelines (--tensorboard DIR), written through tensorboardX (the `tensorboard` extra,
imported only when a run asks for it; TensorBoard itself is needed only to look at the files).

The chapter points its readers to TensorBoard for watching a run; this writes what train() prints, so that part 5's
health numbers and debug_training.py's per-parameter table become curves and histograms over the iterations:
  train/...                 every log line (step 2.7): the loss, lr, gradient norm before and after clipping, the
                            update-to-parameter ratio, ms/iter, tokens/s, MFU, and the float16 steps skipped so far
  eval/train, eval/val      every evaluation (step 2.6)
  weights/<name>            every eval_interval, each parameter's values at that evaluation, and
  grads/<name>              the gradients the update of that iteration used (unscaled, after clipping), under
                            nanoGPT's parameter names (transformer.h.0.attn.c_attn.weight, ...)
Look at them with `tensorboard --logdir DIR` (pip install tensorboard). Only rank 0 writes: one event file a run.
"""
import importlib.util
import os
import tempfile

import numpy as np

INSTALL_HINT = "pip install -e '.[tensorboard]'"


class TensorBoardError(Exception):
    """--tensorboard cannot be honoured: tensorboardX is missing, or the folder cannot be written."""


def check_log_dir(log_dir):
    """Raise TensorBoardError now, before any training, when the event files could not be written into log_dir
    (the folder is made if it does not exist, as out_dir is)."""
    if importlib.util.find_spec("tensorboardX") is None:
        raise TensorBoardError(f"--tensorboard {log_dir}: tensorboardX is not installed ({INSTALL_HINT})")
    if os.path.exists(log_dir) and not os.path.isdir(log_dir):
        raise TensorBoardError(f"--tensorboard {log_dir!r} is a file, not a folder: event files could not be written")
    try:
        os.makedirs(log_dir, exist_ok=True)
        probe, probe_path = tempfile.mkstemp(prefix=".write-test.", dir=log_dir)
        os.close(probe)
        os.unlink(probe_path)
    except OSError as error:
        raise TensorBoardError(f"cannot write TensorBoard event files in {log_dir!r}: {error.strerror or error} "
                               f"(checked before training; choose another --tensorboard folder)") from None


class TensorBoardLog:
    """One run's event file in `log_dir`. Call close() at the end, also on an interrupt: it writes what is still
    buffered (tensorboardX's writer thread flushes only every few minutes)."""

    def __init__(self, log_dir):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise TensorBoardError(f"--tensorboard {log_dir}: tensorboardX is not installed ({INSTALL_HINT})") \
                from None
        self.log_dir = log_dir
        self.writer = SummaryWriter(log_dir)

    def scalars(self, iter_num, values):
        """{tag: number} at iteration `iter_num`."""
        for tag, value in values.items():
            self.writer.add_scalar(tag, float(value), iter_num)

    def histograms(self, iter_num, prefix, named_arrays):
        """One histogram per (name, numpy array), tagged prefix/name."""
        for name, values in named_arrays:
            values = np.asarray(values, dtype=np.float64).ravel()
            # a float16 step the scaler skipped has inf gradients, which a histogram has no bin for: leave them out
            finite = values[np.isfinite(values)]
            if finite.size:
                self.writer.add_histogram(f"{prefix}/{name}", finite, iter_num)

    def close(self):
        if self.writer is not None:
            self.writer.close()  # flushes the pending events, then ends the writer thread
            self.writer = None

