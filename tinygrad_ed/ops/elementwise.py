"""Elementwise ops. Each output element depends on the matching input elements only, so each local
derivative is itself elementwise, and broadcasting's adjoint (`unbroadcast`) takes gradients back to each input's shape.
"""
from tinygrad_ed.tensor import Function, unbroadcast


class Add(Function):
    promotion = "common"

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, grad):  # d(a+b)/da = 1, d(a+b)/db = 1
        grad_a = unbroadcast(grad, self.shapes[0]) if self.needs_grad(0) else None
        grad_b = unbroadcast(grad, self.shapes[1]) if self.needs_grad(1) else None
        return grad_a, grad_b


class Sub(Function):
    promotion = "common"

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, grad):  # d(a-b)/da = 1, d(a-b)/db = -1
        grad_a = unbroadcast(grad, self.shapes[0]) if self.needs_grad(0) else None
        grad_b = unbroadcast(-grad, self.shapes[1]) if self.needs_grad(1) else None
        return grad_a, grad_b


class Mul(Function):
    promotion = "common"

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):  # d(ab)/da = b, d(ab)/db = a
        grad_a = unbroadcast(grad * self.b, self.a.shape) if self.needs_grad(0) else None
        grad_b = unbroadcast(grad * self.a, self.b.shape) if self.needs_grad(1) else None
        return grad_a, grad_b


class Div(Function):
    promotion = "float"  # int / int is a float, as in Python and PyTorch

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):  # d(a/b)/da = 1/b, d(a/b)/db = -a/b²
        grad_over_b = grad / self.b
        grad_a = unbroadcast(grad_over_b, self.a.shape) if self.needs_grad(0) else None
        grad_b = unbroadcast(-grad_over_b * self.a / self.b, self.b.shape) if self.needs_grad(1) else None
        return grad_a, grad_b


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, grad):  # d(-a)/da = -1
        return -grad


class Pow(Function):
    """a ** exponent for a constant exponent (a number, taken in a's dtype: a numpy float64 must not widen float32)."""

    def forward(self, a, exponent):
        self.a, self.exponent = a, a.dtype.type(exponent)
        return a ** self.exponent

    def backward(self, grad):  # d(aⁿ)/da = n·aⁿ⁻¹, and 0 for n = 0 (where n·aⁿ⁻¹ would be 0·∞ at a = 0)
        if self.exponent == 0:
            return self.xp.zeros_like(grad)
        return grad * (self.exponent * self.a ** (self.exponent - 1))


class Exp(Function):
    promotion = "float"

    def forward(self, a):
        self.out = self.xp.exp(a)
        return self.out

    def backward(self, grad):  # d/da eᵃ = eᵃ, the output itself
        return grad * self.out


class Log(Function):
    promotion = "float"

    def forward(self, a):
        self.a = a
        return self.xp.log(a)

    def backward(self, grad):  # d/da ln a = 1/a
        return grad / self.a


class Sqrt(Function):
    promotion = "float"

    def forward(self, a):
        self.out = self.xp.sqrt(a)
        return self.out

    def backward(self, grad):  # d/da √a = 1/(2√a)
        return grad / (2 * self.out)


class Tanh(Function):
    promotion = "float"

    def forward(self, a):
        self.out = self.xp.tanh(a)
        return self.out

    def backward(self, grad):  # d/da tanh a = 1 - tanh² a
        return grad * (1 - self.out * self.out)


class Sigmoid(Function):
    """σ(a) = 1 / (1 + e⁻ᵃ), written with e^(-|a|) ≤ 1 so that no exponential overflows: e/(1 + e) for a < 0."""
    promotion = "float"

    def forward(self, a):
        xp = self.xp
        small = xp.exp(-xp.abs(a))
        self.out = xp.where(a >= 0, a.dtype.type(1), small) / (1 + small)
        return self.out

    def backward(self, grad):  # dσ/da = σ(1 - σ)
        return grad * self.out * (1 - self.out)


class Abs(Function):
    def forward(self, a):
        self.sign = self.xp.sign(a)
        return self.xp.abs(a)

    def backward(self, grad):  # d|a|/da = sign(a): -1, 1, and 0 at a = 0 (as PyTorch's)
        return grad * self.sign


class Clamp(Function):
    """min(max(a, low), high), either bound None for none (numbers, taken in a's dtype)."""

    def forward(self, a, low, high):
        xp, out, self.inside = self.xp, a, True
        if low is not None:
            out, self.inside = xp.maximum(out, a.dtype.type(low)), a >= low
        if high is not None:
            out, self.inside = xp.minimum(out, a.dtype.type(high)), self.inside & (a <= high)
        return out

    def backward(self, grad):  # 1 where low ≤ a ≤ high (a bound's own value included, as PyTorch's), else 0
        return grad * self.inside


class Relu(Function):
    def forward(self, a):
        self.positive = a > 0
        return self.xp.maximum(a, a.dtype.type(0))

    def backward(self, grad):  # d/da max(a, 0) = 1 where a > 0, else 0
        return grad * self.positive


class Where(Function):
    """condition ? a : b, elementwise with broadcasting; `condition` is a constant boolean array."""
    promotion = "common"

    def forward(self, a, b, condition):
        self.condition, self.shapes = condition, (a.shape, b.shape)
        return self.xp.where(condition, a, b)

    def backward(self, grad):  # the gradient goes to whichever input was picked
        zero = grad.dtype.type(0)
        grad_a = unbroadcast(self.xp.where(self.condition, grad, zero), self.shapes[0]) if self.needs_grad(0) else None
        grad_b = unbroadcast(self.xp.where(self.condition, zero, grad), self.shapes[1]) if self.needs_grad(1) else None
        return grad_a, grad_b


class Cast(Function):
    """Change dtype (float32 <-> float16 for mixed precision); the gradient is cast back. A cast to an integer or
    bool dtype gives a tensor with no gradient (Function.apply cuts it from the graph), as in PyTorch."""

    def forward(self, a, dtype):
        self.input_dtype = a.dtype
        return a.astype(dtype)

    def backward(self, grad):  # the identity, in the input's dtype
        return grad.astype(self.input_dtype)
