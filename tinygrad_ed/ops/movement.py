"""Ops that move elements without changing them. Each backward moves the gradient back where its element came from."""
from tinygrad_ed.tensor import Function, Tensor


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


class Cat(Function):
    """Join tensors along an existing axis."""

    def forward(self, *arrays, axis):
        self.axis, self.sizes = axis, [array.shape[axis] for array in arrays]
        return self.xp.concatenate(arrays, axis=axis)

    def backward(self, grad):  # each input gets back its own slice of the gradient
        bounds = [sum(self.sizes[:i + 1]) for i in range(len(self.sizes) - 1)]
        return tuple(self.xp.split(grad, bounds, axis=self.axis))


class Stack(Function):
    """Join same-shaped tensors along a new axis."""

    def forward(self, *arrays, axis):
        self.axis = axis
        return self.xp.stack(arrays, axis=axis)

    def backward(self, grad):  # input i gets slice i along the new axis
        return tuple(self.xp.moveaxis(grad, self.axis, 0))
