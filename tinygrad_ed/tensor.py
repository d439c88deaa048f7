"""The Tensor and the autograd core: how `loss.backward()` finds every gradient (chapter part 3, step 3).

Every operation is a `Function` with two methods side by side:
  forward(self, *arrays)      -> the output array, saving on `self` what backward will need
  backward(self, grad_output) -> one gradient array per input (None where no gradient flows)
`Function.apply` is the only place that touches Tensors: it checks devices, runs forward, and records the
Function on the output so that `backward()` can walk the graph back from the loss, applying the chain rule
  ∂loss/∂input = ∂loss/∂output · ∂output/∂input
one node at a time, in reverse topological order.
"""
import numpy as np

from tinygrad_ed import fast
from tinygrad_ed.device import array_module, check_device, device_of, to_device
from tinygrad_ed.fast.rows import wide_sum

# ----------------------------------------------------------------------------------------------------------
# gradient mode: inside `with no_grad():` ops build no graph (evaluation, the optimizer's own updates)

_grad_enabled = True


class no_grad:
    """Context manager (and decorator) that turns off graph building, like torch.no_grad()."""

    def __enter__(self):
        global _grad_enabled
        self._previous, _grad_enabled = _grad_enabled, False

    def __exit__(self, *exc_info):
        global _grad_enabled
        _grad_enabled = self._previous

    def __call__(self, function):
        def wrapper(*args, **kwargs):
            with no_grad():
                return function(*args, **kwargs)
        wrapper.__name__, wrapper.__doc__ = function.__name__, function.__doc__
        return wrapper


def is_grad_enabled():
    return _grad_enabled


# ----------------------------------------------------------------------------------------------------------
# Function: one op's forward and backward

class Function:
    """Base class of every op. Subclasses write `forward` and `backward` on raw xp arrays."""

    def __init__(self, xp, inputs):
        self.xp = xp            # numpy or cupy: the array module every line of the op uses
        self.inputs = inputs    # the input Tensors, the edges backward follows

    def forward(self, *arrays, **options):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def needs_grad(self, index):
        """Whether input `index` wants a gradient: backward can skip work for inputs that do not."""
        return self.inputs[index].requires_grad

    @classmethod
    def apply(cls, *inputs, **options):
        """Run the op on Tensors: check they share a device, compute forward, record the graph edge."""
        device = inputs[0].device
        for tensor in inputs[1:]:
            if tensor.device != device:
                raise RuntimeError(f"{cls.__name__}: inputs are on different devices, {device!r} and "
                                   f"{tensor.device!r}; move one with .to({device!r}) first")
        xp, arrays = array_module(device), [tensor.data for tensor in inputs]
        # the op itself, or a faster Function that computes the same (a fused CUDA kernel), chosen in tinygrad_ed/fast
        ctx = fast.implementation(cls, xp, arrays, options)(xp, inputs)
        output = ctx.forward(*arrays, **options)
        requires_grad = _grad_enabled and any(tensor.requires_grad for tensor in inputs)
        return Tensor(output, device=device_of(output), requires_grad=requires_grad, _ctx=ctx if requires_grad else None)


class _FreedGraph:
    """Stands in a tensor's `_ctx` once backward() has used it and released what forward saved."""
    inputs = ()


_FREED = _FreedGraph()


def unbroadcast(grad, shape):
    """The adjoint of broadcasting is summing: reduce `grad` back to an input's `shape`.

    Broadcasting copies an input along new leading axes and along its size-1 axes; each copy contributed to
    the loss, so the input's gradient is the sum over those copies.
    """
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    return wide_sum(grad, axis=axes, keepdims=True).astype(grad.dtype, copy=False).reshape(shape)  # float16: Σ in f32


# ----------------------------------------------------------------------------------------------------------
# Tensor

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


