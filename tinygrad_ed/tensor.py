"""The Tensor and the autograd core: how `loss.backward()` finds every gradient (chapter part 3, step 3).

Every operation is a `Function` with two methods side by side:
  forward(self, *arrays)      -> the output array, saving on `self` what backward will need
  backward(self, grad_output) -> one gradient array per input (None where no gradient flows)
`Function.apply` is the only place that touches Tensors: it checks devices, runs forward, and records the
Function on the output so that `backward()` can walk the graph back from the loss, applying the chain rule
  ∂loss/∂input = ∂loss/∂output · ∂output/∂input
one node at a time, in reverse topological order.
"""
import math

import numpy as np

from tinygrad_ed import fast
from tinygrad_ed.device import array_module, check_device, device_of, to_device
from tinygrad_ed.dtypes import FLOAT_DTYPES, check_dtype, is_floating, is_number, result_dtype
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
    # how the input arrays are brought to one dtype before forward, by result_dtype (tinygrad_ed/dtypes.py):
    #   None      as they come (one input, or inputs with different roles, like mixed_precision.HalfLoss's)
    #   "common"  all cast to their result dtype: a + b, a @ b, where, cat
    #   "float"   the same, made floating: a / b, exp, softmax (integer inputs give float32)
    # the casts are Cast ops, so each input's gradient comes back in that input's own dtype
    promotion = None

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
        if cls.promotion is not None:
            dtype = result_dtype(*inputs, floating=cls.promotion == "float")
            inputs = tuple(tensor if tensor.dtype == dtype else tensor.astype(dtype) for tensor in inputs)
        xp, arrays = array_module(device), [tensor.data for tensor in inputs]
        # the op itself, or a faster Function that computes the same (a fused CUDA kernel), chosen in tinygrad_ed/fast
        ctx = fast.implementation(cls, xp, arrays, options)(xp, inputs)
        output = ctx.forward(*arrays, **options)
        # integer and bool results (a cast to int, argmax, a comparison) have no gradient: they leave the graph
        requires_grad = _grad_enabled and is_floating(output.dtype) and any(tensor.requires_grad for tensor in inputs)
        return Tensor(output, device=device_of(output), requires_grad=requires_grad, _ctx=ctx if requires_grad else None)


class _FreedGraph:
    """Stands in a tensor's `_ctx` once backward() has used it and released what forward saved."""
    inputs = ()


_FREED = _FreedGraph()


def _owns_memory(array):
    """Whether `array` is no view of another array's memory (a numpy scalar owns its value)."""
    return getattr(array, "base", None) is None


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

