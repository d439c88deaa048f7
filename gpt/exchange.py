"""Checkpoints exchanged with nanoGPT and the safetensors ecosystem: one model, three kinds of file (issue 16).

  .npz           this project's checkpoint (gpt/checkpoint.py): the weights, AdamW's state, the run's settings, the
                 vocabulary, the random generators; everything a run needs to continue
  .safetensors   the weights alone, under nanoGPT's state_dict names, shapes and dtypes, with string metadata:
                 "model_args" (nanoGPT's, JSON), "vocabulary" ({"chars": ...}, JSON), "iter_num", "best_val_loss",
                 "train_config" (JSON) and "format": "pt" (the tensors are laid out as PyTorch's state_dict)
  .pt            nanoGPT's own ckpt.pt: a torch.save of {"model", "optimizer", "model_args", "iter_num",
                 "best_val_loss", "config"}, and beside it meta.pkl, nanoGPT's vocabulary ({"vocab_size", "itos",
                 "stoi"}, as its data/shakespeare_char/prepare.py writes it)

convert(source, target) reads any one and writes any other, the formats chosen by the file extensions; every check
on the paths runs before anything is read, and everything read is checked (loaded into a GPT and its AdamW) before
anything is written. Writes are atomic (checkpoint.write_atomically).

What carries over and what does not:
- Names. Our parameters already carry nanoGPT's names (gpt/model.py). nanoGPT's state_dict lists the tied token
  embedding twice, as transformer.wte.weight and lm_head.weight (one tensor, two names); ours lists it once. Both
  exports write both names, so that nanoGPT's load_state_dict (strict) takes them as they are: the .pt shares one
  tensor between the two names, as torch.save of nanoGPT's state_dict does; the .safetensors stores two copies
  (the format has no shared tensors). Imports check that the two are equal and keep one.
- nanoGPT registers the causal mask as a buffer "attn.bias" only when PyTorch has no scaled_dot_product_attention
  (before 2.0); from 2.0 on it is not in the state_dict, and our exports leave it out. An import drops it.
- torch.compile's "_orig_mod." prefix, which nanoGPT's train.py strips when it resumes, is stripped on import.
- Dtypes are kept (float32; float64 for a gradient-check model); float16 and bfloat16 weights are made float32
  on import, with a note: this engine trains float32 weights.
- The optimizer. nanoGPT's train.py with init_from='resume' loads checkpoint['optimizer'], so the .pt carries our
  AdamW state in torch's format: exp_avg = m, exp_avg_sq = v, step = t, and the two parameter groups of
  configure_optimizers (decay, then no decay), which number the parameters as ours do (optim/param_groups.py).
  Each group's other settings are this PyTorch's AdamW defaults (fused=None among them: nanoGPT resumed on cuda
  then steps with the unfused AdamW, the same update). The .safetensors carries weights only: its import starts
  AdamW afresh, as does a .pt whose optimizer is not one AdamW of those two groups.
- What nanoGPT has no place for (the numpy generators' states, the loss scaler, our exact run settings) travels in
  the .pt under the extra key "tinygrad_ed", which nanoGPT ignores; a .pt that nanoGPT wrote gets the settings
  from its "config" (the ones this project has, minus the machine's: device, backend, workers, dtype) and
  generators seeded as a fresh run's.
Nothing here runs pickled code: .pt files are read with torch.load(weights_only=True), and meta.pkl with an
unpickler that refuses every class (a vocabulary needs only dicts, numbers and strings).
"""
import json
import math
import os
import pickle
from dataclasses import asdict, dataclass, fields

import numpy as np

from gpt.checkpoint import FORMAT, VERSION, Checkpoint, CheckpointError, load_checkpoint, restore, write_atomically, \
    write_checkpoint
from gpt.config import MACHINE_SETTINGS, TrainConfig
from gpt.data import Batches, CharTokenizer
from gpt.model import GPT, GPTConfig
from gpt.step import configure_optimizers

FORMATS = {".npz": "this project's checkpoint", ".safetensors": "safetensors weights",
           ".pt": "nanoGPT's checkpoint"}
