"""Checkpoints exchanged with nanoGPT and safetensors (gpt/exchange.py, examples/convert_checkpoint.py).

The names and shapes expected here are written out from nanoGPT's model.py (its GPT's state_dict), not taken from
the code under test. The .safetensors tests need the safetensors package, the .pt ones PyTorch; both skip without.
The logits are compared against bench/torch_reference.py, this project's PyTorch model of nanoGPT's architecture
(nanoGPT's own model.py is not part of the repository).
"""
import importlib.util
import json
import pickle
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from gpt.checkpoint import load_checkpoint, restore, save_checkpoint
from gpt.config import TrainConfig, make_config
from gpt.data import CharDataset, CharTokenizer
from gpt.exchange import ConversionError, convert
from gpt.model import GPT
from gpt.step import configure_optimizers, train_step
from optim import GradScaler
from tinygrad_ed import Tensor

ROOT = Path(__file__).resolve().parent.parent
CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # tiny Shakespeare's 65
SHAPE = dict(n_layer=2, n_head=2, n_embd=16, block_size=8)


def nanogpt_state_dict_shapes(n_layer, n_embd, block_size, vocab_size, bias):
    """nanoGPT's GPT.state_dict() on PyTorch >= 2 (no attn.bias mask buffer), in its order: name -> shape."""
    C = n_embd
    entries = [("transformer.wte.weight", (vocab_size, C)), ("transformer.wpe.weight", (block_size, C))]

    def layer(name, weight, bias_shape):
        entries.append((name + ".weight", weight))
        if bias:
            entries.append((name + ".bias", bias_shape))

    for i in range(n_layer):
        block = f"transformer.h.{i}."
        layer(block + "ln_1", (C,), (C,))
        layer(block + "attn.c_attn", (3 * C, C), (3 * C,))
        layer(block + "attn.c_proj", (C, C), (C,))
        layer(block + "ln_2", (C,), (C,))
        layer(block + "mlp.c_fc", (4 * C, C), (4 * C,))
        layer(block + "mlp.c_proj", (C, 4 * C), (C,))
    layer("transformer.ln_f", (C,), (C,))
    entries.append(("lm_head.weight", (vocab_size, C)))
    return dict(entries)


def trained_checkpoint(path, bias=True, steps=3, seed=0):
    """A checkpoint of a tiny model after a few AdamW steps (m, v and step counts to carry), saved as a run saves."""
    train_config = TrainConfig(**SHAPE, bias=bias, dropout=0.0, batch_size=2, workers=1)
    config = train_config.model_config(len(CHARS))
    model = GPT(config, seed=seed)
    optimizer = configure_optimizers(model, 0.1, 1e-2, (0.9, 0.99))
    rng = np.random.default_rng(seed)

    def get_batch():
        ids = rng.integers(0, len(CHARS), size=(2, SHAPE["block_size"] + 1))
        return Tensor(ids[:, :-1]), Tensor(ids[:, 1:])

    batch = get_batch()
    for _ in range(steps):
        batch = train_step(model, optimizer, batch, get_batch, lr=1e-2).next_batch
    generators = {"batch": rng.bit_generator.state, "dropout": model.dropout_generator.bit_generator.state}
    save_checkpoint(path, model, optimizer, GradScaler(enabled=False), 30, 3.25, train_config, config,
                    CharTokenizer(CHARS), generators)
    return path


@pytest.fixture
def ours(tmp_path):
    return trained_checkpoint(tmp_path / "ours" / "ckpt.npz")


