"""The one table of ops that tests/test_ops.py runs every op-level test over: the forward pass against plain numpy,
the backward against finite differences, float32 staying float32, and cpu against cuda.

An entry is an Op:
  function   (*tensors, **arguments) -> Tensor: the op as a learner calls it
  inputs     a strategy of tests/strategies.py drawing (float64 arrays, arguments): the arrays are the op's
             differentiable inputs, the arguments everything else (axes, ids, masks, seeds) as numpy values
  reference  (*arrays, **arguments) -> array: the same computation written the obvious way in numpy (or math), or
             None where the op has no simpler statement than itself
  rtol, atol how close the forward must come to the reference (float64)
  gradcheck  options for tinygrad_ed.gradcheck (eps, tolerance) where the defaults do not fit
  keeps_dtype whether float32 inputs give a float32 output (a cast does not)
"""
import math
import operator
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

import strategies as s
from tinygrad_ed import (Tensor, cat, cross_entropy, dropout, embedding, layer_norm, linear,
                         scaled_dot_product_attention, stack, where)


@dataclass(frozen=True)
class Op:
    name: str
    function: Callable
    inputs: object
    reference: Optional[Callable] = None
    rtol: float = 1e-7
    atol: float = 0.0
    gradcheck: dict = field(default_factory=dict)
    keeps_dtype: bool = True


def _on(tensor, array):
    """A constant argument (ids, a mask) as a Tensor on `tensor`'s device."""
    return Tensor(array, device=tensor.device)


def softmax_reference(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax_reference(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def gelu_reference(x):
    """x·Φ(x) with math.erf, element by element."""
    return x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def gelu_tanh_reference(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _cross_entropy(logits, targets, ignore_index):
    kept = targets != ignore_index if ignore_index is not None else np.ones(targets.shape, dtype=bool)
    picked = np.take_along_axis(log_softmax_reference(logits), np.where(kept, targets, 0)[..., None], axis=-1)
    picked = picked[..., 0]
    return -picked[kept].mean()  # the mean over kept positions only, not over all of them


def _layer_norm(x, weight=None, bias=None, eps=1e-5):
    out = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return out * (weight if weight is not None else 1.0) + (bias if bias is not None else 0.0)


def _attention(q, k, v, causal):
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])              # (B, H, T, T)
    if causal:
        scores = np.where(np.tril(np.ones(scores.shape[-2:], dtype=bool)), scores, -np.inf)
    return softmax_reference(scores) @ v                                       # (B, H, T, D)


def _dropout(x, p, seed):
    keep = np.random.default_rng(seed).random(x.shape, dtype="float32") >= p
    return x * keep / (1 - p)


def _smoothed_cross_entropy(logits, targets, ignore_index, label_smoothing):
    """torch's definition: (1 - ε)·the one-hot loss + ε·the mean over classes of -log p, over kept positions."""
    kept = targets != ignore_index if ignore_index is not None else np.ones(targets.shape, dtype=bool)
    uniform = -log_softmax_reference(logits).mean(axis=-1)[kept].mean()
    return (1 - label_smoothing) * _cross_entropy(logits, targets, ignore_index) + label_smoothing * uniform


def _logsumexp(x, axis, keepdims):
    m = x.max(axis=axis, keepdims=True)
    out = m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))
    return out if keepdims else out.squeeze(axis=axis)


def _split_pieces(pieces):
    """Every piece of a split, weighted by its position (a gradient routed to the wrong piece shows), in one vector."""
    return cat([(piece * (k + 1.0)).reshape(-1) for k, piece in enumerate(pieces)])


BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv}
nonzero = lambda shape: s.nonzero_arrays(shape, gap=0.5)  # noqa: E731  (the divisor stays away from 1/x's pole)