class Tensor:
    """An n-dimensional array on a device, with a gradient when `requires_grad`.

    data           numpy (cpu) or cupy (cuda) array
    grad           array of the same shape, dtype and device; accumulated (+=) by every backward() until the
                   optimizer's zero_grad() clears it, which is what makes gradient accumulation work (step 2)
    requires_grad  whether backward() computes a gradient for this tensor
    """
    __array_priority__ = 1000  # numpy scalars defer to Tensor's operators (np.float32(2) * t is a Tensor)
    # integer ids only: (lowest, highest) id, where the code that made the tensor measured them on the host before
    # copying them to the GPU (gpt/data.py's batches, generation, the positions), so that the embedding and the loss
    # need not read them back to check their range (functional._check_ids). No op sets it; it assumes .data unchanged
    id_range = None

    def __init__(self, data, device=None, dtype=None, requires_grad=False, _ctx=None):
        if isinstance(data, Tensor):
            data = data.data
        if device is None:
            device = device_of(data)
        xp = array_module(check_device(device))
        if device_of(data) != device:
            data = to_device(data, device)
        if dtype is None and not hasattr(data, "dtype"):
            # Python numbers and lists: floats become float32 (the training dtype), ints stay int64
            data = np.asarray(data)
            dtype = np.float32 if data.dtype.kind == "f" else data.dtype
        self.data = xp.asarray(data, dtype=dtype)
        if requires_grad and self.data.dtype.type not in _FLOAT_DTYPES:
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}; "
                            f"token ids and other integer tensors are inputs, not parameters")
        self.device = device
        self.requires_grad = requires_grad
        self.grad = None
        self._ctx = _ctx  # the Function that produced this tensor; None for leaves (parameters, inputs)

    # ---- what a tensor is ----
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    dtype = property(lambda self: self.data.dtype)
    xp = property(lambda self: array_module(self.device))
    is_leaf = property(lambda self: self._ctx is None)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.numpy()!r}, device={self.device!r}{grad})"

    def __len__(self):
        return self.shape[0]

    def numpy(self):
        """The data as a numpy array (copied off the GPU for cuda tensors)."""
        return to_device(self.data, "cpu")

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def detach(self):
        """The same data, cut from the graph: no gradient flows back through it."""
        return Tensor(self.data, device=self.device)

    def to(self, device):
        """This tensor on `device`; gradients flow back across the copy."""
        return self if device == self.device else ToDevice.apply(self, device=device)

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.data.dtype.type not in _FLOAT_DTYPES:
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = requires_grad
        return self

    # ---- backward: the chain rule over the whole graph ----
    def backward(self, gradient=None):
        """Compute ∂self/∂leaf for every leaf that requires grad, adding it into leaf.grad.

        `gradient` is ∂loss/∂self; it defaults to 1 for a scalar (∂loss/∂loss = 1, the chapter's start).
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: no parameter it depends on "
                               "has requires_grad=True, or it was computed under no_grad()")
        if gradient is None:
            if self.size != 1:
                raise RuntimeError(f"backward() on a non-scalar tensor of shape {self.shape} needs an explicit "
                                   f"gradient of that shape (∂loss/∂this tensor)")
            gradient = self.xp.ones_like(self.data)
        else:
            gradient = gradient.data if isinstance(gradient, Tensor) else self.xp.asarray(gradient, self.dtype)
            if gradient.shape != self.shape:
                raise ValueError(f"backward(): gradient shape {gradient.shape} differs from tensor shape {self.shape}")

        grads = {id(self): gradient}  # ∂loss/∂node for nodes whose gradient is complete or still being summed
        for node in reversed(self._topological_order()):
            grad = grads.pop(id(node), None)
            if grad is None:
                continue
            if node._ctx is _FREED:
                raise RuntimeError("backward() through a graph that an earlier backward() already used and freed: "
                                   "run the forward pass again (each backward consumes its graph, as in PyTorch); "
                                   "gradients still accumulate across those backward calls")
            if node._ctx is None:  # a leaf: accumulate, as PyTorch does
                if node.grad is None:
                    node.grad = grad.copy()  # a copy: `grad` may be shared with another input's gradient
                else:
                    node.grad += grad
                continue
            input_grads = node._ctx.backward(grad)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for parent, parent_grad in zip(node._ctx.inputs, input_grads):
                if parent_grad is None or not parent.requires_grad:
                    continue
                key = id(parent)
                grads[key] = parent_grad if key not in grads else grads[key] + parent_grad
            node._ctx = _FREED  # release the arrays forward saved; this part of the graph is spent

    def _topological_order(self):
        """Every node that leads to self, inputs before outputs. Iterative: deep graphs cannot overflow."""
        order, visited, stack = [], set(), [(self, False)]
        while stack:
            node, children_done = stack.pop()
            if children_done:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            if node._ctx is not None:  # a freed node has no inputs left to visit
                stack.extend((parent, False) for parent in node._ctx.inputs
                             if parent.requires_grad and id(parent) not in visited)
        return order

    # ---- operators, each one Function from tinygrad_ed.ops ----
    def _lift(self, other):
        """A Python number or array as a tensor on this tensor's device; a float tensor lends its dtype, so
        float32 math stays float32 (x * 0.5 must not become float64)."""
        if isinstance(other, Tensor):
            return other
        return Tensor(self.xp.asarray(other, dtype=self.dtype if self.dtype.kind == "f" else None), device=self.device)

    def __add__(self, other): return elementwise.Add.apply(self, self._lift(other))
    def __radd__(self, other): return elementwise.Add.apply(self._lift(other), self)
    def __sub__(self, other): return elementwise.Sub.apply(self, self._lift(other))
    def __rsub__(self, other): return elementwise.Sub.apply(self._lift(other), self)
    def __mul__(self, other): return elementwise.Mul.apply(self, self._lift(other))
    def __rmul__(self, other): return elementwise.Mul.apply(self._lift(other), self)
    def __truediv__(self, other): return elementwise.Div.apply(self, self._lift(other))
    def __rtruediv__(self, other): return elementwise.Div.apply(self._lift(other), self)
    def __neg__(self): return elementwise.Neg.apply(self)
    def __pow__(self, exponent): return elementwise.Pow.apply(self, exponent=exponent)
    def __matmul__(self, other): return matmul.MatMul.apply(self, other)
    def __rmatmul__(self, other): return matmul.MatMul.apply(self._lift(other), self)
    def __getitem__(self, index): return movement.GetItem.apply(self, index=index)

    # comparisons give boolean tensors with no gradient (a step function has derivative 0 almost everywhere)
    def _compare(self, other, op):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(op(self.data, other), device=self.device)
    def __lt__(self, other): return self._compare(other, lambda a, b: a < b)
    def __le__(self, other): return self._compare(other, lambda a, b: a <= b)
    def __gt__(self, other): return self._compare(other, lambda a, b: a > b)
    def __ge__(self, other): return self._compare(other, lambda a, b: a >= b)
    def eq(self, other): return self._compare(other, lambda a, b: a == b)
    # NOTE: == and hash stay Python's identity, unlike PyTorch: tensors are graph nodes and dictionary keys (the
    # optimizer's state); compare values elementwise with .eq()
    __hash__ = object.__hash__

    # elementwise math
    def exp(self): return elementwise.Exp.apply(self)
    def log(self): return elementwise.Log.apply(self)
    def sqrt(self): return elementwise.Sqrt.apply(self)
    def tanh(self): return elementwise.Tanh.apply(self)
    def relu(self): return elementwise.Relu.apply(self)
    def gelu(self, approximate="none"): return activations.Gelu.apply(self, approximate=approximate)
    def astype(self, dtype): return self if self.dtype == dtype else elementwise.Cast.apply(self, dtype=dtype)
    def float(self): return self.astype(np.float32)
    def half(self): return self.astype(np.float16)
    def double(self): return self.astype(np.float64)

    # reductions (axis=None reduces everything; keepdims as numpy)
    def sum(self, axis=None, keepdims=False): return reduce.Sum.apply(self, axis=axis, keepdims=keepdims)
    def max(self, axis=None, keepdims=False): return reduce.Max.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False): return reduce.Mean.apply(self, axis=axis, keepdims=keepdims)

    def var(self, axis=None, keepdims=False, correction=0):
        """Variance: mean squared distance from the mean (correction=1 gives the unbiased estimate)."""
        centered = self - self.mean(axis=axis, keepdims=True)
        if self.dtype == np.float16:  # squared in float32: a float16 square overflows from |x - mean| > 256 on
            centered = centered.float()
        count = self._count(axis)
        variance = (centered * centered).mean(axis=axis, keepdims=keepdims) * (count / (count - correction))
        return variance.astype(self.dtype) if self.dtype.kind == "f" else variance

    def _count(self, axis):
        """How many elements a reduction over `axis` combines into each output."""
        if axis is None:
            return self.size
        axes = (axis,) if isinstance(axis, int) else axis
        return int(np.prod([self.shape[a] for a in axes]))

    # shapes
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return movement.Reshape.apply(self, shape=tuple(shape))

    def view(self, *shape): return self.reshape(*shape)

    def permute(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return movement.Permute.apply(self, axes=tuple(axes))

    def transpose(self, axis0=-2, axis1=-1):
        axes = list(range(self.ndim))
        axes[axis0], axes[axis1] = axes[axis1], axes[axis0]
        return self.permute(axes)

    T = property(lambda self: self.transpose(-2, -1))

    def split(self, size, axis=-1):
        """Equal pieces of `size` along `axis` (the last may be shorter), as torch.split."""
        length = self.shape[axis]
        index = [slice(None)] * self.ndim
        pieces = []
        for start in range(0, length, size):
            index[axis] = slice(start, min(start + size, length))
            pieces.append(self[tuple(index)])
        return pieces

    # nn helpers that read naturally as methods
    def softmax(self, axis=-1): return activations.Softmax.apply(self, axis=axis)
    def log_softmax(self, axis=-1): return activations.LogSoftmax.apply(self, axis=axis)
    def masked_fill(self, mask, value): return where(mask, self._lift(value), self)


class ToDevice(Function):
    """Copy between devices; the gradient is copied back the other way."""

    def forward(self, x, device):
        self.source = device_of(x)
        return to_device(x, device)

    def backward(self, grad_output):
        return to_device(grad_output, self.source)


def where(condition, if_true, if_false):
    """Pick elementwise from `if_true` where condition holds, else from `if_false` (broadcasting)."""
    anchor = if_true if isinstance(if_true, Tensor) else if_false
    condition = condition.data if isinstance(condition, Tensor) else condition
    return elementwise.Where.apply(anchor._lift(if_true), anchor._lift(if_false), condition=condition)


# the ops import Function from this module, so they are imported last
from tinygrad_ed.ops import activations, elementwise, matmul, movement, reduce  # noqa: E402
