"""nanoGPT's learning-rate schedule: linear warmup, then cosine decay down to min_lr, then min_lr for good."""
import math


def get_lr(it, learning_rate, warmup_iters, lr_decay_iters, min_lr):
    """The learning rate for iteration `it` (counting from 0), as nanoGPT's train.py computes it.

    1) it < warmup_iters:               learning_rate · (it + 1) / (warmup_iters + 1)
    2) it > lr_decay_iters:             min_lr
    3) in between, with ratio = (it − warmup_iters) / (lr_decay_iters − warmup_iters) ∈ [0, 1]:
                                        min_lr + ½ (1 + cos(π · ratio)) · (learning_rate − min_lr)
    Warmup keeps the first steps small while Adam's v is still a poor estimate; the cosine then eases
    from learning_rate at the end of warmup to min_lr at lr_decay_iters.
    """
    if it < 0:
        raise ValueError(f"iteration it must be >= 0, got {it}")
    if warmup_iters < 0:
        raise ValueError(f"warmup_iters must be >= 0, got {warmup_iters}")
    if lr_decay_iters <= warmup_iters:
        raise ValueError(f"lr_decay_iters ({lr_decay_iters}) must be greater than warmup_iters ({warmup_iters}): "
                         f"the cosine phase runs between them")
    if not 0 <= min_lr <= learning_rate:
        raise ValueError(f"need 0 <= min_lr <= learning_rate, got min_lr={min_lr}, learning_rate={learning_rate}")
    # 1) linear warmup for warmup_iters steps
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    # 2) after lr_decay_iters, hold at min_lr
    if it > lr_decay_iters:
        return min_lr
    # 3) in between, cosine decay down to min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # goes from 1 to 0
    return min_lr + coeff * (learning_rate - min_lr)