OPS = [
    # ---- elementwise arithmetic, with broadcasting and with Python numbers ----
    *[Op(name, op, s.elementwise(nonzero, count=2), op) for name, op in BINARY.items()],
    *[Op(f"{name}(x, number)", lambda x, scalar, op=op: op(x, scalar), s.with_scalar(nonzero),
         lambda x, scalar, op=op: op(x, scalar)) for name, op in BINARY.items()],
    *[Op(f"{name}(number, x)", lambda x, scalar, op=op: op(scalar, x), s.with_scalar(nonzero),
         lambda x, scalar, op=op: op(scalar, x)) for name, op in BINARY.items()],
    Op("neg", lambda x: -x, s.elementwise(), np.negative, rtol=1e-12),
    *[Op(f"x ** {n}", lambda x, n=n: x ** n, s.elementwise(s.positive_arrays if n != int(n) or n < 0 else s.arrays),
         lambda x, n=n: x ** n, rtol=1e-12) for n in (0.5, 2, -1, 3, 1.5, -0.5)],
    # ---- elementwise math ----
    Op("exp", lambda x: x.exp(), s.elementwise(), np.exp, rtol=1e-12),
    Op("log", lambda x: x.log(), s.elementwise(s.positive_arrays), np.log, rtol=1e-12),
    Op("sqrt", lambda x: x.sqrt(), s.elementwise(s.positive_arrays), np.sqrt, rtol=1e-12),
    Op("tanh", lambda x: x.tanh(), s.elementwise(), np.tanh, rtol=1e-12),
    Op("sigmoid", lambda x: x.sigmoid(), s.elementwise(lambda shape: s.arrays(shape, -40.0, 40.0)),
       lambda x: 1 / (1 + np.exp(-x)), rtol=1e-12),
    Op("abs", lambda x: x.abs(), s.elementwise(s.nonzero_arrays), np.abs, rtol=1e-12),
    Op("clamp", lambda x, low, high: x.clamp(low, high), s.clamp_inputs(),
       lambda x, low, high: np.minimum(np.maximum(x, -np.inf if low is None else low), np.inf if high is None else high)),
    Op("relu", lambda x: x.relu(), s.elementwise(s.nonzero_arrays), lambda x: np.maximum(x, 0), rtol=1e-12),
    Op("gelu", lambda x: x.gelu(), s.elementwise(), gelu_reference, rtol=1e-12, atol=1e-15),
    Op("gelu(tanh)", lambda x: x.gelu(approximate="tanh"), s.elementwise(), gelu_tanh_reference, rtol=1e-12,
       atol=1e-15),
    # NOTE: the float32 stop rounds to ~2e-7, so this one check differences with a wider eps and tolerance
    Op("astype float32 and back", lambda x: x.astype(np.float32).astype(np.float64), s.elementwise(),
       lambda x: x.astype(np.float32).astype(np.float64), gradcheck=dict(eps=1e-3, tolerance=1e-3), keeps_dtype=False),
    # ---- matmul and reductions ----
    Op("matmul", lambda a, b: a @ b, s.matmul_pair(), operator.matmul, rtol=1e-12, atol=1e-12),
    Op("matmul(1-D)", lambda a, b: a @ b, s.vector_matmul_pair(), operator.matmul, rtol=1e-12, atol=1e-12),
    Op("sum", lambda x, axis, keepdims: x.sum(axis=axis, keepdims=keepdims), s.reduction(),
       lambda x, axis, keepdims: x.sum(axis=axis, keepdims=keepdims), atol=1e-12),
    Op("mean", lambda x, axis, keepdims: x.mean(axis=axis, keepdims=keepdims), s.reduction(),
       lambda x, axis, keepdims: x.mean(axis=axis, keepdims=keepdims), atol=1e-12),
    Op("max", lambda x, axis, keepdims: x.max(axis=axis, keepdims=keepdims), s.reduction(s.distinct_arrays),
       lambda x, axis, keepdims: x.max(axis=axis, keepdims=keepdims)),  # distinct: a tie has no single gradient
    Op("min", lambda x, axis, keepdims: x.min(axis=axis, keepdims=keepdims), s.reduction(s.distinct_arrays),
       lambda x, axis, keepdims: x.min(axis=axis, keepdims=keepdims)),
    # an index has no gradient: the check is that backward gives 0, as finite differences of the index do
    *[Op(f"{name} (as float64)", lambda x, axis, keepdims, name=name: getattr(x, name)(axis=axis, keepdims=keepdims)
         .double(), s.reduction(s.distinct_arrays, single_axis=True),
         lambda x, axis, keepdims, name=name: getattr(np, name)(x, axis=axis, keepdims=keepdims).astype(np.float64),
         keeps_dtype=False) for name in ("argmax", "argmin")],
    Op("logsumexp", lambda x, axis, keepdims: x.logsumexp(axis=axis, keepdims=keepdims),
       s.reduction(lambda shape: s.arrays(shape, -20.0, 20.0)), _logsumexp, rtol=1e-12, atol=1e-12),
    Op("std", lambda x, axis, keepdims, correction: x.std(axis=axis, keepdims=keepdims, correction=correction),
       s.reduction(s.distinct_arrays, correction=True, min_count=2),  # distinct, 2+: √ has no slope at 0
       lambda x, axis, keepdims, correction: x.std(axis=axis, keepdims=keepdims, ddof=correction), rtol=1e-12),
    Op("var", lambda x, axis, keepdims, correction: x.var(axis=axis, keepdims=keepdims, correction=correction),
       s.reduction(correction=True),
       lambda x, axis, keepdims, correction: x.var(axis=axis, keepdims=keepdims, ddof=correction), atol=1e-12),
    # ---- softmax, the loss, normalisation ----
    Op("softmax", lambda x, axis: x.softmax(axis=axis), s.with_axis(lambda shape: s.arrays(shape, -20.0, 20.0)),
       softmax_reference, rtol=1e-12, atol=1e-15),
    Op("log_softmax", lambda x, axis: x.log_softmax(axis=axis),
       s.with_axis(lambda shape: s.arrays(shape, -20.0, 20.0)), log_softmax_reference, rtol=1e-12, atol=1e-12),
    Op("cross_entropy", lambda logits, targets, ignore_index: cross_entropy(logits, _on(logits, targets),
                                                                            ignore_index=ignore_index),
       s.cross_entropy_inputs(), _cross_entropy, rtol=1e-12),
    Op("cross_entropy(label_smoothing)", lambda logits, targets, ignore_index, label_smoothing: cross_entropy(
        logits, _on(logits, targets), ignore_index=ignore_index, label_smoothing=label_smoothing),
       s.cross_entropy_inputs(smoothing=True), _smoothed_cross_entropy, rtol=1e-12),
    Op("layer_norm", lambda x, eps: layer_norm(x, None, None, eps=eps), s.layer_norm_inputs("none"), _layer_norm,
       rtol=1e-10, atol=1e-10),
    Op("layer_norm(weight)", lambda x, w, eps: layer_norm(x, w, None, eps=eps), s.layer_norm_inputs("weight"),
       lambda x, w, eps: _layer_norm(x, w, eps=eps), rtol=1e-10, atol=1e-10),
    Op("layer_norm(weight+bias)", lambda x, w, b, eps: layer_norm(x, w, b, eps=eps),
       s.layer_norm_inputs("weight+bias"), lambda x, w, b, eps: _layer_norm(x, w, b, eps), rtol=1e-10, atol=1e-10),
    # ---- movement ----
    Op("reshape", lambda x, shape: x.reshape(*shape), s.reshape_inputs(), lambda x, shape: x.reshape(shape)),
    Op("permute", lambda x, order: x.permute(*order), s.permute_inputs(), lambda x, order: x.transpose(order)),
    Op("transpose", lambda x, axes: x.transpose(*axes), s.transpose_inputs(),
       lambda x, axes: np.swapaxes(x, *axes)),
    Op(".T", lambda x, order: x.T, s.permute_inputs(), lambda x, order: np.swapaxes(x, -2, -1)),
    Op("squeeze", lambda x, axis: x.squeeze(axis), s.squeeze_inputs(),
       lambda x, axis: x.squeeze(axis=None if axis is None else tuple(a for a in np.atleast_1d(axis) if x.shape[a] == 1))),
    Op("unsqueeze", lambda x, axis: x.unsqueeze(axis), s.with_axis(min_dims=0, new_axis=True), np.expand_dims),
    Op("flatten", lambda x, start, end: x.flatten(start, end), s.flatten_inputs(),
       lambda x, start, end: x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])),
    Op("expand", lambda x, sizes: x.expand(*sizes), s.expand_inputs(),
       lambda x, sizes: np.broadcast_to(x, tuple(x.shape[i - len(sizes) + x.ndim] if n == -1 else n
                                                 for i, n in enumerate(sizes)))),
    Op("tril", lambda x, diagonal: x.tril(diagonal), s.triangle_inputs(), lambda x, diagonal: np.tril(x, diagonal)),
    Op("triu", lambda x, diagonal: x.triu(diagonal), s.triangle_inputs(), lambda x, diagonal: np.triu(x, diagonal)),
    Op("x[basic index]", lambda x, index: x[index], s.basic_index_inputs(), lambda x, index: x[index]),
    Op("x[ndarray of rows]", lambda x, rows: x[rows], s.row_index_inputs(), lambda x, rows: x[rows]),
    Op("x[list of rows]", lambda x, rows: x[rows.tolist()], s.row_index_inputs(), lambda x, rows: x[rows.tolist()]),
    Op("x[Tensor of rows]", lambda x, rows: x[_on(x, rows)], s.row_index_inputs(), lambda x, rows: x[rows]),
    Op("x[rows, cols]", lambda x, rows, cols: x[rows, cols], s.index_pair_inputs(),
       lambda x, rows, cols: x[rows, cols]),
    Op("embedding", lambda weight, ids: embedding(weight, _on(weight, ids)), s.embedding_inputs(),
       lambda weight, ids: weight[ids]),
    Op("masked_fill", lambda x, mask: x.masked_fill(_on(x, mask), -2.0), s.masked_fill_inputs(),
       lambda x, mask: np.where(mask, -2.0, x)),
    Op("where", lambda a, b, condition: where(_on(a, condition), a, b), s.where_inputs(),
       lambda a, b, condition: np.where(condition, a, b)),
    Op("cat", lambda *pieces, axis: cat(list(pieces), axis=axis), s.cat_inputs(),
       lambda *pieces, axis: np.concatenate(pieces, axis=axis)),
    Op("stack", lambda *pieces, axis: stack(list(pieces), axis=axis), s.stack_inputs(),
       lambda *pieces, axis: np.stack(pieces, axis=axis)),
    Op("split", lambda x, size, axis: _split_pieces(x.split(size, axis=axis)), s.split_inputs(),
       lambda x, size, axis: np.concatenate([piece.reshape(-1) * (k + 1.0) for k, piece in enumerate(
           np.split(x, range(size, x.shape[axis], size), axis=axis))])),  # equal pieces, the last may be shorter
    Op("split(sizes)", lambda x, sizes: _split_pieces(x.split(sizes)), s.split_sizes_inputs(),
       lambda x, sizes: np.concatenate([piece.reshape(-1) * (k + 1.0) for k, piece in enumerate(
           np.split(x, np.cumsum(sizes)[:-1], axis=0))])),  # axis 0 by default, as torch.split
    # ---- the layers ----
    Op("dropout", lambda x, p, seed: dropout(x, p, training=True, generator=np.random.default_rng(seed)),
       s.dropout_inputs(), _dropout),  # the same seed for every evaluation: each sees the same mask
    Op("attention", lambda q, k, v, causal: scaled_dot_product_attention(q, k, v, causal=causal),
       s.attention_inputs(), _attention, rtol=1e-12, atol=1e-12),
    Op("attention(dropout)", lambda q, k, v, seed: scaled_dot_product_attention(
        q, k, v, dropout_p=0.3, generator=np.random.default_rng(seed)), s.attention_inputs(dropout=True)),
    Op("linear", lambda x, w: linear(x, w), s.linear_inputs(bias=False), lambda x, w: x @ w.T, rtol=1e-12),
    Op("linear(bias)", lambda x, w, b: linear(x, w, b), s.linear_inputs(bias=True), lambda x, w, b: x @ w.T + b,
       rtol=1e-12),
]
OPS_BY_NAME = {op.name: op for op in OPS}
assert len(OPS_BY_NAME) == len(OPS), "two ops share a name"