META_NAME = "meta.pkl"               # nanoGPT's vocabulary file, beside the ckpt.pt
DEFAULT_DATASET = "shakespeare_char"  # nanoGPT's folder data/<dataset>/ for our tiny Shakespeare vocabulary
EXTRA_KEY = "tinygrad_ed"            # our state that nanoGPT's ckpt.pt has no place for
TIED = ("transformer.wte.weight", "lm_head.weight")  # one tensor, two names in nanoGPT's state_dict
COMPILE_PREFIX = "_orig_mod."        # what torch.compile puts before every name
MODEL_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "dropout")  # nanoGPT's model_args
# nanoGPT's config entries that describe the machine or the moment, not the run: a converted run takes ours
NOT_CARRIED = MACHINE_SETTINGS + ("dtype", "init_from", "eval_only")


class ConversionError(CheckpointError):
    """A conversion refused before it started (paths, formats, a missing library or vocabulary), or a file that
    cannot be read or does not describe a model this project can build."""


# ----------------------------------------------------------------------------------------------------------
# the one command: check everything, read, check again, write

@dataclass
class Plan:
    """What convert() will do, decided from the paths alone."""
    source: str
    target: str
    meta_in: str = None    # the meta.pkl an import reads (.pt: required; .safetensors: optional)
    meta_out: str = None   # the meta.pkl a .pt export writes


