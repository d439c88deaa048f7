"""Convert a checkpoint between this project, nanoGPT and the safetensors ecosystem (gpt/exchange.py).

    python examples/convert_checkpoint.py out-shakespeare-char/ckpt.npz nanogpt-out/ckpt.pt      # to nanoGPT
    python examples/convert_checkpoint.py nanogpt-out/ckpt.pt imported/ckpt.npz                  # from nanoGPT
    python examples/convert_checkpoint.py out-shakespeare-char/ckpt.npz model.safetensors         # weights only

The extensions choose the formats: .npz (this project's), .safetensors (the weights under nanoGPT's names, with
model_args and the vocabulary in the metadata), .pt (nanoGPT's ckpt.pt; its vocabulary is the meta.pkl beside it,
which an export writes and an import reads, or --meta names). OUT is never written over unless --force, and IN
never. An imported .npz works with examples/sample.py --checkpoint and train_char_gpt.py --resume --out-dir.
.pt needs PyTorch (pip install torch) and .safetensors the safetensors package (pip install -e '.[safetensors]').
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's packages, installed or not

from gpt.checkpoint import CheckpointError  # noqa: E402
from gpt.exchange import DEFAULT_DATASET, FORMATS, META_NAME, convert, kind  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="convert a checkpoint: " + ", ".join(f"{ext} ({what})" for ext, what in FORMATS.items()))
    parser.add_argument("source", metavar="IN", help="the checkpoint to read")
    parser.add_argument("target", metavar="OUT", help="the file to write; its extension says the format")
    parser.add_argument("--force", action="store_true",
                        help=f"replace OUT (and, for a .pt, the {META_NAME} beside it) when it exists")
    parser.add_argument("--meta", default=None,
                        help=f"the vocabulary of a .pt or .safetensors import (nanoGPT's {META_NAME}; default for a "
                             f".pt: the {META_NAME} beside it)")
    parser.add_argument("--dataset", default=None,
                        help="with a .pt OUT: the data set name written into its config; nanoGPT's sample.py reads "
                             f"data/DATASET/meta.pkl (default: {DEFAULT_DATASET}, tiny Shakespeare's characters)")
    args = parser.parse_args(argv)
    if args.dataset is not None and os.path.splitext(args.target)[1].lower() != ".pt":
        parser.error("--dataset names nanoGPT's data folder in a .pt's config; OUT is not a .pt")
    try:
        checkpoint, notes = convert(args.source, args.target, force=args.force, meta=args.meta,
                                    dataset=args.dataset or DEFAULT_DATASET)
    except CheckpointError as error:
        sys.exit(f"error: {error}")
    config = checkpoint.model_config
    print(f"{args.source} ({FORMATS[kind(args.source)]}) -> {args.target} ({FORMATS[kind(args.target)]})")
    print(f"  iteration {checkpoint.iter_num}, best val loss {checkpoint.best_val_loss:.4f}; {config.n_layer} layers, "
          f"{config.n_head} heads, n_embd {config.n_embd}, block_size {config.block_size}, vocab_size "
          f"{config.vocab_size}, bias {config.bias}, {config.dtype}")
    for note in notes:
        print(f"  note: {note}")
    if kind(args.target) == ".pt":
        meta = os.path.join(os.path.dirname(os.path.abspath(args.target)), META_NAME)
        print(f"  wrote the vocabulary to {meta}; nanoGPT's sample.py reads it from "
              f"data/{args.dataset or DEFAULT_DATASET}/{META_NAME}; its train.py resumes with --init_from=resume "
              f"--out_dir={os.path.dirname(args.target) or '.'} --block_size={config.block_size}")
    elif kind(args.target) == ".npz":
        print(f"  sample from it: python examples/sample.py --checkpoint {args.target}")
        if os.path.basename(args.target) == "ckpt.npz":
            print(f"  train on from it: python examples/train_char_gpt.py --resume --out-dir "
                  f"{os.path.dirname(args.target) or '.'}")


if __name__ == "__main__":
    main()
