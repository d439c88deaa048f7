"""Which parameters get weight decay: the two groups of nanoGPT's configure_optimizers (gpt/step.py builds AdamW
over them)."""


def weight_decay_groups(named_parameters, weight_decay):
    """Two parameter groups for AdamW: matrices decay, vectors do not.

    Every parameter with ndim >= 2 (the weights of matmuls and embeddings) gets `weight_decay`; the rest
    (biases, LayerNorm weights) get 0.0: pulling a LayerNorm gain toward 0 would switch its features off.
    `named_parameters` is a dict or an iterable of (name, Tensor) pairs; parameters that do not require grad
    are left out, and a tied parameter listed under two names (wte and lm_head) is taken once.
    """
    pairs = named_parameters.items() if isinstance(named_parameters, dict) else named_parameters
    decay, no_decay, seen = [], [], set()
    for _, param in pairs:
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]
