"""Reductions. Their adjoint is broadcasting: every input element that fed an output gets that output's gradient.
A float16 sum accumulates in float32 (tinygrad_ed/fast/rows.py) and is rounded to float16 once, at the end."""
import numpy as np

from tinygrad_ed.fast.rows import wide_sum
from tinygrad_ed.tensor import Function


def _reduced_axes(ndim, axis):
    """The axes a reduction over `axis` removes, as a tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted({a % ndim for a in ((axis,) if isinstance(axis, int) else axis)}))


def _kept_shape(shape, axes):
    """The output shape with the reduced axes kept as size 1, so a gradient broadcasts back over them."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Sum(Function):
    def forward(self, a, axis, keepdims):
        total = self._total(a, axis, keepdims)
        return total.astype(a.dtype, copy=False) if a.dtype.kind == "f" else total

    def _total(self, a, axis, keepdims):
        self.input_shape = a.shape
        self.kept_shape = _kept_shape(a.shape, _reduced_axes(a.ndim, axis))
        return wide_sum(a, axis=axis, keepdims=keepdims)

    def backward(self, grad):  # ∂(Σ a)/∂a_i = 1: copy the gradient to every summed element
        return self.xp.broadcast_to(grad.reshape(self.kept_shape), self.input_shape)


class Mean(Sum):
    """Σ a / n, n the number of elements each output combines. One op rather than sum() · (1/n): a float16 sum of
    100,000 ones is inf, their mean 1.0, because the total is divided while it is still float32."""

    def forward(self, a, axis, keepdims):
        total = self._total(a, axis, keepdims)
        dtype = total.dtype if total.dtype.kind == "f" else np.dtype(np.float64)  # the mean of ids is a float
        self.inverse_count = dtype.type(total.size / a.size if a.size else np.nan)
        return (total * self.inverse_count).astype(a.dtype if a.dtype.kind == "f" else dtype, copy=False)

    def backward(self, grad):  # ∂(Σ a / n)/∂a_i = 1/n
        return super().backward(grad * grad.dtype.type(self.inverse_count))


class Max(Function):
    def forward(self, a, axis, keepdims):
        self.axes = _reduced_axes(a.ndim, axis)
        kept = a.max(axis=self.axes, keepdims=True)
        self.is_max = a == kept  # where the maximum was taken
        return kept if keepdims else kept.reshape([n for i, n in enumerate(kept.shape) if i not in self.axes])

    def backward(self, grad):
        # ∂max/∂a_i = 1 for the maximal element, 0 elsewhere; ties share the gradient equally
        ties = self.is_max.sum(axis=self.axes, keepdims=True)
        kept_shape = _kept_shape(self.is_max.shape, self.axes)
        return self.is_max * (grad.reshape(kept_shape) / ties).astype(grad.dtype)
