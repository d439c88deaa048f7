"""Ops that move elements without changing them. Each backward moves the gradient back where its element came from."""
import numpy as np

from tinygrad_ed.tensor import Function, Tensor, unbroadcast


class Reshape(Function):
    def forward(self, a, shape):
        self.input_shape = a.shape
        return a.reshape(shape)

    def backward(self, grad):  # the same elements in the input's shape
        return grad.reshape(self.input_shape)


class Permute(Function):
    def forward(self, a, axes):
        self.axes = axes
        return a.transpose(axes)

    def backward(self, grad):  # undo the permutation: apply its inverse
        inverse = [0] * len(self.axes)
        for position, axis in enumerate(self.axes):
            inverse[axis] = position
        return grad.transpose(inverse)


def _raw_index(index):
    """An index with any Tensors in it replaced by their arrays (x[idx] with idx a Tensor of ints)."""
    if isinstance(index, tuple):
        return tuple(item.data if isinstance(item, Tensor) else item for item in index)
    return index.data if isinstance(index, Tensor) else index


def _is_basic(index):
    """Slices, ints, None and Ellipsis only: each input element is picked at most once."""
    items = index if isinstance(index, tuple) else (index,)
    return all(item is None or item is Ellipsis or isinstance(item, (int, slice)) for item in items)


def integers_first(index):
    """PyTorch reads x[1, :, ids] as x[1][:, ids]: an integer selects its axis before any array index is applied, and
    so never joins the arrays in deciding where their axes go (numpy counts it as one of them, and for arrays that are
    not side by side puts their axes first: x[1, :, ids] has the ids' axes first in numpy, in place in PyTorch).
    For an index that mixes integers with arrays: the two indexes (integers, the rest) that give PyTorch's result
    when applied in turn; None for any other index, which numpy and PyTorch read alike."""
    items = _raw_index(index)
    items = items if isinstance(items, tuple) else (items,)
    is_int = [isinstance(item, (int, np.integer)) and not isinstance(item, bool) for item in items]
    is_array = [not (integer or item is None or item is Ellipsis or isinstance(item, slice))
                for integer, item in zip(is_int, items)]
    if not (any(is_int) and any(is_array)):
        return None
    integers, rest = [], []
    for item, integer, array in zip(items, is_int, is_array):
        if integer:
            integers.append(item)                       # the integer takes its axis away ...
        elif array:                                     # ... the arrays wait, each over the axes it indexes
            array = item if hasattr(item, "dtype") else np.asarray(item)    # a list, or a numpy or cupy array
            integers.extend([slice(None)] * (array.ndim if array.dtype == bool else 1))
            rest.append(item)
        else:
            integers.append(item)                       # a slice, None or ... : where it stands
            rest.append(slice(None) if item is None or isinstance(item, slice) else item)
    return tuple(integers), tuple(rest)


class GetItem(Function):
    def forward(self, a, index):
        self.index, self.input_shape, self.dtype = _raw_index(index), a.shape, a.dtype
        return a[self.index]

    def backward(self, grad):
        # scatter the gradient back to the picked positions; a position picked twice gets both gradients
        grad_input = self.xp.zeros(self.input_shape, dtype=self.dtype)
        if _is_basic(self.index):
            grad_input[self.index] = grad
        else:
            self.xp.add.at(grad_input, self.index, grad)
        return grad_input


class Expand(Function):
    """Repeat size-1 axes (and new leading ones) to `shape`, as a broadcast view: nothing is copied."""

    def forward(self, a, shape):
        self.input_shape = a.shape
        return self.xp.broadcast_to(a, shape)

    def backward(self, grad):  # every copy fed the loss: the input's gradient is their sum
        return unbroadcast(grad, self.input_shape)


class Cat(Function):
    """Join tensors along an existing axis."""
    promotion = "common"

    def forward(self, *arrays, axis):
        self.axis, self.sizes = axis, [array.shape[axis] for array in arrays]
        return self.xp.concatenate(arrays, axis=axis)

    def backward(self, grad):  # each input gets back its own slice of the gradient
        bounds = [sum(self.sizes[:i + 1]) for i in range(len(self.sizes) - 1)]
        return tuple(self.xp.split(grad, bounds, axis=self.axis))


class Stack(Function):
    """Join same-shaped tensors along a new axis."""
    promotion = "common"

    def forward(self, *arrays, axis):
        self.axis = axis
        return self.xp.stack(arrays, axis=axis)

    def backward(self, grad):  # input i gets slice i along the new axis
        return tuple(self.xp.moveaxis(grad, self.axis, 0))