def kind(path):
    """The extension naming the format of `path` (.npz, .safetensors or .pt); ConversionError for any other."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise ConversionError(f"{path!r}: unknown extension {extension or '(none)'!r}; use "
                              + ", ".join(f"{ext} ({what})" for ext, what in FORMATS.items()))
    return extension


def plan(source, target, force=False, meta=None):
    """Every check that needs no reading, in order; returns a Plan or raises ConversionError."""
    source, target = os.fspath(source), os.fspath(target)
    source_kind, target_kind = kind(source), kind(target)
    if not os.path.isfile(source):
        raise ConversionError(f"no file at {source!r}" + (" (it is a folder)" if os.path.isdir(source) else ""))
    if os.path.abspath(source) == os.path.abspath(target) or _same_file(source, target):
        raise ConversionError(f"IN and OUT are the same file ({source!r}): a conversion never overwrites its input")
    if source_kind == target_kind:
        raise ConversionError(f"{source!r} and {target!r} are both {source_kind} files: nothing to convert "
                              f"(copy the file instead)")
    if os.path.isdir(target):
        raise ConversionError(f"OUT {target!r} is a folder; name the file to write, e.g. "
                              f"{os.path.join(target, 'ckpt' + target_kind)!r}")
    if os.path.exists(target) and not force:
        raise ConversionError(f"OUT {target!r} exists; pass --force to replace it")
    result = Plan(source, target)
    if meta is not None and source_kind == ".npz":
        raise ConversionError(f"--meta gives the vocabulary of a .pt or .safetensors import; {source!r} carries "
                              f"its own")
    if source_kind == ".pt":
        result.meta_in = meta if meta is not None else os.path.join(os.path.dirname(source), META_NAME)
        if not os.path.isfile(result.meta_in):
            raise ConversionError(
                f"no vocabulary for {source!r}: looked for {result.meta_in!r}" + (
                    "" if meta is not None else
                    f"; nanoGPT keeps it in data/<dataset>/{META_NAME} (data/{DEFAULT_DATASET}/{META_NAME} for tiny "
                    f"Shakespeare): copy it beside the ckpt.pt or pass --meta PATH"))
    elif source_kind == ".safetensors" and meta is not None:
        if not os.path.isfile(meta):
            raise ConversionError(f"--meta: no file at {meta!r}")
        result.meta_in = meta
    if target_kind == ".pt":
        result.meta_out = os.path.join(os.path.dirname(os.path.abspath(target)), META_NAME)
        if (result.meta_in is not None and _same_file(result.meta_in, result.meta_out)) or \
                _same_file(source, result.meta_out):
            raise ConversionError(f"writing {result.meta_out!r} beside OUT would overwrite an input of this "
                                  f"conversion; write OUT into another folder")
        if os.path.exists(result.meta_out) and not force:
            raise ConversionError(f"{result.meta_out!r} exists (a .pt export writes its vocabulary there); pass "
                                  f"--force to replace it, or write OUT into another folder")
    for extension in {source_kind, target_kind}:
        if extension == ".pt":
            _torch()
        elif extension == ".safetensors":
            _safetensors()
    return result


def convert(source, target, force=False, meta=None, dataset=DEFAULT_DATASET):
    """Convert the checkpoint `source` into `target`, the formats named by the extensions (FORMATS).

    force    replace `target` (and a .pt's meta.pkl) when it exists; the input is never overwritten
    meta     the meta.pkl to read the vocabulary from, for a .pt (default: beside it) or a .safetensors import
    dataset  nanoGPT's dataset name written into a .pt's config: its sample.py reads data/<dataset>/meta.pkl
    Returns (checkpoint, notes): what was written, as a gpt.checkpoint.Checkpoint, and what the reader should know.
    """
    steps = plan(source, target, force, meta)
    notes = []
    checkpoint = READERS[kind(source)](steps.source, steps.meta_in, notes)
    check_fits(checkpoint)
    extension = kind(target)
    if extension == ".pt":
        write_pt(checkpoint, steps.target, dataset, steps.meta_out)
    else:
        WRITERS[extension](checkpoint, steps.target)
    return checkpoint, notes


def check_fits(checkpoint):
    """ConversionError unless the weights and the optimizer state load into this project's GPT and AdamW, and the
    weights are finite: what sample.py and a resumed run will do with the file."""
    broken = [name for name, value in checkpoint.model_state.items() if not np.isfinite(value).all()]
    if broken:
        raise ConversionError(f"{checkpoint.path!r} holds NaN or infinite weights ({', '.join(broken[:3])}): it was "
                              f"saved from a diverged model")
    model = GPT(checkpoint.model_config)
    restore(checkpoint, model, _fresh_optimizer(model, checkpoint.train_config))


# ----------------------------------------------------------------------------------------------------------
# names: nanoGPT's state_dict <-> ours

def nanogpt_state_dict(model_state):
    """Our weights under nanoGPT's state_dict names: ours, plus lm_head.weight, the same array as the token
    embedding (nanoGPT ties them, and its state_dict names the one tensor twice)."""
    state = dict(model_state)
    state[TIED[1]] = model_state[TIED[0]]
    return state


def our_model_state(state, source, notes):
    """nanoGPT's state_dict (name -> numpy array) as ours: the compile prefix stripped, the causal-mask buffers
    dropped, float16/bfloat16 made float32, and the tied lm_head.weight checked equal to the embedding and left out."""
    state = {name[len(COMPILE_PREFIX):] if name.startswith(COMPILE_PREFIX) else name: value
             for name, value in state.items()}
    masks = [name for name in state if name.endswith(".attn.bias") and state[name].ndim == 4]
    for name in masks:  # tril(ones(T, T)) viewed (1, 1, T, T): a constant of the architecture, not a weight
        del state[name]
    if masks:
        notes.append(f"dropped {len(masks)} causal-mask buffers (*.attn.bias, saved by nanoGPT on PyTorch < 2.0)")
    for name in TIED:
        if name not in state:
            raise ConversionError(f"{source!r} has no {name!r}: not a nanoGPT GPT's state_dict")
    embedding, head = state.pop(TIED[0]), state.pop(TIED[1])
    if embedding.shape != head.shape or not np.array_equal(embedding, head):
        raise ConversionError(f"{source!r}: lm_head.weight differs from transformer.wte.weight; this model ties "
                              f"them (as nanoGPT does), so it cannot hold weights where they are two")
    converted = []
    model_state = {}
    for name, value in {TIED[0]: embedding, **state}.items():
        if value.dtype.kind != "f":
            raise ConversionError(f"{source!r}: weight {name!r} has dtype {value.dtype}, not a float")
        if value.dtype not in (np.float32, np.float64):
            converted.append(name)
            value = value.astype(np.float32)
        model_state[name] = value
    if converted:
        notes.append(_widened(len(converted)))
    dtypes = {value.dtype for value in model_state.values()}
    if len(dtypes) > 1:
        raise ConversionError(f"{source!r} mixes weight dtypes {sorted(map(str, dtypes))}")
    return model_state


def _widened(count):
    return (f"converted {count} float16/bfloat16 weights to float32 (this engine trains float32 weights): the "
            f"values are the same, widened")


def model_args(config):
    """nanoGPT's model_args (its GPTConfig's fields) for our GPTConfig."""
    return {name: getattr(config, name) for name in MODEL_ARGS}


def model_config(args, dtype, source, notes):
    """Our GPTConfig from nanoGPT's model_args; ConversionError naming what is missing or wrong."""
    if not isinstance(args, dict):
        raise ConversionError(f"{source!r}: model_args is a {type(args).__name__}, not a dict")
    missing = [name for name in MODEL_ARGS if name != "dropout" and name not in args]
    if missing:
        raise ConversionError(f"{source!r}: model_args lacks {missing}")
    extra = sorted(set(args) - set(MODEL_ARGS))
    if extra:
        notes.append(f"model_args entries {extra} are not nanoGPT's and were left out")
    try:
        return GPTConfig(**{name: args[name] for name in MODEL_ARGS if name in args}, dtype=str(dtype))
    except (TypeError, ValueError) as error:
        raise ConversionError(f"{source!r}: model_args {args} describe no model this project builds: {error}") \
            from None


