"""The character data pipeline: vocabulary, encode/decode, the 90/10 split and (X, Y) batches."""
import numpy as np
import pytest
from hypothesis import given, settings

from gpt.data import DEFAULT_TEXT_PATH, CharDataset, CharTokenizer
from strategies import texts
from tinygrad_ed.tensor import Tensor

SHAKESPEARE_LENGTH = 1_115_394
SHAKESPEARE_CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def shakespeare():
    return CharDataset()


@pytest.fixture(scope="module")
def counting():
    """A text of distinct, increasing characters: every id equals its position, so windows are easy to check."""
    return CharDataset(text="".join(chr(0x100 + i) for i in range(1000)))


# ---- the tokenizer ----

def test_vocabulary_is_the_65_sorted_characters(shakespeare):
    tokenizer = shakespeare.tokenizer
    assert tokenizer.vocab_size == 65
    assert tokenizer.chars == SHAKESPEARE_CHARS
    assert list(tokenizer.chars) == sorted(tokenizer.chars)


@settings(max_examples=50, deadline=None)
@given(texts(SHAKESPEARE_CHARS))
def test_encode_decode_round_trip(text):
    tokenizer = CharTokenizer(SHAKESPEARE_CHARS)
    ids = tokenizer.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(ids.tolist()) == text
    assert tokenizer.decode(Tensor(ids)) == text


def test_chapter_example_rows():
    # The chapter's part 3 labels each row of X with its text. Against this vocabulary "going in" is exact;
    # "the king" is right except its first id: the chapter has 56 ('r'), 't' is 58.
    tokenizer = CharTokenizer(SHAKESPEARE_CHARS)
    assert tokenizer.encode("going in").tolist() == [45, 53, 47, 52, 45, 1, 47, 52]
    assert tokenizer.encode("the king").tolist() == [58, 46, 43, 1, 49, 47, 52, 45]
    assert tokenizer.encode("he king").tolist() == [46, 43, 1, 49, 47, 52, 45]  # the chapter's ids 2..8


def test_unknown_character_is_named_with_its_position():
    tokenizer = CharTokenizer(SHAKESPEARE_CHARS)
    with pytest.raises(ValueError, match=r"'ö' at position 8"):
        tokenizer.encode("hello, wörld")


@pytest.mark.parametrize("ids", [[0, 65], [-1], np.array([3, 70])])
def test_decode_rejects_ids_outside_the_vocabulary(ids):
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 65\)"):
        CharTokenizer(SHAKESPEARE_CHARS).decode(ids)


def test_tokenizer_survives_a_checkpoint_round_trip():
    tokenizer = CharTokenizer(SHAKESPEARE_CHARS)
    state = tokenizer.to_dict()
    assert state == {"chars": SHAKESPEARE_CHARS}
    assert CharTokenizer.from_dict(state).encode("To be").tolist() == tokenizer.encode("To be").tolist()


# ---- the split ----

def test_split_is_nanogpts_90_10(shakespeare):
    n = SHAKESPEARE_LENGTH
    assert len(shakespeare.train) == int(n * 0.9)
    assert len(shakespeare.val) == n - int(n * 0.9)
    assert shakespeare.train.dtype == shakespeare.val.dtype == np.uint16
    text = DEFAULT_TEXT_PATH.read_text(encoding="utf-8")
    assert shakespeare.tokenizer.decode(shakespeare.val[:50]) == text[int(n * 0.9):int(n * 0.9) + 50]


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere.txt"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.txt' not found"):
        CharDataset(path=missing)


# ---- batches ----

def test_batch_shapes_dtype_and_device(shakespeare):
    x, y = shakespeare.get_batch("train", 4, 8, np.random.default_rng(0))
    for tensor in (x, y):
        assert isinstance(tensor, Tensor)
        assert tensor.shape == (4, 8)
        assert tensor.dtype == np.int64
        assert tensor.device == "cpu"


@pytest.mark.parametrize("split", ["train", "val"])
def test_rows_are_contiguous_windows_and_y_is_x_shifted(counting, split):
    data = counting.train if split == "train" else counting.val
    block_size = 16
    x, y = (t.numpy() for t in counting.get_batch(split, 64, block_size, np.random.default_rng(1)))
    assert (y[:, :-1] == x[:, 1:]).all()
    # in the counting text a window starting at position p is p, p+1, ..., so starts can be read off
    starts = x[:, 0] - data[0]
    assert (x == data[starts[:, None] + np.arange(block_size)]).all()
    assert (y == data[starts[:, None] + np.arange(block_size) + 1]).all()
    assert starts.min() >= 0 and starts.max() < len(data) - block_size


def test_shakespeare_rows_are_slices_of_the_text(shakespeare):
    x, y = shakespeare.get_batch("val", 8, 32, np.random.default_rng(2))
    val_text = shakespeare.tokenizer.decode(shakespeare.val)
    for row_x, row_y in zip(x.numpy(), y.numpy()):
        window = shakespeare.tokenizer.decode(np.append(row_x, row_y[-1]))
        assert window in val_text


def test_same_seed_same_batch_different_seed_different_batch(shakespeare):
    def batch(seed):
        x, y = shakespeare.get_batch("train", 4, 8, np.random.default_rng(seed))
        return x.numpy(), y.numpy()

    (x0, y0), (x0_again, y0_again), (x1, _) = batch(0), batch(0), batch(1)
    assert (x0 == x0_again).all() and (y0 == y0_again).all()
    assert not (x0 == x1).all()


def test_the_last_window_fits(counting):
    # block_size = len(val) - 1 leaves exactly one start, 0: the window must still have its last target
    x, y = counting.get_batch("val", 3, len(counting.val) - 1, np.random.default_rng(0))
    assert (y.numpy()[:, -1] == counting.val[-1]).all()


@pytest.mark.parametrize("split, batch_size, block_size, match", [
    ("test", 4, 8, "split must be one of"),
    ("train", 0, 8, "batch_size must be positive"),
    ("val", 4, 100, r"block_size must be in \[1, 100\)"),
    ("val", 4, 0, "block_size must be in"),
])
def test_bad_batch_arguments(counting, split, batch_size, block_size, match):
    with pytest.raises(ValueError, match=match):
        counting.get_batch(split, batch_size, block_size, np.random.default_rng(0))


def test_generator_must_be_a_numpy_generator(counting):
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        counting.get_batch("train", 4, 8, 0)


@pytest.mark.cuda
def test_batch_on_cuda_matches_cpu(shakespeare, cuda):
    x_cpu, y_cpu = shakespeare.get_batch("train", 4, 8, np.random.default_rng(3))
    x, y = shakespeare.get_batch("train", 4, 8, np.random.default_rng(3), device="cuda")
    assert x.device == y.device == "cuda"
    assert (x.numpy() == x_cpu.numpy()).all() and (y.numpy() == y_cpu.numpy()).all()
    assert shakespeare.tokenizer.decode(x[0]) == shakespeare.tokenizer.decode(x_cpu[0])


def test_text_given_as_bytes_is_named():
    with pytest.raises(TypeError, match=r"text must be a str, got bytes \(decode it first: text.decode\('utf-8'\)\)"):
        CharDataset(text=b"to be or not to be")

