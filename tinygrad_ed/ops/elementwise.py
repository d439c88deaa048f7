"""Elementwise ops. Each output element depends on the matching input elements only, so each local
derivative is itself elementwise, and broadcasting's adjoint (`unbroadcast`) takes gradients back to each input's shape.
"""
from tinygrad_ed.tensor import Function, unbroadcast


class Add(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, grad):  # d(a+b)/da = 1, d(a+b)/db = 1
        grad_a = unbroadcast(grad, self.shapes[0]) if self.needs_grad(0) else None
        grad_b = unbroadcast(grad, self.shapes[1]) if self.needs_grad(1) else None
        return grad_a, grad_b


class Sub(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, grad):  # d(a-b)/da = 1, d(a-b)/db = -1
        grad_a = unbroadcast(grad, self.shapes[0]) if self.needs_grad(0) else None
        grad_b = unbroadcast(-grad, self.shapes[1]) if self.needs_grad(1) else None
        return grad_a, grad_b


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):  # d(ab)/da = b, d(ab)/db = a
        grad_a = unbroadcast(grad * self.b, self.a.shape) if self.needs_grad(0) else None
        grad_b = unbroadcast(grad * self.a, self.b.shape) if self.needs_grad(1) else None
        return grad_a, grad_b


class Div(Function):
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
    """a ** exponent for a constant exponent (a Python number)."""

    def forward(self, a, exponent):
        self.a, self.exponent = a, exponent
        return a ** exponent

    def backward(self, grad):  # d(aⁿ)/da = n·aⁿ⁻¹
        return grad * (self.exponent * self.a ** (self.exponent - 1))


class Exp(Function):
    def forward(self, a):
        self.out = self.xp.exp(a)
        return self.out

    def backward(self, grad):  # d/da eᵃ = eᵃ, the output itself
        return grad * self.out


class Log(Function):
    def forward(self, a):
        self.a = a
        return self.xp.log(a)

    def backward(self, grad):  # d/da ln a = 1/a
        return grad / self.a


class Sqrt(Function):
    def forward(self, a):
        self.out = self.xp.sqrt(a)
        return self.out

    def backward(self, grad):  # d/da √a = 1/(2√a)
        return grad / (2 * self.out)


class Tanh(Function):
    def forward(self, a):
        self.out = self.xp.tanh(a)
        return self.out

    def backward(self, grad):  # d/da tanh a = 1 - tanh² a
        return grad * (1 - self.out * self.out)


class Relu(Function):
    def forward(self, a):
        self.positive = a > 0
        return self.xp.maximum(a, a.dtype.type(0))

    def backward(self, grad):  # d/da max(a, 0) = 1 where a > 0, else 0
        return grad * self.positive


class Where(Function):
    """condition ? a : b, elementwise with broadcasting; `condition` is a constant boolean array."""

    def forward(self, a, b, condition):
        self.condition, self.shapes = condition, (a.shape, b.shape)
        return self.xp.where(condition, a, b)

    def backward(self, grad):  # the gradient goes to whichever input was picked
        zero = grad.dtype.type(0)
        grad_a = unbroadcast(self.xp.where(self.condition, grad, zero), self.shapes[0]) if self.needs_grad(0) else None
        grad_b = unbroadcast(self.xp.where(self.condition, zero, grad), self.shapes[1]) if self.needs_grad(1) else None
        return grad_a, grad_b


class Cast(Function):
    """Change dtype (float32 <-> float16 for mixed precision); the gradient is cast back."""

    def forward(self, a, dtype):
        self.input_dtype = a.dtype
        return a.astype(dtype)

    def backward(self, grad):  # the identity, in the input's dtype
        return grad.astype(self.input_dtype)