# ----------------------------------------------------------------------------------------------------------
# the vocabulary: nanoGPT's meta.pkl <-> our CharTokenizer

def nanogpt_meta(tokenizer):
    """The meta.pkl dict nanoGPT's prepare.py writes: vocab_size, itos (id -> character), stoi (character -> id)."""
    return {"vocab_size": tokenizer.vocab_size, "itos": dict(enumerate(tokenizer.chars)), "stoi": dict(tokenizer.stoi)}


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, numbers and strings only: a class named in the file would run its code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"it names {module}.{name}; a vocabulary holds only dicts, numbers and strings")


def read_meta(path):
    """The CharTokenizer of a nanoGPT meta.pkl; ConversionError when it is unreadable or not a character vocabulary."""
    try:
        with open(path, "rb") as file:
            meta = _PlainUnpickler(file).load()
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as error:
        raise ConversionError(f"cannot read the vocabulary {path!r}: {type(error).__name__}: {error}") from None
    itos = meta.get("itos") if isinstance(meta, dict) else None
    if not isinstance(itos, dict) or sorted(itos) != list(range(len(itos))):
        raise ConversionError(f"{path!r} is not nanoGPT's meta.pkl: it needs 'itos', a dict from the ids 0..V-1 to "
                              f"their characters")
    chars = [itos[i] for i in range(len(itos))]
    if not all(isinstance(char, str) and len(char) == 1 for char in chars):
        raise ConversionError(f"{path!r}: its tokens are not single characters; this project's models read "
                              f"characters (nanoGPT's BPE data sets keep no meta.pkl)")
    if meta.get("vocab_size", len(chars)) != len(chars) or \
            any(meta.get("stoi", {}).get(char) != i for i, char in enumerate(chars)):
        raise ConversionError(f"{path!r}: its vocab_size, itos and stoi disagree")
    try:
        return CharTokenizer(chars)
    except ValueError as error:
        raise ConversionError(f"{path!r}: {error}") from None


def check_vocabulary(tokenizer, config, source, where):
    """ConversionError unless the vocabulary has exactly the model's vocab_size characters."""
    if tokenizer.vocab_size != config.vocab_size:
        raise ConversionError(f"vocabulary mismatch: {where} has {tokenizer.vocab_size} characters, the model in "
                              f"{source!r} has vocab_size {config.vocab_size}; its token ids would mean other "
                              f"characters. Give the meta.pkl of the data set it was trained on (--meta)")


# ----------------------------------------------------------------------------------------------------------
# the .npz (ours)

def read_npz(path, meta, notes):
    return load_checkpoint(path)


def write_npz(checkpoint, path):
    write_checkpoint(path, checkpoint)


# ----------------------------------------------------------------------------------------------------------
# .safetensors

def write_safetensors(checkpoint, path):
    """The weights under nanoGPT's names (the tied embedding stored twice) and string metadata."""
    safetensors_numpy = _safetensors().numpy
    metadata = {"format": "pt", "model_args": json.dumps(model_args(checkpoint.model_config)),
                "vocabulary": json.dumps(checkpoint.tokenizer.to_dict()), "iter_num": str(int(checkpoint.iter_num)),
                "best_val_loss": json.dumps(float(checkpoint.best_val_loss)),
                "train_config": json.dumps(checkpoint.train_config)}
    data = safetensors_numpy.save(nanogpt_state_dict(checkpoint.model_state), metadata=metadata)
    write_atomically(path, lambda file: file.write(data))


