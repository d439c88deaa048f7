"""Reductions. Their adjoint is broadcasting: every input element that fed an output gets that output's gradient."""
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
        self.input_shape = a.shape
        self.kept_shape = _kept_shape(a.shape, _reduced_axes(a.ndim, axis))
        return a.sum(axis=axis, keepdims=keepdims)

    def backward(self, grad):  # ∂(Σ a)/∂a_i = 1: copy the gradient to every summed element
        return self.xp.broadcast_to(grad.reshape(self.kept_shape), self.input_shape)


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