def logits_of(checkpoint, idx):
    model = GPT(checkpoint.model_config)
    restore(checkpoint, model)
    model.eval()
    logits, _ = model(Tensor(idx), Tensor(idx))
    return logits.numpy()


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "examples" / "convert_checkpoint.py"), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def assert_same_checkpoint(a, b, optimizer=True):
    assert a.model_state.keys() == b.model_state.keys()
    for name in a.model_state:
        assert a.model_state[name].dtype == b.model_state[name].dtype
        np.testing.assert_array_equal(a.model_state[name], b.model_state[name])
    assert (a.iter_num, a.best_val_loss, a.model_config, a.tokenizer.chars, a.train_config) == \
        (b.iter_num, b.best_val_loss, b.model_config, b.tokenizer.chars, b.train_config)
    if optimizer:
        assert a.optimizer_state["param_groups"] == b.optimizer_state["param_groups"]
        assert a.optimizer_state["state"].keys() == b.optimizer_state["state"].keys()
        for index, entries in a.optimizer_state["state"].items():
            assert entries["step"] == b.optimizer_state["state"][index]["step"]
            for name in ("m", "v"):
                np.testing.assert_array_equal(entries[name], b.optimizer_state["state"][index][name])
        assert (a.generators, a.scaler_state) == (b.generators, b.scaler_state)


def write_meta(path, chars):
    """A meta.pkl as nanoGPT's data/shakespeare_char/prepare.py writes it."""
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": {c: i for i, c in enumerate(chars)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(meta))
    return path


# ----------------------------------------------------------------------------------------------------------
# the command line's refusals, all before any work (no extra needed)

@pytest.mark.parametrize("args, message", [
    (["{ours}", "{tmp}/out.bin"], "unknown extension '.bin'"),
    (["{tmp}/ckpt.h5", "{tmp}/out.npz"], "unknown extension '.h5'"),
    (["{tmp}/missing.npz", "{tmp}/out.safetensors"], "no file at"),
    (["{ours}", "{ours}"], "same file"),
    (["{ours}", "{ours}", "--force"], "same file"),
    (["{ours}", "{tmp}/../{tmp.name}/ours/ckpt.npz", "--force"], "same file"),
    (["{ours}", "{tmp}/copy.npz"], "both .npz files: nothing to convert"),
    (["{ours}", "{tmp}/exists.pt"], "exists; pass --force"),
    (["{ours}", "{tmp}/out.pt", "--meta", "{tmp}/meta.pkl"], "carries its own"),
    (["{ours}", "{tmp}"], "unknown extension"),
    (["{ours}", "{tmp}/out.safetensors", "--dataset", "x"], "OUT is not a .pt"),
])
def test_bad_arguments_get_a_clear_error_and_nothing_is_written(ours, tmp_path, args, message):
    (tmp_path / "exists.pt").write_bytes(b"keep me")
    before = ours.read_bytes()
    result = run_cli(*[arg.format(ours=ours, tmp=tmp_path) for arg in args])
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "exists.pt").read_bytes() == b"keep me" and ours.read_bytes() == before
    assert not (tmp_path / "out.pt").exists() and not (tmp_path / "out.safetensors").exists()


def test_a_pt_import_without_meta_pkl_says_where_it_looked(tmp_path):
    source = tmp_path / "nanogpt" / "ckpt.pt"
    source.parent.mkdir()
    source.write_bytes(b"not read: the vocabulary is looked for first")
    result = run_cli(source, tmp_path / "ckpt.npz")
    assert result.returncode != 0
    assert str(source.parent / "meta.pkl") in result.stderr and "--meta" in result.stderr
    assert "data/shakespeare_char/meta.pkl" in result.stderr
    (tmp_path / "w.safetensors").write_bytes(b"not read either")
    with pytest.raises(ConversionError, match="--meta: no file"):
        convert(tmp_path / "w.safetensors", tmp_path / "x.npz", meta=tmp_path / "nowhere.pkl")


def test_a_pt_export_does_not_replace_an_existing_meta_pkl(ours, tmp_path):
    (tmp_path / "meta.pkl").write_bytes(b"someone's vocabulary")
    with pytest.raises(ConversionError, match="meta.pkl.*exists"):
        convert(ours, tmp_path / "ckpt.pt")
    assert (tmp_path / "meta.pkl").read_bytes() == b"someone's vocabulary" and not (tmp_path / "ckpt.pt").exists()


# ----------------------------------------------------------------------------------------------------------
# .safetensors