def read_safetensors(path, meta, notes):
    safetensors = _safetensors()
    try:
        with safetensors.safe_open(path, framework="np") as file:
            metadata = file.metadata() or {}
        tensors = _load_safetensors(path, safetensors, notes)
    except (safetensors.SafetensorError, OSError, ValueError, TypeError, KeyError) as error:
        raise ConversionError(f"cannot read {path!r} as safetensors (truncated or not a safetensors file?): "
                              f"{type(error).__name__}: {error}") from None
    if "model_args" not in metadata:
        raise ConversionError(f"{path!r} has no 'model_args' in its metadata: n_head cannot be read from the "
                              f"shapes. Export it with convert_checkpoint.py, or add nanoGPT's model_args as JSON")
    try:
        args = json.loads(metadata["model_args"])
        vocabulary = json.loads(metadata["vocabulary"]) if "vocabulary" in metadata else None
        iter_num = int(metadata.get("iter_num", 0))
        best_val_loss = float(json.loads(metadata.get("best_val_loss", "Infinity")))
        train_config = json.loads(metadata["train_config"]) if "train_config" in metadata else None
    except (ValueError, TypeError) as error:
        raise ConversionError(f"{path!r}: unreadable metadata: {error}") from None
    model_state = our_model_state(tensors, path, notes)
    config = model_config(args, next(iter(model_state.values())).dtype, path, notes)
    tokenizer = _vocabulary(vocabulary, meta, path, config)
    notes.append("a .safetensors holds the weights alone: AdamW starts afresh, the random generators as a fresh "
                 "run's")
    return _imported(path, config, model_state, tokenizer, iter_num, best_val_loss, train_config, notes)


def _load_safetensors(path, safetensors, notes):
    """name -> numpy array. numpy has no bfloat16: those tensors are read from the raw bytes, widened to float32
    (a bfloat16 is the top half of a float32), with a note."""
    with open(path, "rb") as file:
        header_size = int.from_bytes(file.read(8), "little")
        if header_size > os.path.getsize(path):
            raise ValueError("its header is longer than the file")
        header = json.loads(file.read(header_size))
        bfloat16 = {name: entry for name, entry in header.items()
                    if name != "__metadata__" and entry.get("dtype") == "BF16"}
        if not bfloat16:
            return safetensors.numpy.load_file(path)
        tensors = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            if entry["dtype"] not in ("BF16", "F16", "F32", "F64"):
                raise ValueError(f"tensor {name!r} has dtype {entry['dtype']}, not a float")
            start, end = entry["data_offsets"]
            file.seek(8 + header_size + start)
            raw = np.frombuffer(file.read(end - start), dtype={"BF16": "<u2", "F16": "<f2", "F32": "<f4",
                                                               "F64": "<f8"}[entry["dtype"]])
            if entry["dtype"] == "BF16":
                raw = (raw.astype(np.uint32) << 16).view(np.float32)
            tensors[name] = raw.reshape(entry["shape"])
        notes.append(_widened(len(bfloat16)))
        return tensors


def _vocabulary(vocabulary, meta, source, config):
    """The tokenizer of an import: from the file, from --meta, or both when they agree."""
    tokenizer = CharTokenizer.from_dict(vocabulary) if vocabulary is not None else None
    if meta is not None:
        from_meta = read_meta(meta)
        if tokenizer is not None and from_meta.chars != tokenizer.chars:
            raise ConversionError(f"vocabulary mismatch: {meta!r} and the vocabulary stored in {source!r} differ")
        tokenizer, where = from_meta, repr(meta)
    elif tokenizer is None:
        raise ConversionError(f"{source!r} stores no vocabulary; give the meta.pkl of the data set it was trained "
                              f"on with --meta PATH")
    else:
        where = "its stored vocabulary"
    check_vocabulary(tokenizer, config, source, where)
    return tokenizer


# ----------------------------------------------------------------------------------------------------------
# nanoGPT's ckpt.pt and meta.pkl

