"""Sums, means and maxima over the last axis (rows) and over every other axis (columns), for the ops' formulas.

Why a module for something as plain as a sum: numpy pays a fixed cost per row when it reduces over a short last axis
(a row of 64 attention scores, 65 logits, 128 channels), and a GPT's elementwise time is mostly such rows. On numpy
the same sums as one matrix-vector product run in BLAS several times faster (LayerNorm 1.1 ms faster per cpu-config
iteration; per attention layer a row sum 42 → 8 µs), and a row maximum taken where argmax points is twice as fast as
numpy's max (91 → 45 µs). Those were measured on numpy only, so only numpy gets them; every other array module (cupy)
gets its own sum and max.

float16 sums accumulate in float32, and come back as float32: float16's largest value is 65,504 (the summed losses of
one GPU-preset batch, 16,384 positions of ~4.17, already pass it) and its 11-bit significand stops counting at 2,048.
The op that asked casts its result back to float16 where it is done with the statistics.
"""
import numpy as np


def accumulator(dtype):
    """The dtype a sum of `dtype` values accumulates in: float32 for float16, the dtype itself for every other."""
    return np.dtype(np.float32) if np.dtype(dtype) == np.float16 else np.dtype(dtype)


def wide_sum(x, axis=None, keepdims=False):
    """Σ over `axis` as x.sum, accumulated (and returned) in accumulator(x.dtype): float32 for float16."""
    return x.sum(axis=axis, keepdims=keepdims, dtype=accumulator(x.dtype) if x.dtype.kind == "f" else None)


def row_sum(xp, x, weight=1.0):
    """weight · Σ over the last axis, kept as an axis of size 1 (float32 for float16 x)."""
    dtype = accumulator(x.dtype)
    if xp is np:  # x @ (weight, weight, ...): one BLAS matrix-vector product
        return xp.matmul(x, xp.full(x.shape[-1], weight, dtype=dtype))[..., None]
    total = wide_sum(x, axis=-1, keepdims=True)
    return total * dtype.type(weight) if weight != 1.0 else total


def row_mean(xp, x):
    """The mean over the last axis, kept as an axis of size 1 (float32 for float16 x)."""
    return row_sum(xp, x, 1 / x.shape[-1])


def row_max(xp, x):
    """The maximum over the last axis, kept as an axis of size 1."""
    if xp is np:  # where the largest entry is, then its value: numpy's argmax over a short axis beats its max
        return xp.take_along_axis(x, x.argmax(axis=-1)[..., None], axis=-1)
    return x.max(axis=-1, keepdims=True)


def column_sum(xp, x):
    """Σ over every axis but the last: shape (C,) for x of shape (..., C) (float32 for float16 x)."""
    rows = x.reshape(-1, x.shape[-1])
    if xp is np:  # ones(N) @ x, again through BLAS
        return xp.matmul(xp.ones(rows.shape[0], dtype=accumulator(x.dtype)), rows)
    return wide_sum(rows, axis=0)