class Tensor:
    """An n-dimensional array on a device, with a gradient when `requires_grad`.

    data           numpy (cpu) or cupy (cuda) array of bools, integers or float16/32/64
    grad           array of the same shape, dtype and device; accumulated (+=) by every backward() until the
                   optimizer's zero_grad() clears it, which is what makes gradient accumulation work (step 2)
    requires_grad  whether backward() computes a gradient for this tensor

    Dtypes follow PyTorch (tinygrad_ed/dtypes.py has the one function that decides them, result_dtype):
      - Tensor(1.5) and Tensor([1.0, 2.0]) are float32, Tensor([1, 2]) int64; a numpy array keeps its dtype
        (Tensor(np.random.randn(3)) is float64, as torch.from_numpy: call .float() for float32)
      - a Python or numpy number never widens a tensor: float32 · 2.5, float32 ** np.float64(2) stay float32;
        an integer tensor with a float number gives float32
      - two tensors of different widths give the wider: float32 · float64 is float64, int64 · float32 float32
        (a 0-d tensor counts like a number unless its kind is higher: float32 tensor · 0-d float64 is float32)
      - int / int and float functions of integer tensors (exp, log, sqrt, tanh, sigmoid, softmax, ...) give float32
      - every leaf's gradient has the leaf's own dtype and shape, whatever the graph computed in between
      - a cast to an integer or bool dtype (and argmax, comparisons) gives a tensor cut from the graph
    Wherever an op takes a tensor it also takes a numpy array, as the tensor it obviously means (on the device of the
    op's other tensors, keeping its dtype); anything else (a list, a string) is a TypeError naming the op.
    """
    __array_priority__ = 1000  # numpy scalars defer to Tensor's operators (np.float32(2) * t is a Tensor)
    # integer ids only: (lowest, highest) id, where the code that made the tensor measured them on the host before
    # copying them to the GPU (gpt/data.py's batches, generation, the positions), so that the embedding and the loss
    # need not read them back to check their range (functional._check_ids). No op sets it; it assumes .data unchanged
    id_range = None
    # parameters only: the view of one flat buffer of many parameters' gradients that backward() writes this one's
    # gradient into (tinygrad_ed/fast/gradients.py, on cuda), so that clipping and unscaling take one pass over all
    grad_home = None
    _retains_grad = False  # set by retain_grad(): backward() also keeps this non-leaf tensor's gradient in .grad

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
        check_dtype(data.dtype if dtype is None else dtype)  # before the copy: no strings or objects
        self.data = xp.asarray(data, dtype=dtype)
        if requires_grad:
            self._check_can_require_grad()
        self.device = device
        self.requires_grad = requires_grad
        self.grad = None
        self._ctx = _ctx  # the Function that produced this tensor; None for leaves (parameters, inputs)

    def _check_can_require_grad(self):
        if self.data.dtype.type not in FLOAT_DTYPES:
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}; "
                            f"token ids and other integer tensors are inputs, not parameters")

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

    def retain_grad(self):
        """Keep this tensor's gradient in .grad after backward() although it is not a leaf, as torch's retain_grad
        (a leaf keeps its gradient anyway): how a drawing of the graph shows ∂loss/∂node for every node
        (tinygrad_ed/graph.py)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad() on a tensor that does not require grad: no gradient reaches it")
        self._retains_grad = True

    def requires_grad_(self, requires_grad=True):
        if requires_grad:
            self._check_can_require_grad()
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
            gradient, seed_is_ours = self.xp.ones_like(self.data), True
        else:
            seed_is_ours = False
            gradient = self.xp.asarray(gradient.data if isinstance(gradient, Tensor) else gradient, self.dtype)
            if gradient.shape != self.shape:
                raise ValueError(f"backward(): gradient shape {gradient.shape} differs from tensor shape {self.shape}")

        grads = {id(self): gradient}  # ∂loss/∂node for nodes whose gradient is complete or still being summed
        # nodes whose gradient array may be held elsewhere too (a leaf then keeps a copy of its own): the caller's
        # `gradient`, an array a backward returned for two inputs or passed on from a shared one, and any view
        shared = set() if seed_is_ours else {id(self)}
        for node in reversed(self._topological_order()):
            grad = grads.pop(id(node), None)
            if grad is None:
                continue
            grad_shared = id(node) in shared
            shared.discard(id(node))
            if node._ctx is _FREED:
                raise RuntimeError("backward() through a graph that an earlier backward() already used and freed: "
                                   "run the forward pass again (each backward consumes its graph, as in PyTorch); "
                                   "gradients still accumulate across those backward calls")
            if node._ctx is None:  # a leaf: accumulate, as PyTorch does
                node._accumulate_grad(grad, owned=not grad_shared)
                continue
            if node._retains_grad:  # complete here: every consumer of node came earlier in this reverse order
                node.grad = grad.copy() if node.grad is None else node.grad + grad
            input_grads = node._ctx.backward(grad)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for parent, parent_grad in zip(node._ctx.inputs, input_grads):
                if parent_grad is None or not parent.requires_grad:
                    continue
                held_elsewhere = sum(other is parent_grad for other in input_grads) > 1 \
                    or (parent_grad is grad and grad_shared)
                key = id(parent)
                # whatever an op returned, a tensor's gradient has its shape and dtype (PyTorch's rule too); a leaf
                # with a place for its gradient (grad_home) takes the cast in the copy into that place
                if parent_grad.shape != parent.shape:
                    parent_grad = unbroadcast(parent_grad, parent.shape)
                if parent_grad.dtype != parent.dtype and (key in grads or parent.grad_home is None):
                    parent_grad, held_elsewhere = parent_grad.astype(parent.dtype), False
                if key in grads:  # a sum is a new array
                    grads[key] = grads[key].astype(parent.dtype, copy=False) + parent_grad
                    shared.discard(key)
                else:
                    grads[key] = parent_grad
                    if held_elsewhere or not _owns_memory(parent_grad):
                        shared.add(key)
            node._ctx = _FREED  # release the arrays forward saved; this part of the graph is spent

    def _accumulate_grad(self, grad, owned):
        """Add ∂loss/∂self to a leaf's .grad: the first gradient becomes .grad, later ones add in (+=), which is what
        makes gradient accumulation work. `owned`: no other node holds `grad`, so it needs no copy of its own."""
        if self.grad is not None:
            self.grad += grad
        elif self.grad_home is not None:  # one flat buffer holds every parameter's gradient (tinygrad_ed/fast)
            self.grad_home[...] = grad
            self.grad = self.grad_home
        else:
            self.grad = grad if owned else grad.copy()

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
    def _operand(self, op, other):
        """The other operand of a binary operator as a tensor: a number as a 0-d tensor of the result's dtype, so
        that float32 · 0.5 stays float32 (numpy would make it float64), an array as a Tensor on this device."""
        if is_number(other):
            return Tensor(other, device=self.device, dtype=result_dtype(self, other))
        return tensor_argument(op, "the other operand", other, self.device, numbers=True)

    def __add__(self, other): return elementwise.Add.apply(self, self._operand("add", other))
    def __radd__(self, other): return elementwise.Add.apply(self._operand("add", other), self)
    def __sub__(self, other): return elementwise.Sub.apply(self, self._operand("sub", other))
    def __rsub__(self, other): return elementwise.Sub.apply(self._operand("sub", other), self)
    def __mul__(self, other): return elementwise.Mul.apply(self, self._operand("mul", other))
    def __rmul__(self, other): return elementwise.Mul.apply(self._operand("mul", other), self)
    def __truediv__(self, other): return elementwise.Div.apply(self, self._operand("div", other))
    def __rtruediv__(self, other): return elementwise.Div.apply(self._operand("div", other), self)
    def __neg__(self): return elementwise.Neg.apply(self)
    def __matmul__(self, other): return self.matmul(other)
    def __rmatmul__(self, other): return self._operand("matmul", other).matmul(self)

    def __pow__(self, exponent):
        """self ** exponent for a number exponent; int ** int stays an integer, float32 ** np.float64(2) float32."""
        if not is_number(exponent):
            raise TypeError(f"pow: the exponent must be a Python or numpy number, got {type(exponent).__name__} "
                            f"(a tensor exponent is not supported: write (y * x.log()).exp() for x > 0)")
        return elementwise.Pow.apply(self.astype(result_dtype(self, exponent)), exponent=exponent)

    def matmul(self, other):
        """self @ other as torch.matmul: (..., n, k) @ (..., k, m) batched with broadcasting; a 1-D operand is a
        vector, a row on the left and a column on the right, whose axis the result drops (1-D @ 1-D: the dot product)."""
        a, b = self, self._operand("matmul", other)
        if a.ndim == 0 or b.ndim == 0 or a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not fit; need (..., n, k) @ (..., k, m) "
                             f"with the same k (a 1-D operand counts as a (1, k) row or a (k, 1) column)")
        if b.ndim == 1:
            return a.matmul(b.unsqueeze(-1)).squeeze(-1)
        if a.ndim == 1:
            return a.unsqueeze(0).matmul(b).squeeze(-2)
        return matmul.MatMul.apply(a, b)

    def __getitem__(self, index):
        """Indexing as numpy, except where PyTorch differs: an integer mixed with array indices selects its axis first
        (x[1, :, ids] is x[1][:, ids]; numpy would put the ids' axis first)."""
        in_turn = movement.integers_first(index)
        if in_turn is not None:
            return self[in_turn[0]][in_turn[1]]
        return movement.GetItem.apply(self, index=index)

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
    def sigmoid(self): return elementwise.Sigmoid.apply(self)
    def abs(self): return elementwise.Abs.apply(self)
    def relu(self): return elementwise.Relu.apply(self)
    def gelu(self, approximate="none"): return activations.Gelu.apply(self, approximate=approximate)
    def astype(self, dtype): return self if self.dtype == dtype else elementwise.Cast.apply(self, dtype=check_dtype(dtype))
    def float(self): return self.astype(np.float32)
    def half(self): return self.astype(np.float16)
    def double(self): return self.astype(np.float64)

    def clamp(self, min=None, max=None):
        """Each element limited to [min, max] (either may be None), as torch.clamp; the gradient passes where
        min ≤ x ≤ max."""
        bounds = [bound for bound in (min, max) if bound is not None]
        if not bounds or not all(is_number(bound) for bound in bounds):
            raise TypeError(f"clamp: min and max must be numbers, at least one of them given; got {min!r}, {max!r}")
        return elementwise.Clamp.apply(self.astype(result_dtype(self, *bounds)), low=min, high=max)

    # reductions (axis=None reduces everything, or one axis, or a tuple or list of axes; keepdims as numpy)
    def sum(self, axis=None, keepdims=False):
        return reduce.Sum.apply(self, axis=reduction_axes("sum", axis, self.ndim), keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return reduce.Max.apply(self, axis=reduction_axes("max", axis, self.ndim), keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return reduce.Min.apply(self, axis=reduction_axes("min", axis, self.ndim), keepdims=keepdims)

    def logsumexp(self, axis, keepdims=False):
        """log Σ exp over `axis`, computed without overflow (torch.logsumexp)."""
        return reduce.LogSumExp.apply(self, axis=reduction_axes("logsumexp", axis, self.ndim), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        """The mean; over no elements it is nan, as in PyTorch (one op: see reduce.Mean)."""
        return reduce.Mean.apply(self, axis=reduction_axes("mean", axis, self.ndim), keepdims=keepdims)

    def var(self, axis=None, keepdims=False, correction=1):
        """Variance, Σ(x - mean)² / (N - correction), as torch.var: correction=1 (the default) is the unbiased
        estimate, correction=0 the mean squared distance from the mean. N - correction ≤ 0 gives inf (nan for a
        sum of 0), as PyTorch's."""
        divisor = max(self._count(reduction_axes("var", axis, self.ndim)) - correction, 0)
        centered = self - self.mean(axis=axis, keepdims=True)
        if self.dtype == np.float16:  # squared in float32: a float16 square overflows from |x - mean| > 256 on
            centered = centered.float()
        variance = (centered * centered).sum(axis=axis, keepdims=keepdims) * (1.0 / divisor if divisor else math.inf)
        return variance.astype(np.float16) if self.dtype == np.float16 else variance

    def std(self, axis=None, keepdims=False, correction=1):
        """Standard deviation, the square root of var (same arguments, as torch.std)."""
        return self.var(axis=axis, keepdims=keepdims, correction=correction).sqrt()

    def _count(self, axes):
        """How many elements a reduction over `axes` (None: all) combines into each output."""
        return self.size if axes is None else int(np.prod([self.shape[a] for a in axes]))

    def argmax(self, axis=None, keepdims=False):
        """The index of the largest element along `axis` (None: of the flattened tensor), as torch.argmax; an int64
        tensor with no gradient (an index does not change smoothly with the values)."""
        return self._index_of(self.xp.argmax, axis, keepdims)

    def argmin(self, axis=None, keepdims=False):
        """The index of the smallest element, as argmax."""
        return self._index_of(self.xp.argmin, axis, keepdims)

    def _index_of(self, find, axis, keepdims):
        axis = None if axis is None or self.ndim == 0 else check_axis(find.__name__, axis, self.ndim)
        return Tensor(find(self.data, axis=axis, keepdims=keepdims), device=self.device)

    # shapes
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return movement.Reshape.apply(self, shape=tuple(shape))

    def view(self, *shape): return self.reshape(*shape)

    def permute(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        axes = tuple(check_axis("permute", axis, self.ndim) for axis in axes)
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(f"permute: {axes} is not an order of all {self.ndim} axes of a tensor of shape {self.shape}")
        return movement.Permute.apply(self, axes=axes)

    def transpose(self, axis0=-2, axis1=-1):
        axes = list(range(self.ndim))
        axis0, axis1 = check_axis("transpose", axis0, self.ndim), check_axis("transpose", axis1, self.ndim)
        axes[axis0], axes[axis1] = axes[axis1], axes[axis0]
        return self.permute(axes)

    T = property(lambda self: self.transpose(-2, -1))

    def unsqueeze(self, axis):
        """A new axis of size 1 at `axis` (-ndim-1 ≤ axis ≤ ndim), as torch.unsqueeze."""
        axis = check_axis("unsqueeze", axis, self.ndim + 1)
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def squeeze(self, axis=None):
        """Drop the axes of size 1: all of them, or those of `axis` (an int or tuple) that have size 1, as
        torch.squeeze (an axis of another size stays, without an error)."""
        axes = reduction_axes("squeeze", axis, self.ndim)
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if n != 1 or (axes is not None and i not in axes)))

    def flatten(self, start_dim=0, end_dim=-1):
        """Axes start_dim..end_dim (inclusive) merged into one, as torch.flatten; a 0-d tensor becomes shape (1,)."""
        if self.ndim == 0:
            return self.reshape(1)
        start, end = check_axis("flatten", start_dim, self.ndim), check_axis("flatten", end_dim, self.ndim)
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} in shape {self.shape}")
        return self.reshape(self.shape[:start] + (int(np.prod(self.shape[start:end + 1])),) + self.shape[end + 1:])

    def expand(self, *sizes):
        """This tensor repeated along its size-1 axes (and new leading ones) to `sizes`, without copying, as
        torch.expand; -1 keeps an axis' size."""
        sizes = tuple(sizes[0] if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else sizes)
        new = len(sizes) - self.ndim
        if new < 0 or any(n == -1 for n in sizes[:new]) or \
                any(n != -1 and old != 1 and n != old for n, old in zip(sizes[new:], self.shape)):
            raise ValueError(f"expand: cannot expand shape {self.shape} to {sizes}: only axes of size 1 (and new "
                             f"leading axes, which cannot be -1) take a new size")
        shape = sizes[:new] + tuple(old if n == -1 else n for n, old in zip(sizes[new:], self.shape))
        return movement.Expand.apply(self, shape=shape)

    def tril(self, diagonal=0):
        """The lower triangle of the last two axes (column ≤ row + diagonal), zeros above it, as torch.tril."""
        return where(self._triangle("tril", diagonal), self, self.dtype.type(0))

    def triu(self, diagonal=0):
        """The upper triangle of the last two axes (column ≥ row + diagonal), zeros below it, as torch.triu."""
        return where(~self._triangle("triu", diagonal - 1), self, self.dtype.type(0))

    def _triangle(self, op, diagonal):
        """The (rows, columns) mask that is True on and below diagonal `diagonal`."""
        if self.ndim < 2:
            raise ValueError(f"{op}: needs a tensor with at least 2 axes, got shape {self.shape}")
        return self.xp.tri(*self.shape[-2:], k=diagonal, dtype=bool)

    def split(self, split_size_or_sections, axis=0):
        """Pieces along `axis` (default 0), as torch.split: an int gives pieces of that size (the last may be
        shorter), a list or tuple the size of each piece, which must add up to the axis' length."""
        if self.ndim == 0:
            raise ValueError("split: a 0-d tensor has no axis to split")
        axis = check_axis("split", axis, self.ndim)
        length = self.shape[axis]
        if is_number(split_size_or_sections):
            size = split_size_or_sections
            if not isinstance(size, (int, np.integer)) or size <= 0:
                raise ValueError(f"split: split_size must be a positive integer, got {size!r}")
            sizes = [min(size, length - start) for start in range(0, length, size)]
        else:
            sizes = list(split_size_or_sections)
            if sum(sizes) != length or any(size < 0 for size in sizes):
                raise ValueError(f"split: sizes {sizes} must be non-negative and add up to {length}, the length of "
                                 f"axis {axis} of shape {self.shape}")
        index, pieces, start = [slice(None)] * self.ndim, [], 0
        for size in sizes:
            index[axis] = slice(start, start + size)
            pieces.append(self[tuple(index)])
            start += size
        return pieces

    # nn helpers that read naturally as methods
    def softmax(self, axis=-1): return activations.Softmax.apply(self, axis=check_axis("softmax", axis, self.ndim))

    def log_softmax(self, axis=-1):
        return activations.LogSoftmax.apply(self, axis=check_axis("log_softmax", axis, self.ndim))

    def masked_fill(self, mask, value):
        """value where mask holds, else self; a number value is cast to self's dtype, as torch.masked_fill."""
        return where(mask, value if isinstance(value, Tensor) else self.dtype.type(value), self)


class ToDevice(Function):
    """Copy between devices; the gradient is copied back the other way."""

    def forward(self, x, device):
        self.source = device_of(x)
        return to_device(x, device)

    def backward(self, grad_output):
        return to_device(grad_output, self.source)


def where(condition, if_true, if_false):
    """Pick elementwise from `if_true` where condition holds, else from `if_false` (broadcasting); either may be a
    number, as in torch.where(mask, x, 0.0)."""
    tensors = [value for value in (condition, if_true, if_false) if isinstance(value, Tensor)]
    device = tensors[0].device if tensors else "cpu"
    values = [value if is_number(value) else tensor_argument("where", name, value, device, numbers=True)
              for name, value in (("if_true", if_true), ("if_false", if_false))]
    dtype = result_dtype(*values)
    if_true, if_false = (value if isinstance(value, Tensor) else Tensor(value, device=device, dtype=dtype)
                         for value in values)
    condition = tensor_argument("where", "condition", condition, device)
    return elementwise.Where.apply(if_true, if_false, condition=condition.data)


# ----------------------------------------------------------------------------------------------------------
# checking an op's arguments: one place for every op's clear errors

AxisError = np.exceptions.AxisError  # both an IndexError (PyTorch raises one) and a ValueError


def tensor_argument(op, name, value, device, numbers=False):
    """`value` as a Tensor for argument `name` of `op`: a Tensor as it is, an array (numpy or cupy) as a Tensor on
    `device`; anything else is a TypeError that names the op, the argument and what it takes."""
    if isinstance(value, Tensor):
        return value
    if hasattr(value, "dtype") and hasattr(value, "shape") and not is_number(value):
        return Tensor(value, device=device)
    takes = "a Tensor, a numpy array or a number" if numbers else "a Tensor or a numpy array"
    raise TypeError(f"{op}: {name} must be {takes}, got {type(value).__module__}.{type(value).__name__}")


def check_axis(op, axis, ndim):
    """`axis` (negative counts from the end) as an index in [0, ndim), or an AxisError naming the op and the range;
    a 0-d tensor takes axis 0 or -1, as in PyTorch."""
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{op}: an axis must be an integer, got {axis!r}")
    bound = max(ndim, 1)
    if not -bound <= axis < bound:
        raise AxisError(f"{op}: axis {axis} is out of range for a tensor with {ndim} axes "
                        f"(expected -{bound} to {bound - 1})")
    return int(axis) % bound


def reduction_axes(op, axis, ndim):
    """A reduction's `axis` checked: None (every axis) stays None, an int or a tuple/list of ints becomes a sorted
    tuple of distinct axes in [0, ndim) (none for a 0-d tensor)."""
    if axis is None:
        return None
    axes = [check_axis(op, a, ndim) for a in (axis if isinstance(axis, (tuple, list)) else (axis,))]
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: axis {axis} names an axis twice")
    return tuple(sorted(axes)) if ndim > 0 else ()


# the ops import Function from this module, so they are imported last
from tinygrad_ed.ops import activations, elementwise, matmul, movement, reduce  # noqa: E402