def write_pt(checkpoint, path, dataset=DEFAULT_DATASET, meta_path=None):
    """nanoGPT's ckpt.pt at `path` and its meta.pkl at `meta_path` (default: beside it)."""
    torch = _torch()
    meta_path = meta_path or os.path.join(os.path.dirname(os.path.abspath(path)), META_NAME)
    tensors = {name: torch.from_numpy(np.array(value)) for name, value in checkpoint.model_state.items()}
    saved = {
        "model": nanogpt_state_dict(tensors),  # the tied embedding: one tensor under both names, as nanoGPT's
        "optimizer": torch_optimizer_state(checkpoint.optimizer_state, torch),
        "model_args": model_args(checkpoint.model_config),
        "iter_num": int(checkpoint.iter_num),
        "best_val_loss": float(checkpoint.best_val_loss),
        "config": {**checkpoint.train_config, "dataset": dataset},  # nanoGPT's sample.py finds meta.pkl by dataset
        EXTRA_KEY: {"format": FORMAT, "version": VERSION, "train_config": checkpoint.train_config,
                    "generators": checkpoint.generators, "scaler": checkpoint.scaler_state},
    }
    write_atomically(meta_path, lambda file: pickle.dump(nanogpt_meta(checkpoint.tokenizer), file))
    write_atomically(path, lambda file: torch.save(saved, file))


def torch_optimizer_state(optimizer_state, torch):
    """Our AdamW state_dict in torch.optim.AdamW's format: the same groups and parameter numbers, with each group's
    other settings (amsgrad, foreach, fused, ...) as this PyTorch's AdamW defaults them."""
    defaults = torch.optim.AdamW([torch.zeros(1)]).state_dict()["param_groups"][0]
    groups = [{**defaults, "lr": group["lr"], "betas": tuple(group["betas"]), "eps": group["eps"],
               "weight_decay": group["weight_decay"], "params": list(group["params"])}
              for group in optimizer_state["param_groups"]]
    state = {int(index): {"step": torch.tensor(float(entries["step"])), "exp_avg": torch.from_numpy(entries["m"]),
                          "exp_avg_sq": torch.from_numpy(entries["v"])}
             for index, entries in optimizer_state["state"].items()}
    return {"state": state, "param_groups": groups}


def read_pt(path, meta, notes):
    torch = _torch()
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ConversionError(f"{path!r} holds more than tensors and plain values, and is not loaded: that would run "
                              f"code from the file ({str(error).splitlines()[0]})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise ConversionError(f"cannot read {path!r} as a PyTorch checkpoint (truncated or another kind of file?): "
                              f"{type(error).__name__}: {error}") from None
    if not isinstance(saved, dict) or "model" not in saved or "model_args" not in saved:
        raise ConversionError(f"{path!r} is not nanoGPT's ckpt.pt: it needs 'model' and 'model_args' entries")
    try:
        bfloat16 = sum(value.dtype == torch.bfloat16 for value in saved["model"].values())
        state = {name: _numpy(value, torch) for name, value in saved["model"].items()}
    except (AttributeError, TypeError) as error:
        raise ConversionError(f"{path!r}: its 'model' is not a state_dict of tensors ({error})") from None
    if bfloat16:
        notes.append(_widened(bfloat16))
    model_state = our_model_state(state, path, notes)
    config = model_config(saved["model_args"], next(iter(model_state.values())).dtype, path, notes)
    tokenizer = read_meta(meta)
    check_vocabulary(tokenizer, config, path, repr(meta))
    extra = saved.get(EXTRA_KEY) if isinstance(saved.get(EXTRA_KEY), dict) else {}
    train_config = extra.get("train_config") or _nanogpt_train_config(saved.get("config"), config, notes)
    checkpoint = _imported(path, config, model_state, tokenizer, int(saved.get("iter_num", 0)),
                           float(saved.get("best_val_loss", math.inf)), train_config, notes)
    if extra.get("generators") is not None:
        checkpoint.generators, checkpoint.scaler_state = extra["generators"], extra.get("scaler", {})
    if "optimizer" in saved:
        checkpoint.optimizer_state = _our_optimizer_state(saved["optimizer"], checkpoint.optimizer_state, torch,
                                                          path, notes)
    else:
        notes.append(f"{path!r} has no optimizer state: AdamW starts afresh")
    return checkpoint


