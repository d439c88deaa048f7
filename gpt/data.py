"""The character data pipeline: text -> integer ids -> (X, Y) batches (chapter part 3, "X, Y = get_batch('train')").

Follows nanoGPT's data/shakespeare_char/prepare.py and train.py's get_batch:
  1) the vocabulary is every distinct character of the text, sorted (65 for tiny Shakespeare)
  2) the whole text is encoded once into a compact uint16 array, first 90% train, last 10% val
  3) a batch is `batch_size` random windows of `block_size` characters (X) and the same windows shifted
     one character to the right (Y): at every position the target is the next character.
B = batch size, T = block size (context length).
"""
from pathlib import Path

import numpy as np

from tinygrad_ed.device import check_device, to_device
from tinygrad_ed.tensor import Tensor

DEFAULT_TEXT_PATH = Path(__file__).resolve().parent.parent / "data" / "tinyshakespeare.txt"

SPLITS = ("train", "val")


class CharTokenizer:
    """Characters <-> integer ids: a character's id is its position in the sorted vocabulary `chars`."""

    def __init__(self, chars):
        chars = "".join(chars)
        if len(set(chars)) != len(chars):
            raise ValueError(f"vocabulary characters must be distinct, got {chars!r}")
        self.chars = chars
        self.stoi = {char: i for i, char in enumerate(chars)}  # string to integer, nanoGPT's name

    @classmethod
    def from_text(cls, text):
        """The vocabulary of `text`: its distinct characters, sorted (so ids do not depend on text order)."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self):
        return len(self.chars)

    def encode(self, text):
        """A string as an int64 array of ids."""
        try:
            ids = [self.stoi[char] for char in text]
        except KeyError:
            # the slow search runs only on failure, to name the culprit
            position, char = next((i, c) for i, c in enumerate(text) if c not in self.stoi)
            raise ValueError(f"character {char!r} at position {position} is not in the vocabulary of "
                             f"{self.vocab_size} characters") from None
        return np.array(ids, dtype=np.int64)

    def decode(self, ids):
        """A 1-D sequence of ids (list, numpy/cupy array or Tensor) back to a string."""
        if isinstance(ids, Tensor):
            ids = ids.data
        ids = np.asarray(to_device(ids, "cpu"))  # a sampled sequence may still be on the GPU
        # NOTE: np.asarray([]) is float64, so the dtype is checked only when there are ids
        if ids.ndim > 1 or (ids.size and ids.dtype.kind not in "iu"):
            raise ValueError(f"decode needs a 1-D sequence of integer ids, got shape {ids.shape} dtype {ids.dtype}"
                             f"; decode a batch one row at a time")
        ids = ids.reshape(-1)
        outside = (ids < 0) | (ids >= self.vocab_size)
        if outside.any():
            position = int(np.argmax(outside))
            raise ValueError(f"id {int(ids[position])} at position {position} is outside the vocabulary "
                             f"[0, {self.vocab_size})")
        return "".join(self.chars[i] for i in ids.tolist())

    def to_dict(self):
        """What a checkpoint stores to rebuild this tokenizer: just the characters, in id order."""
        return {"chars": self.chars}

    @classmethod
    def from_dict(cls, state):
        return cls(state["chars"])

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size}, chars={self.chars!r})"


class CharDataset:
    """A text encoded once, split into train and val ids, sampled into (X, Y) batches.

    tokenizer  the CharTokenizer built from the whole text (train and val share one vocabulary)
    train      uint16 array of ids, the first `train_fraction` of the text
    val        uint16 array of ids, the rest
    """

    def __init__(self, text=None, path=DEFAULT_TEXT_PATH, train_fraction=0.9):
        if text is not None and not isinstance(text, str):
            hint = " (decode it first: text.decode('utf-8'))" if isinstance(text, (bytes, bytearray)) else ""
            raise TypeError(f"text must be a str, got {type(text).__name__}{hint}")
        if text is None:
            path = Path(path)
            if not path.is_file():
                raise FileNotFoundError(f"text file {str(path)!r} not found; pass text=... or path=... "
                                        f"(the default is the repository's data/tinyshakespeare.txt)")
            text = path.read_text(encoding="utf-8")
        if not 0 < train_fraction < 1:
            raise ValueError(f"train_fraction must be strictly between 0 and 1, got {train_fraction}")
        if len(text) < 2:
            raise ValueError(f"the text needs at least 2 characters to make a train and a val split, "
                             f"got {len(text)}")

        self.tokenizer = CharTokenizer.from_text(text)
        if self.tokenizer.vocab_size > np.iinfo(np.uint16).max + 1:
            raise ValueError(f"{self.tokenizer.vocab_size} distinct characters do not fit in uint16 ids")
        # uint16 as nanoGPT's prepare.py: a quarter of int64's memory; batches widen to int64 later
        data = self.tokenizer.encode(text).astype(np.uint16)
        n = len(data)
        self.train = data[:int(n * train_fraction)]
        self.val = data[int(n * train_fraction):]

    def get_batch(self, split, batch_size, block_size, generator, device="cpu"):
        """`batch_size` random windows from `split`: X (B, T) inputs and Y (B, T) targets, int64 Tensors.

        Y[b, t] = X[b, t + 1]: the character after X[b, t]. The same `generator` seed gives the same batches.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        data = self.train if split == "train" else self.val
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 1 <= block_size < len(data):
            raise ValueError(f"block_size must be in [1, {len(data)}) for the {split!r} split of {len(data)} "
                             f"tokens, got {block_size}")
        if not isinstance(generator, np.random.Generator):
            raise TypeError(f"generator must be a numpy.random.Generator (np.random.default_rng(seed)), "
                            f"got {type(generator).__name__}")
        check_device(device)

        # as nanoGPT's torch.randint(len(data) - block_size, (batch_size,)): the last target must still exist
        ix = generator.integers(0, len(data) - block_size, size=batch_size)  # (B,) window starts
        # one gather instead of a Python loop: row b holds the T + 1 ids from ix[b]; X is its first T, Y its last T
        windows = data[ix[:, None] + np.arange(block_size + 1)].astype(np.int64)  # (B, T + 1)
        id_range = int(windows.min()), int(windows.max())  # measured here, so the model need not read the GPU's copy
        windows = to_device(windows, device)  # the one host-to-device copy of this batch
        x = Tensor(windows[:, :-1], device=device)  # (B, T)
        y = Tensor(windows[:, 1:], device=device)   # (B, T)
        x.id_range = y.id_range = id_range
        return x, y


class Batches:
    """The endless stream of training batches a run draws, one `next()` at a time, from a seeded generator.

    `state` is the generator's state before the latest draw: a checkpoint stores it, so that a resumed run draws the
    batch that was pending when it stopped, and every one after it, exactly as the run would have.
    """

    def __init__(self, dataset, batch_size, block_size, seed, device="cpu", split="train"):
        self.dataset, self.batch_size, self.block_size, self.device, self.split = \
            dataset, batch_size, block_size, device, split
        self.generator = self.seeded(seed)
        self.state = self.generator.bit_generator.state

    @staticmethod
    def seeded(seed):
        """The generator a stream with this seed starts from (what a fresh run's checkpoint would hold)."""
        return np.random.default_rng(seed)

    def next(self):
        """The next (X, Y), each (B, T)."""
        self.state = self.generator.bit_generator.state
        return self.dataset.get_batch(self.split, self.batch_size, self.block_size, self.generator, self.device)

    def restore(self, state):
        """Continue from a saved `state`: the next draw is the batch that was pending when it was saved."""
        self.generator.bit_generator.state = state
        self.state = state