@pytest.mark.parametrize("bias", [True, False])
def test_safetensors_has_nanogpts_state_dict_names_shapes_dtypes_and_model_args(tmp_path, bias):
    safetensors = pytest.importorskip("safetensors")
    import safetensors.numpy  # noqa: F401
    source = trained_checkpoint(tmp_path / "ckpt.npz", bias=bias)
    convert(source, tmp_path / "model.safetensors")
    tensors = safetensors.numpy.load_file(str(tmp_path / "model.safetensors"))
    expected = nanogpt_state_dict_shapes(SHAPE["n_layer"], SHAPE["n_embd"], SHAPE["block_size"], len(CHARS), bias)
    assert {name: value.shape for name, value in tensors.items()} == expected
    assert {value.dtype for value in tensors.values()} == {np.dtype(np.float32)}
    np.testing.assert_array_equal(tensors["lm_head.weight"], tensors["transformer.wte.weight"])  # tied: 2 copies
    with safetensors.safe_open(str(tmp_path / "model.safetensors"), framework="np") as file:
        metadata = file.metadata()
    assert json.loads(metadata["model_args"]) == dict(n_layer=2, n_head=2, n_embd=16, block_size=8, bias=bias,
                                                      vocab_size=65, dropout=0.0)
    assert json.loads(metadata["vocabulary"]) == {"chars": CHARS}
    assert (metadata["iter_num"], json.loads(metadata["best_val_loss"])) == ("30", 3.25)


def test_npz_to_safetensors_to_npz_gives_identical_weights(ours, tmp_path):
    pytest.importorskip("safetensors")
    convert(ours, tmp_path / "model.safetensors")
    _, notes = convert(tmp_path / "model.safetensors", tmp_path / "back.npz")
    original, back = load_checkpoint(ours), load_checkpoint(tmp_path / "back.npz")
    assert_same_checkpoint(original, back, optimizer=False)
    assert back.optimizer_state["state"] == {} and any("AdamW starts afresh" in note for note in notes)


