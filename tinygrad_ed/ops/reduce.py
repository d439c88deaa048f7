"""Reductions. Their adjoint is broadcasting: every input element that fed an output gets that output's gradient.
`axis` arrives checked (Tensor's reduction_axes): None for every axis, else a sorted tuple of axes.
A float16 sum accumulates in float32 (tinygrad_ed/fast/rows.py) and is rounded to float16 once, at the end."""
import numpy as np

from tinygrad_ed.fast.rows import wide_sum
from tinygrad_ed.tensor import Function


def _kept_shape(shape, axis):
    """The output shape with the reduced axes kept as size 1, so a gradient broadcasts back over them."""
    return tuple(1 if axis is None or i in axis else n for i, n in enumerate(shape))


def _drop_kept(kept, axis, keepdims):
    """A result computed with keepdims=True, with the reduced axes removed unless `keepdims`."""
    return kept if keepdims else kept.reshape([n for i, n in enumerate(kept.shape) if axis is not None and i not in axis])


class Sum(Function):
    def forward(self, a, axis, keepdims):
        total = self._total(a, axis, keepdims)
        return total.astype(a.dtype, copy=False) if a.dtype.kind == "f" else total

    def _total(self, a, axis, keepdims):
        self.input_shape, self.kept_shape = a.shape, _kept_shape(a.shape, axis)
        return wide_sum(a, axis=axis, keepdims=keepdims)

    def backward(self, grad):  # ∂(Σ a)/∂a_i = 1: copy the gradient to every summed element
        return self.xp.broadcast_to(grad.reshape(self.kept_shape), self.input_shape)


class Mean(Sum):
    """Σ a / n, n the number of elements each output combines. One op rather than sum() · (1/n): a float16 sum of
    100,000 ones is inf, their mean 1.0, because the total is divided while it is still float32. Over no elements
    it is nan, as in PyTorch."""
    promotion = "float"   # the mean of integers is a float (float32)

    def forward(self, a, axis, keepdims):
        total = self._total(a, axis, keepdims)
        self.inverse_count = total.dtype.type(total.size / a.size if a.size else np.nan)
        return (total * self.inverse_count).astype(a.dtype, copy=False)

    def backward(self, grad):  # ∂(Σ a / n)/∂a_i = 1/n
        return super().backward(grad * grad.dtype.type(self.inverse_count))


class Max(Function):
    extreme = "max"

    def forward(self, a, axis, keepdims):
        kept = getattr(a, self.extreme)(axis=axis, keepdims=True)
        # where the extreme was taken; a NaN is the extreme of its whole row (it propagates), so it takes the gradient
        self.is_extreme = (a == kept) | (a != a)
        self.axis = axis
        return _drop_kept(kept, axis, keepdims)

    def backward(self, grad):
        # ∂max/∂a_i = 1 for the maximal element, 0 elsewhere; ties share the gradient equally
        ties = self.is_extreme.sum(axis=self.axis, keepdims=True)
        kept_shape = _kept_shape(self.is_extreme.shape, self.axis)
        return self.is_extreme * (grad.reshape(kept_shape) / ties).astype(grad.dtype)


class Min(Max):
    """As Max, for the smallest element."""
    extreme = "min"


class LogSumExp(Function):
    """log Σ e^(a_i) = m + log Σ e^(a_i - m) with m = max a, so that no e^(a_i) overflows (m is taken as 0 where it is
    ±inf, so that a row of -inf gives -inf, not inf - inf = nan)."""
    promotion = "float"

    def forward(self, a, axis, keepdims):
        xp = self.xp
        m = a.max(axis=axis, keepdims=True)
        m = xp.where(xp.isfinite(m), m, a.dtype.type(0))
        self.a, self.kept = a, m + xp.log(xp.exp(a - m).sum(axis=axis, keepdims=True))
        return _drop_kept(self.kept, axis, keepdims)

    def backward(self, grad):  # ∂/∂a_i log Σ e^a = e^(a_i - logsumexp) = softmax(a)_i
        return self.xp.exp(self.a - self.kept) * grad.reshape(self.kept.shape)
