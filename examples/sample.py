"""Generate text from a checkpoint that train_char_gpt.py saved (nanoGPT's sample.py).

    python examples/sample.py                                   # from out-shakespeare-char/ckpt.npz
    python examples/sample.py --start "ROMEO:" --num-tokens 500 --temperature 0.8 --top-k 200 --seed 7

The model predicts a distribution over the next character; one is drawn, appended, and fed back in, num-tokens
times. temperature < 1 sharpens the distribution (safer, more repetitive text), > 1 flattens it; top-k keeps only
the k likeliest characters at each draw.
"""
import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's packages, installed or not

from gpt.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, restore  # noqa: E402
from gpt.config import TrainConfig  # noqa: E402
from gpt.model import GPT  # noqa: E402
from tinygrad_ed import Tensor, cuda_available  # noqa: E402
from tinygrad_ed.device import require_cuda  # noqa: E402
from tinygrad_ed.device import DEVICES  # noqa: E402

DEFAULT_CHECKPOINT = os.path.join(TrainConfig.out_dir, CHECKPOINT_NAME)  # where train_char_gpt.py saves by default


def main(argv=None):
    parser = argparse.ArgumentParser(description="generate text from a trained character GPT")
    parser.add_argument("--checkpoint", default=None,
                        help=f"the ckpt.npz to load (default: {DEFAULT_CHECKPOINT}, where train_char_gpt.py saves)")
    parser.add_argument("--out-dir", "--out_dir", default=None,
                        help="load OUT_DIR/ckpt.npz: the folder train_char_gpt.py --out-dir saved into")
    parser.add_argument("--start", default="\n", help="the text to continue (default: %(default)r)")
    parser.add_argument("--num-tokens", "--num_tokens", "--max-new-tokens", "--max_new_tokens", type=int, default=500,
                        help="characters to generate (default: %(default)s)")
    parser.add_argument("--num-samples", "--num_samples", type=int, default=1,
                        help="independent samples (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="> 0; lower is more conservative (default: %(default)s)")
    parser.add_argument("--top-k", "--top_k", type=int, default=200,
                        help="draw from the k likeliest; 0 for all (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1337,
                        help="the same seed gives the same text (default: %(default)s)")
    parser.add_argument("--device", choices=DEVICES, default=None,
                        help="cpu or cuda (default: cuda when cupy sees a GPU, else cpu)")
    args = parser.parse_args(argv)
    for flag, value, ok, requirement in (
            ("--num-tokens", args.num_tokens, args.num_tokens >= 0, ">= 0"),
            ("--num-samples", args.num_samples, args.num_samples >= 1, ">= 1"),
            ("--top-k", args.top_k, args.top_k >= 0, ">= 0 (0 for all)"),
            ("--temperature", args.temperature, math.isfinite(args.temperature) and args.temperature > 0,
             "a finite number > 0"),
            ("--seed", args.seed, 0 <= args.seed < 2 ** 63, ">= 0")):
        if not ok:
            parser.error(f"{flag} must be {requirement}, got {value}")

    if args.checkpoint and args.out_dir:
        parser.error("give --checkpoint or --out-dir, not both")
    args.checkpoint = args.checkpoint or os.path.join(args.out_dir or TrainConfig.out_dir, CHECKPOINT_NAME)
    if args.device == "cuda":
        try:
            require_cuda()
        except RuntimeError as error:  # why: no cupy, no GPU, no NVRTC or no cuBLAS, with the fix
            parser.error(str(error))
    if not os.path.isfile(args.checkpoint):
        sys.exit(f"error: no checkpoint file at {args.checkpoint}: train one first with "
                 f"python examples/train_char_gpt.py (or point --checkpoint / --out-dir at one)")
    try:
        checkpoint = load_checkpoint(args.checkpoint)
        device = args.device or ("cuda" if cuda_available() else "cpu")
        model = GPT(checkpoint.model_config, device=device)
        restore(checkpoint, model)
    except CheckpointError as error:
        sys.exit(f"error: {error}")
    model.eval()  # no dropout while generating
    tokenizer = checkpoint.tokenizer
    try:
        start = tokenizer.encode(args.start)
    except ValueError as error:
        parser.error(f"--start: {error}")
    if len(start) == 0:
        parser.error("--start needs at least one character for the model to continue")

    print(f"loaded {args.checkpoint} (iteration {checkpoint.iter_num}, best val loss {checkpoint.best_val_loss:.4f})")
    generator = np.random.default_rng(args.seed)
    idx = Tensor(start[None, :], device=device)  # (1, T)
    for _ in range(args.num_samples):
        out = model.generate(idx, args.num_tokens, temperature=args.temperature, top_k=args.top_k or None,
                             generator=generator)
        print(tokenizer.decode(out.numpy()[0]))
        print("---------------")


if __name__ == "__main__":
    main()