def safetensors_file(path, tensors, metadata):
    """A .safetensors written by hand from its documented layout (8-byte header size, JSON header, raw bytes), so
    that dtypes numpy lacks (BF16) can be written without PyTorch."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))


@pytest.mark.parametrize("dtype", ["F16", "BF16"])
def test_half_precision_weights_are_imported_as_float32_with_a_note(ours, tmp_path, dtype):
    pytest.importorskip("safetensors")
    convert(ours, tmp_path / "model.safetensors")
    checkpoint = load_checkpoint(ours)
    import safetensors.numpy
    tensors, widened = {}, {}
    for name, value in safetensors.numpy.load_file(str(tmp_path / "model.safetensors")).items():
        if dtype == "F16":
            half = value.astype(np.float16)
            tensors[name], widened[name] = ("F16", half.shape, half.tobytes()), half.astype(np.float32)
        else:  # bfloat16: the top 16 bits of the float32
            top = (value.view(np.uint32) >> 16).astype(np.uint16)
            tensors[name] = ("BF16", value.shape, top.tobytes())
            widened[name] = (top.astype(np.uint32) << 16).view(np.float32)
    with safetensors.safe_open(str(tmp_path / "model.safetensors"), framework="np") as file:
        metadata = file.metadata()
    safetensors_file(tmp_path / "half.safetensors", tensors, metadata)
    imported, notes = convert(tmp_path / "half.safetensors", tmp_path / "half.npz")
    assert any("to float32" in note for note in notes)
    loaded = load_checkpoint(tmp_path / "half.npz")
    assert loaded.model_config.dtype == "float32"
    for name, value in loaded.model_state.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, widened[name])
        assert np.abs(value - checkpoint.model_state[name]).max() < 0.02  # the rounding of half precision, no more


def test_safetensors_import_errors(ours, tmp_path):
    safetensors = pytest.importorskip("safetensors")
    convert(ours, tmp_path / "model.safetensors")
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:len(data) // 2])
    with pytest.raises(ConversionError, match="cannot read .* as safetensors"):
        convert(tmp_path / "cut.safetensors", tmp_path / "cut.npz")
    import safetensors.numpy
    tensors = safetensors.numpy.load_file(str(tmp_path / "model.safetensors"))
    safetensors.numpy.save_file(tensors, str(tmp_path / "bare.safetensors"))
    with pytest.raises(ConversionError, match="no 'model_args'"):
        convert(tmp_path / "bare.safetensors", tmp_path / "bare.npz")
    with pytest.raises(ConversionError, match="vocabulary mismatch"):
        convert(tmp_path / "model.safetensors", tmp_path / "x.npz", meta=write_meta(tmp_path / "meta.pkl", "abc"))
    tensors["lm_head.weight"] = tensors["lm_head.weight"] + 1
    with safetensors.safe_open(str(tmp_path / "model.safetensors"), framework="np") as file:
        safetensors.numpy.save_file(tensors, str(tmp_path / "untied.safetensors"), metadata=file.metadata())
    with pytest.raises(ConversionError, match="lm_head.weight differs"):
        convert(tmp_path / "untied.safetensors", tmp_path / "untied.npz")
    assert not any((tmp_path / name).exists() for name in ("cut.npz", "bare.npz", "x.npz", "untied.npz"))


def test_safetensors_without_a_vocabulary_takes_one_from_meta(ours, tmp_path):
    pytest.importorskip("safetensors")
    import safetensors.numpy
    convert(ours, tmp_path / "model.safetensors")
    tensors = safetensors.numpy.load_file(str(tmp_path / "model.safetensors"))
    args = dict(n_layer=2, n_head=2, n_embd=16, block_size=8, bias=True, vocab_size=65, dropout=0.0)
    safetensors.numpy.save_file(tensors, str(tmp_path / "other.safetensors"), metadata={"model_args": json.dumps(args)})
    with pytest.raises(ConversionError, match="stores no vocabulary.*--meta"):
        convert(tmp_path / "other.safetensors", tmp_path / "x.npz")
    meta = write_meta(tmp_path / "m.pkl", CHARS)
    imported, _ = convert(tmp_path / "other.safetensors", tmp_path / "x.npz", meta=meta)
    assert imported.tokenizer.chars == CHARS and imported.iter_num == 0
    assert imported.train_config["n_layer"] == 2 and imported.train_config["block_size"] == 8
    original = load_checkpoint(ours).model_state
    for name, value in load_checkpoint(tmp_path / "x.npz").model_state.items():
        np.testing.assert_array_equal(value, original[name])


def test_a_damaged_npz_is_refused_before_anything_is_written(ours, tmp_path):
    pytest.importorskip("safetensors")
    data = ours.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    result = run_cli(tmp_path / "cut.npz", tmp_path / "out.safetensors")
    assert result.returncode != 0 and "error:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_force_replaces_out_atomically(ours, tmp_path):
    pytest.importorskip("safetensors")
    (tmp_path / "model.safetensors").write_bytes(b"old")
    result = run_cli(ours, tmp_path / "model.safetensors", "--force")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model.safetensors").read_bytes() != b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "ours"]  # no temporary file left


def test_sample_and_resume_work_on_an_imported_checkpoint(ours, tmp_path):
    pytest.importorskip("safetensors")
    convert(ours, tmp_path / "model.safetensors")
    imported = tmp_path / "run" / "ckpt.npz"
    assert run_cli(tmp_path / "model.safetensors", imported).returncode == 0
    sample = subprocess.run([sys.executable, str(ROOT / "examples" / "sample.py"), "--checkpoint", str(imported),
                             "--num-tokens", "40", "--start", "ROMEO:"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert sample.returncode == 0, sample.stderr
    text = sample.stdout.splitlines()
    assert "iteration 30" in text[0] and text[1].startswith("ROMEO:")
    assert len("\n".join(text[1:-1])) == len("ROMEO:") + 40                   # 40 characters, all in the vocabulary
    # and training continues from it, as from one of our own (the optimizer afresh, the weights the imported ones)
    config = make_config({"init_from": "resume", "out_dir": str(imported.parent), "max_iters": 31,
                          "eval_iters": 1, "eval_interval": 1000, "workers": 1, "device": "cpu"})
    from gpt.training import train
    result = train(config, CharDataset(), log=lambda line: None)
    assert result.iter_num == 31 and result.saved_at == []  # one more update; at 31 no evaluation, no save


# ----------------------------------------------------------------------------------------------------------
# nanoGPT's ckpt.pt

def torch_reference():
    """bench/torch_reference.py, this project's PyTorch model of nanoGPT's architecture, loaded from its path."""
    spec = importlib.util.spec_from_file_location("torch_reference", ROOT / "bench" / "torch_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("bias", [True, False])
def test_pt_has_nanogpts_layout_and_meta_pkl(tmp_path, bias):
    torch = pytest.importorskip("torch")
    source = trained_checkpoint(tmp_path / "ckpt.npz", bias=bias)
    convert(source, tmp_path / "nanogpt" / "ckpt.pt", dataset="shakespeare_char")
    saved = torch.load(tmp_path / "nanogpt" / "ckpt.pt", weights_only=True)
    assert {"model", "optimizer", "model_args", "iter_num", "best_val_loss", "config"} <= set(saved)
    expected = nanogpt_state_dict_shapes(SHAPE["n_layer"], SHAPE["n_embd"], SHAPE["block_size"], len(CHARS), bias)
    assert [(name, tuple(value.shape)) for name, value in saved["model"].items()] == list(expected.items())
    assert {value.dtype for value in saved["model"].values()} == {torch.float32}
    wte, head = saved["model"]["transformer.wte.weight"], saved["model"]["lm_head.weight"]
    assert wte.data_ptr() == head.data_ptr()                    # one tensor under two names, as nanoGPT saves it
    assert saved["model_args"] == dict(n_layer=2, n_head=2, n_embd=16, block_size=8, bias=bias, vocab_size=65,
                                       dropout=0.0)
    assert (saved["iter_num"], saved["best_val_loss"], saved["config"]["dataset"]) == (30, 3.25, "shakespeare_char")
    meta = pickle.loads((tmp_path / "nanogpt" / "meta.pkl").read_bytes())
    assert meta == {"vocab_size": 65, "itos": dict(enumerate(CHARS)), "stoi": {c: i for i, c in enumerate(CHARS)}}


def test_npz_to_pt_to_npz_gives_identical_arrays_and_state(ours, tmp_path):
    pytest.importorskip("torch")
    convert(ours, tmp_path / "nanogpt" / "ckpt.pt")
    convert(tmp_path / "nanogpt" / "ckpt.pt", tmp_path / "back.npz")
    assert_same_checkpoint(load_checkpoint(ours), load_checkpoint(tmp_path / "back.npz"))


@pytest.mark.parametrize("bias", [True, False])
def test_exported_weights_give_nanogpts_architecture_our_logits(tmp_path, bias):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    import safetensors.torch
    reference = torch_reference()
    source = trained_checkpoint(tmp_path / "ckpt.npz", bias=bias)
    checkpoint = load_checkpoint(source)
    idx = np.random.default_rng(1).integers(0, len(CHARS), size=(3, SHAPE["block_size"]))
    ours = logits_of(checkpoint, idx)
    convert(source, tmp_path / "nanogpt" / "ckpt.pt")
    convert(source, tmp_path / "model.safetensors")
    saved = torch.load(tmp_path / "nanogpt" / "ckpt.pt", weights_only=True)
    for state in (saved["model"], safetensors.torch.load_file(str(tmp_path / "model.safetensors"))):
        model = reference.GPT(saved["model_args"])
        model.load_state_dict(state, strict=True)
        model.eval()
        with torch.no_grad():
            theirs, _ = model(torch.from_numpy(idx), torch.from_numpy(idx))
        np.testing.assert_allclose(theirs.numpy(), ours, rtol=0, atol=1e-5)


def test_the_exported_adamw_state_continues_in_torch_as_ours_does(ours, tmp_path):
    torch = pytest.importorskip("torch")
    reference = torch_reference()
    convert(ours, tmp_path / "nanogpt" / "ckpt.pt")
    saved = torch.load(tmp_path / "nanogpt" / "ckpt.pt", weights_only=True)
    theirs = reference.GPT(saved["model_args"])
    theirs.load_state_dict(saved["model"])
    torch_optimizer = torch.optim.AdamW(reference.torch_weight_decay_groups(theirs, 0.1), lr=1e-2, betas=(0.9, 0.99))
    torch_optimizer.load_state_dict(saved["optimizer"])           # what nanoGPT's train.py does with init_from=resume
    checkpoint = load_checkpoint(ours)
    model = GPT(checkpoint.model_config)
    optimizer = configure_optimizers(model, 0.1, 1e-2, (0.9, 0.99))
    restore(checkpoint, model, optimizer)
    idx = np.random.default_rng(2).integers(0, len(CHARS), size=(2, SHAPE["block_size"]))
    _, loss = model(Tensor(idx), Tensor(np.roll(idx, -1, axis=1)))
    loss.backward()
    named = dict(model.named_parameters())
    for name, param in theirs.named_parameters():               # the same gradient for both: only the update differs
        param.grad = torch.from_numpy(np.array(named[name].grad))
    torch_optimizer.step()
    optimizer.step()
    for name, param in theirs.named_parameters():
        np.testing.assert_allclose(param.detach().numpy(), named[name].numpy(), rtol=0, atol=1e-6)
    assert torch_optimizer.state_dict()["state"][0]["step"].item() == checkpoint.optimizer_state["state"][0]["step"] + 1


def nanogpt_checkpoint(tmp_path, torch, dtype=None, chars=CHARS):
    """A ckpt.pt as nanoGPT's train.py saves one (compiled names, a tensor best_val_loss, its config), from a model of
    nanoGPT's architecture after one AdamW step; and the meta.pkl beside it."""
    reference = torch_reference()
    torch.manual_seed(0)
    args = dict(n_layer=2, n_head=4, n_embd=32, block_size=16, bias=False, vocab_size=len(CHARS), dropout=0.0)
    model = reference.GPT(args)
    optimizer = torch.optim.AdamW(reference.torch_weight_decay_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.99))
    idx = torch.randint(0, len(CHARS), (2, 16))
    model(idx, idx)[1].backward()
    optimizer.step()
    state = {"_orig_mod." + name: value if dtype is None else value.to(dtype)
             for name, value in model.state_dict().items()}
    config = {"out_dir": "out-shakespeare-char", "dataset": "shakespeare_char", "batch_size": 64, "block_size": 256,
              "max_iters": 5000, "lr_decay_iters": 5000, "dtype": "bfloat16", "device": "cuda", "backend": "nccl",
              "compile": True, "wandb_log": False, "learning_rate": 1e-3, "beta2": 0.99, "warmup_iters": 100}
    path = tmp_path / "nanogpt" / "ckpt.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "optimizer": optimizer.state_dict(), "model_args": args, "iter_num": 250,
                "best_val_loss": torch.tensor(1.8125), "config": config}, path)
    write_meta(path.parent / "meta.pkl", chars)
    return path, model, optimizer


