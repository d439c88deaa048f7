"""The ops that take more than one tensor or a non-tensor argument, as functions (like torch.nn.functional).
Each is a thin wrapper: it checks its arguments and calls one Function from tinygrad_ed.ops. A tensor argument may
also be a numpy array (tensor_argument), as everywhere in the engine."""
from tinygrad_ed.dtypes import is_floating
from tinygrad_ed.ops import layers, movement
from tinygrad_ed.tensor import Tensor, check_axis, tensor_argument, where  # noqa: F401  (where is part of this API)


def _tensors(name, **arguments):
    """The arguments of op `name` as Tensors (None stays None), numpy arrays placed on the first Tensor's device."""
    device = next((value.device for value in arguments.values() if isinstance(value, Tensor)), "cpu")
    return [None if value is None else tensor_argument(name, argument, value, device)
            for argument, value in arguments.items()]


def _check_same_device(name, tensor, other):
    if other.device != tensor.device:
        raise RuntimeError(f"{name}: tensors are on different devices, {tensor.device!r} and {other.device!r}")


def _check_ids(name, ids, count, ignore_index=None):
    """Integer ids in [0, count): numpy would silently wrap a negative id, and cupy does not check at all.

    On a GPU, reading the ids' min and max back is a host sync that stalls the queue of kernels, so ids whose range
    was measured on the host before the copy (Tensor.id_range: the batches, generation's context, the positions) are
    checked against that range instead; any other ids, and ids outside their range, are read back to name the id."""
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer ids, got dtype {ids.dtype}")
    if ids.size == 0:
        return
    if ids.id_range is not None and ids.device != "cpu" and 0 <= ids.id_range[0] and ids.id_range[1] < count:
        return
    values = ids.data if ignore_index is None else ids.data[ids.data != ignore_index]
    if values.size and (int(values.min()) < 0 or int(values.max()) >= count):
        bad = int(values.min()) if int(values.min()) < 0 else int(values.max())
        raise ValueError(f"{name}: id {bad} is outside [0, {count})")


def _sequence(name, tensors):
    if isinstance(tensors, (tuple, list)) and tensors:
        return _tensors(name, **{f"tensors[{i}]": tensor for i, tensor in enumerate(tensors)})
    raise ValueError(f"{name}: expected a non-empty list or tuple of tensors, got {tensors!r}")


def cat(tensors, axis=0):
    """Concatenate along an existing axis (torch.cat)."""
    tensors = _sequence("cat", tensors)
    return movement.Cat.apply(*tensors, axis=check_axis("cat", axis, tensors[0].ndim))


def stack(tensors, axis=0):
    """Stack same-shaped tensors along a new axis (torch.stack)."""
    tensors = _sequence("stack", tensors)
    return movement.Stack.apply(*tensors, axis=check_axis("stack", axis, tensors[0].ndim + 1))


def linear(x, weight, bias=None):
    """x Wᵀ + b, with weight (out, in) and bias (out,)."""
    x, weight, bias = _tensors("linear", x=x, weight=weight, bias=bias)
    return layers.LinearFunction.apply(x, weight, *([bias] if bias is not None else []))


def cross_entropy(logits, targets, ignore_index=None, label_smoothing=0.0):
    """Mean of -log softmax(logits)[target] over all positions whose target is not `ignore_index`.
    logits (..., V) float, targets (...) integer ids in [0, V). With label_smoothing ε in [0, 1] the target is
    (1 - ε) on the right id and ε/V spread over all V, as torch's."""
    logits, targets = _tensors("cross_entropy", logits=logits, targets=targets)
    if not is_floating(logits.dtype):
        raise TypeError(f"cross_entropy: logits must be a floating-point tensor, got dtype {logits.dtype} "
                        f"(an integer loss would be truncated): pass logits.float()")
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    _check_same_device("cross_entropy", logits, targets)
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: targets shape {targets.shape} must equal logits shape without its last "
                         f"axis, {logits.shape[:-1]}")
    _check_ids("cross_entropy targets", targets, logits.shape[-1], ignore_index)
    return layers.CrossEntropy.apply(logits, targets=targets.data, ignore_index=ignore_index,
                                     label_smoothing=label_smoothing)


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """Normalise the last axis to mean 0, variance 1, then scale by weight and shift by bias."""
    x, weight, bias = _tensors("layer_norm", x=x, weight=weight, bias=bias)
    if bias is not None and weight is None:
        raise ValueError("layer_norm: a bias needs a weight (pass ones as the weight)")
    params = [tensor for tensor in (weight, bias) if tensor is not None]
    for tensor in params:
        if tensor.shape != x.shape[-1:]:
            raise ValueError(f"layer_norm: weight/bias shape {tensor.shape} must be ({x.shape[-1]},), the last "
                             f"axis of x {x.shape}")
    return layers.LayerNormFunction.apply(x, *params, eps=eps)


def embedding(weight, idx):
    """Rows of `weight` (V, C) picked by the integer ids `idx` (...): output (..., C)."""
    weight, idx = _tensors("embedding", weight=weight, idx=idx)
    _check_same_device("embedding", weight, idx)
    _check_ids("embedding", idx, weight.shape[0])
    return layers.EmbeddingFunction.apply(weight, idx=idx.data)


def _default_generator(tensor, generator):
    return generator if generator is not None else tensor.xp.random.default_rng()


def dropout(x, p, training=True, generator=None):
    """Zero elements with probability p during training (scaled by 1/(1-p)); the identity otherwise.
    `generator`: a numpy (or cupy) random Generator, so runs are reproducible."""
    x, = _tensors("dropout", x=x)
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    return layers.DropoutFunction.apply(x, p=p, generator=_default_generator(x, generator))


def scaled_dot_product_attention(q, k, v, causal=True, dropout_p=0.0, generator=None):
    """softmax(q kᵀ / √D, causal mask) v for q, k, v of shape (B, H, T, D), with optional dropout on the weights."""
    q, k, v = _tensors("scaled_dot_product_attention", q=q, k=k, v=v)
    if not (q.shape == k.shape == v.shape) or q.ndim != 4:
        raise ValueError(f"scaled_dot_product_attention: q, k, v must share one (B, H, T, D) shape, got "
                         f"{q.shape}, {k.shape}, {v.shape}")
    generator = _default_generator(q, generator) if dropout_p > 0 else None
    return layers.Attention.apply(q, k, v, causal=causal, dropout_p=dropout_p, generator=generator)