def _our_optimizer_state(saved, fresh, torch, source, notes):
    """torch's AdamW state_dict as ours, parameter for parameter; `fresh` (a new AdamW's) when it is not one AdamW
    over configure_optimizers' two groups."""
    try:
        groups, state = saved["param_groups"], saved["state"]
        if len(groups) != len(fresh["param_groups"]) or any(
                len(group["params"]) != len(ours["params"]) for group, ours in zip(groups, fresh["param_groups"])):
            raise ValueError(f"its parameter groups hold {[len(group['params']) for group in groups]} parameters, "
                             f"configure_optimizers' {[len(group['params']) for group in fresh['param_groups']]}")
        ours = {theirs: mine for group, mine_group in zip(groups, fresh["param_groups"])
                for theirs, mine in zip(group["params"], mine_group["params"])}
        converted = {"param_groups": [
            {"lr": float(group["lr"]), "betas": [float(beta) for beta in group["betas"]], "eps": float(group["eps"]),
             "weight_decay": float(group["weight_decay"]), "params": mine["params"]}
            for group, mine in zip(groups, fresh["param_groups"])], "state": {}}
        for index, entries in state.items():
            if set(entries) != {"step", "exp_avg", "exp_avg_sq"}:
                raise ValueError(f"parameter {index} has state {sorted(entries)}, AdamW's is step, exp_avg, "
                                 f"exp_avg_sq (amsgrad is not supported)")
            step = float(entries["step"])
            converted["state"][ours[index]] = {"step": int(step), "m": _numpy(entries["exp_avg"], torch, np.float32),
                                               "v": _numpy(entries["exp_avg_sq"], torch, np.float32)}
        return converted
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        notes.append(f"{source!r}: its optimizer state is not AdamW over nanoGPT's two groups ({error}); AdamW "
                     f"starts afresh")
        return fresh


def _nanogpt_train_config(config, model, notes):
    """Our TrainConfig (as a dict) from nanoGPT's config: the settings both have, the model's shape from
    model_args, and the machine's settings left to the machine that resumes."""
    known = {item.name for item in fields(TrainConfig)}
    shape = {name: getattr(model, name) for name in ("block_size", "n_layer", "n_head", "n_embd", "dropout", "bias")}
    values = {name: value for name, value in (config or {}).items() if name in known and name not in NOT_CARRIED}
    try:
        return asdict(TrainConfig(**{**values, **shape}))
    except (TypeError, ValueError) as error:
        notes.append(f"nanoGPT's config is not usable here ({error}); the run settings are this project's "
                     f"defaults, with the model's shape")
        return asdict(TrainConfig(**shape))


def _numpy(tensor, torch, dtype=None):
    """A CPU numpy copy of a torch tensor; bfloat16, which numpy lacks, goes through float32."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    array = tensor.numpy().copy()
    return array if dtype is None else array.astype(dtype, copy=False)


# ----------------------------------------------------------------------------------------------------------
# what every import fills in the same way

def _imported(path, config, model_state, tokenizer, iter_num, best_val_loss, train_config, notes):
    """A Checkpoint for imported weights: a fresh AdamW's state and generators seeded as a fresh run's, which a
    reader may replace with the file's own."""
    train_config = train_config if train_config is not None else asdict(TrainConfig(
        **{name: getattr(config, name) for name in ("block_size", "n_layer", "n_head", "n_embd", "dropout", "bias")}))
    seed = int(train_config.get("seed", TrainConfig.seed))
    model = GPT(config, seed=seed)   # its dropout generator is the one a fresh run with this seed starts with
    return Checkpoint(path=path, iter_num=iter_num, best_val_loss=best_val_loss, model_state=model_state,
                      optimizer_state=_fresh_optimizer(model, train_config).state_dict(), scaler_state={},
                      train_config=train_config, model_config=config, tokenizer=tokenizer,
                      generators={"batch": Batches.seeded(seed).bit_generator.state,
                                  "dropout": model.dropout_generator.bit_generator.state})


def _fresh_optimizer(model, train_config):
    """The AdamW a run with these settings starts with (gpt/step.py's configure_optimizers)."""
    get = lambda name: train_config.get(name, getattr(TrainConfig, name))  # noqa: E731
    return configure_optimizers(model, get("weight_decay"), get("learning_rate"), (get("beta1"), get("beta2")))


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _torch():
    try:
        import torch
    except ImportError:
        raise ConversionError("reading or writing nanoGPT's .pt needs PyTorch, which is not installed: pip install "
                              "torch (nanoGPT's own requirement; this package does not need it otherwise)") from None
    return torch


def _safetensors():
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise ConversionError("reading or writing .safetensors needs the safetensors package: "
                              "pip install -e '.[safetensors]'") from None
    return safetensors


READERS = {".npz": read_npz, ".safetensors": read_safetensors, ".pt": read_pt}
WRITERS = {".npz": write_npz, ".safetensors": write_safetensors}