def test_a_nanogpt_checkpoint_imports_with_its_logits_and_optimizer(tmp_path):
    torch = pytest.importorskip("torch")
    path, model, optimizer = nanogpt_checkpoint(tmp_path, torch)
    result = run_cli(path, tmp_path / "imported" / "ckpt.npz")
    assert result.returncode == 0, result.stderr
    checkpoint = load_checkpoint(tmp_path / "imported" / "ckpt.npz")
    assert (checkpoint.iter_num, checkpoint.best_val_loss, checkpoint.tokenizer.chars) == (250, 1.8125, CHARS)
    assert checkpoint.train_config["batch_size"] == 64 and checkpoint.train_config["block_size"] == 16  # model's
    assert checkpoint.train_config["dtype"] == "float32" and checkpoint.train_config["device"] == "cpu"
    model.eval()
    idx = np.random.default_rng(3).integers(0, len(CHARS), size=(2, 16))
    with torch.no_grad():
        theirs, _ = model(torch.from_numpy(idx), torch.from_numpy(idx))
    np.testing.assert_allclose(logits_of(checkpoint, idx), theirs.numpy(), rtol=0, atol=1e-5)
    torch_state = optimizer.state_dict()
    for index, entries in torch_state["state"].items():
        ours = checkpoint.optimizer_state["state"][index]
        assert ours["step"] == int(entries["step"])
        np.testing.assert_array_equal(ours["m"], entries["exp_avg"].numpy())
        np.testing.assert_array_equal(ours["v"], entries["exp_avg_sq"].numpy())
    sample = subprocess.run([sys.executable, str(ROOT / "examples" / "sample.py"), "--checkpoint",
                             str(tmp_path / "imported" / "ckpt.npz"), "--num-tokens", "10"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert sample.returncode == 0 and "iteration 250" in sample.stdout, sample.stderr
    # nanoGPT's settings where ours has them, the machine's own, and the imported AdamW state: the run continues
    config = make_config({"init_from": "resume", "out_dir": str(tmp_path / "imported"), "max_iters": 251,
                          "eval_iters": 1, "batch_size": 4, "workers": 1, "device": "cpu"})
    assert (config.learning_rate, config.warmup_iters, config.lr_decay_iters) == (1e-3, 100, 5000)
    from gpt.training import train
    result = train(config, CharDataset(), log=lambda line: None)
    assert result.iter_num == 251 and result.optimizer.state_dict()["state"][0]["step"] == 2


def test_bfloat16_nanogpt_weights_become_float32(tmp_path):
    torch = pytest.importorskip("torch")
    path, model, _ = nanogpt_checkpoint(tmp_path, torch, dtype=torch.bfloat16)
    _, notes = convert(path, tmp_path / "ckpt.npz")
    assert any("to float32" in note for note in notes)
    checkpoint = load_checkpoint(tmp_path / "ckpt.npz")
    expected = model.state_dict()["transformer.h.0.mlp.c_fc.weight"].to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(checkpoint.model_state["transformer.h.0.mlp.c_fc.weight"], expected)


def test_pt_import_errors(tmp_path):
    torch = pytest.importorskip("torch")
    path, _, _ = nanogpt_checkpoint(tmp_path, torch)
    write_meta(tmp_path / "small" / "meta.pkl", "abcd")
    with pytest.raises(ConversionError, match="vocabulary mismatch: .* 4 characters, .* vocab_size 65"):
        convert(path, tmp_path / "a.npz", meta=tmp_path / "small" / "meta.pkl")
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "meta.pkl").write_bytes(pickle.dumps({"itos": {0: "a"}, "run": print}))
    with pytest.raises(ConversionError, match="builtins.print"):
        convert(path, tmp_path / "b.npz", meta=tmp_path / "evil" / "meta.pkl")
    data = path.read_bytes()
    (tmp_path / "nanogpt" / "cut.pt").write_bytes(data[:len(data) // 2])
    with pytest.raises(ConversionError, match="cannot read .* as a PyTorch checkpoint"):
        convert(tmp_path / "nanogpt" / "cut.pt", tmp_path / "c.npz")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "nanogpt" / "other.pt")
    with pytest.raises(ConversionError, match="needs 'model' and 'model_args'"):
        convert(tmp_path / "nanogpt" / "other.pt", tmp_path / "d.npz")
    assert not any((tmp_path / f"{name}.npz").exists() for name in "abcd")


def test_no_torch_means_a_clear_message(ours, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if PyTorch were not installed
    with pytest.raises(ConversionError, match="needs PyTorch.*pip install torch"):
        convert(ours, tmp_path / "ckpt.pt")
    assert not (tmp_path / "ckpt.pt").exists() and not (tmp_path / "meta.pkl").exists()


def test_no_safetensors_means_a_clear_message(ours, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(ConversionError, match=r"pip install -e '\.\[safetensors\]'"):
        convert(ours, tmp_path / "model.safetensors")


def test_train_config_of_an_import_is_a_valid_one(tmp_path):
    torch = pytest.importorskip("torch")
    path, _, _ = nanogpt_checkpoint(tmp_path, torch)
    checkpoint, _ = convert(path, tmp_path / "ckpt.npz")
    TrainConfig(**checkpoint.train_config)  # make_config builds the resumed run's settings from it
    assert asdict(checkpoint.model_config)["dtype"] == "float32"
