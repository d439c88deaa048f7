"""The chapter's part 5 debugging script (第五部分：实战调试技巧, debug_training.py), on tinygrad_ed.

  1. a tiny GPT: 2 layers, 2 heads, 64 channels, a 16-character context, the 65-character vocabulary
  2. random token ids X, Y of shape (4, 16) (no text needed: this checks the machinery, not the learning)
  3. forward: the loss, next to ln 65 ≈ 4.17, the loss of a uniform guess (FAQ Q1, 为什么loss一开始很高？)
  4. backward: every parameter's gradient mean / std / max(abs), under nanoGPT's parameter names
  5. the global gradient norm, the number clipping looks at (步骤4) and health monitoring watches (监控训练健康度)

Run:  python examples/debug_training.py [--seed N] [--graph PATH]
      --graph PATH also draws the autograd graph of the loss, one node per transformer block (.dot text, or .svg/.png
      with Graphviz's dot): each block's output, its value and its gradient ∂loss/∂output
"""
import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's packages, installed or not

from gpt import GPT, GPTConfig  # noqa: E402
from optim import global_grad_norm  # noqa: E402
from tinygrad_ed import Tensor  # noqa: E402
from tinygrad_ed.graph import output_format, record_modules, render, trace  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description="print the loss and every parameter's gradient statistics")
    parser.add_argument("--seed", type=int, default=1337, help="seed of the weights and of the random X, Y")
    parser.add_argument("--graph", metavar="PATH",
                        help="draw the autograd graph to PATH, one node per block: .dot writes the DOT text, .svg or "
                             ".png run Graphviz's dot (apt install graphviz)")
    args = parser.parse_args(argv)
    if args.graph is not None:
        try:
            output_format(args.graph)
        except (ValueError, RuntimeError) as error:
            parser.error(f"--graph: {error}")

    # 1. a tiny model, as the chapter's GPTConfig(vocab_size=65, n_layer=2, n_head=2, n_embd=64, block_size=16)
    config = GPTConfig(vocab_size=65, n_layer=2, n_head=2, n_embd=64, block_size=16)
    model = GPT(config, seed=args.seed)
    print(f"model: {model.num_parameters():,} parameters, {config}")

    # 2. dummy data: torch.randint(0, 65, (4, 16)) becomes a seeded numpy generator
    generator = np.random.default_rng(args.seed)
    X = Tensor(generator.integers(0, config.vocab_size, size=(4, 16)))   # (B, T) = (4, 16) int64 token ids
    Y = Tensor(generator.integers(0, config.vocab_size, size=(4, 16)))   # (B, T) targets

    # 3. forward (recording which module makes which node, for --graph's one node per block)
    with record_modules(model) as calls:
        logits, loss = model(X, Y)                                       # logits (4, 16, 65)
    graph = trace(loss, model, modules=calls) if args.graph else None    # before backward(), which frees the graph
    print(f"Loss: {loss.item():.4f}   (ln {config.vocab_size} = {math.log(config.vocab_size):.4f}: a model that "
          f"spreads its probability evenly over {config.vocab_size} characters)")

    # 4. backward, then the gradient of every parameter
    loss.backward()
    print("\n参数梯度统计 (gradient statistics per parameter):")
    for name, param in model.named_parameters():
        if param.grad is not None:
            grad = param.grad.astype(np.float64)
            # NOTE: std with ddof=1, the unbiased estimate torch's param.grad.std() computes
            grad_std = grad.std(ddof=1) if grad.size > 1 else 0.0
            print(f"{name:40s} | mean: {grad.mean():+.6f}, std: {grad_std:.6f}, max: {np.abs(grad).max():.6f}")
    print("(lm_head.weight is transformer.wte.weight: the two are tied, so it is listed once, as in nanoGPT)")
    print("(a mean that prints as ±0.000000 is expected where a LayerNorm or softmax follows: their backward "
          "removes the mean)")

    # 5. the global gradient norm: sqrt of the sum of every gradient entry squared
    total_norm = global_grad_norm(model.parameters()).item()
    print(f"\nGradient norm: {total_norm:.4f}   (healthy training keeps it roughly in 0.1-10, FAQ Q4)")

    if graph is not None:   # depth 2: GPT → transformer → its wte, wpe, blocks h.N and ln_f, one node each
        render(graph.to_dot(depth=2, title=f"the tiny GPT's autograd graph, one node per block (seed {args.seed}); "
                                           f"grad = ∂loss/∂node"), args.graph)
        print(f"autograd graph drawn to {args.graph}")


if __name__ == "__main__":
    main()
