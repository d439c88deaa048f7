"""Activations and normalisers: GELU (the MLP's nonlinearity), softmax and log-softmax (attention, the loss)."""
import math

from tinygrad_ed.erf import erf_with_gaussian
from tinygrad_ed.fast.rows import wide_sum
from tinygrad_ed.tensor import Function


class Gelu(Function):
    """GELU(x) = x·Φ(x), Φ the standard normal CDF (nanoGPT's default, approximate="none"), or the GPT-2
    tanh approximation 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) with approximate="tanh"."""
    promotion = "float"

    def forward(self, x, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        xp, c = self.xp, x.dtype.type  # constants in x's dtype: a float64 constant would upcast float32 math
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            self.t = xp.tanh(c(math.sqrt(2 / math.pi)) * (x + c(0.044715) * x * x * x))
            return c(0.5) * x * (1 + self.t)
        # Φ(x) = (1 + erf(x/√2)) / 2, and for backward the density φ(x) = e^(-x²/2)/√(2π): erf's own
        # Gaussian e^(-(x/√2)²), which it computes anyway. In place: a pass over memory costs as much as the math
        cdf, pdf = erf_with_gaussian(xp, x * c(1 / math.sqrt(2)))
        cdf += c(1)
        cdf *= c(0.5)
        pdf *= c(1 / math.sqrt(2 * math.pi))
        self.cdf, self.pdf = cdf, pdf
        return x * cdf

    def backward(self, grad):
        x, c = self.x, self.x.dtype.type
        if self.approximate == "tanh":
            # d/dx = 0.5(1 + t) + 0.5x(1 - t²)·√(2/π)(1 + 3·0.044715x²)
            inner = c(math.sqrt(2 / math.pi)) * (1 + c(3 * 0.044715) * x * x)
            return grad * (c(0.5) * (1 + self.t) + c(0.5) * x * (1 - self.t * self.t) * inner)
        # d/dx x·Φ(x) = Φ(x) + x·φ(x), φ(x) = e^(-x²/2)/√(2π) the normal density (saved by forward)
        grad_x = x * self.pdf
        grad_x += self.cdf
        grad_x *= grad
        return grad_x


class Softmax(Function):
    """softmax(x)_i = e^(x_i) / Σ_j e^(x_j), computed as e^(x_i - max x) so that large logits cannot overflow."""
    promotion = "float"

    def forward(self, x, axis=-1):
        xp = self.xp
        self.axis = axis
        exp = xp.exp(x - x.max(axis=axis, keepdims=True))
        self.out = (exp / wide_sum(exp, axis=axis, keepdims=True)).astype(x.dtype, copy=False)  # float16: Σ in float32
        return self.out

    def backward(self, grad):  # ∂y_i/∂x_j = y_i(δ_ij - y_j)  ⇒  dx = y ⊙ (g - Σ g⊙y)
        y = self.out
        return (y * (grad - wide_sum(grad * y, axis=self.axis, keepdims=True))).astype(grad.dtype, copy=False)


class LogSoftmax(Function):
    """log softmax(x)_i = x_i - log Σ_j e^(x_j) = (x_i - m) - log Σ_j e^(x_j - m), with m = max x (stable)."""
    promotion = "float"

    def forward(self, x, axis=-1):
        xp = self.xp
        self.axis = axis
        shifted = x - x.max(axis=axis, keepdims=True)
        self.out = (shifted - xp.log(wide_sum(xp.exp(shifted), axis=axis, keepdims=True))).astype(x.dtype, copy=False)
        return self.out

    def backward(self, grad):  # ∂y_i/∂x_j = δ_ij - softmax_j  ⇒  dx = g - softmax ⊙ Σ g
        total = wide_sum(grad, axis=self.axis, keepdims=True)
        return (grad - self.xp.exp(self.out) * total).astype(grad.dtype, copy=False)
