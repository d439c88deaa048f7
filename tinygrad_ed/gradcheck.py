"""Gradient checking: does an op's backward agree with its forward?

An op's backward is hand-written, so it can be wrong while forward is right. gradcheck compares it with
a derivative measured from forward alone, by a random projection (as in CMU's needle):

  out = f(x)               any shape
  c   = random, out's shape
  L   = sum(out * c)       a scalar that depends on every output element
  analytic  ∂L/∂x = backward of L, i.e. the vector-Jacobian product cᵀJ the engine computes
  numeric   ∂L/∂x_i ≈ (L(x + eps·e_i) - L(x - eps·e_i)) / (2·eps)      for every element i of x

Why central differences: the one-sided (L(x + eps) - L(x)) / eps is off by about eps·L''/2, the central one
by eps²·L'''/6; with eps = 1e-6 that is ~1e-12 instead of ~1e-6, far below the tolerance.
Why float64: the difference L(x + eps) - L(x - eps) loses about |L|·ulp / eps of accuracy to rounding.
float64's ulp (2e-16) leaves ~1e-10; float32's (1e-7) would leave ~0.1, a useless measurement.
So the checked inputs must be float64 (`x.double()`), even though training runs in float32.
"""
import numpy as np

from tinygrad_ed.device import to_device
from tinygrad_ed.tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """The analytic gradient (backward) disagrees with the numeric one (finite differences)."""


def gradcheck(function, *inputs, eps=1e-6, tolerance=1e-5, name=None, seed=0):
    """Check backward of `function(*inputs)` against central differences; return the worst relative error.

    Float64 Tensors with requires_grad=True are checked; every other input is passed through unchanged.
    The relative error of one element is |analytic - numeric| / max(1, |analytic|, |numeric|).
    Raises GradcheckError naming the op, the input, the element and both values when it exceeds `tolerance`.
    Leaves the analytic gradients in the inputs' .grad. Works on cuda tensors too: c is made on out's device.
    """
    name = name or getattr(function, "__name__", repr(function))
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck({name}): input {i} has dtype {inputs[i].dtype}; finite differences need "
                            f"float64 (pass x.double()), in lower precision rounding swamps the difference")

    # analytic: the engine's backward of L = sum(out * c)
    for i in checked:
        inputs[i].grad = None
    out = function(*inputs)
    if out.dtype != np.float64:
        raise TypeError(f"gradcheck({name}): float64 inputs gave a {out.dtype} output, too coarse to difference")
    xp = out.xp
    c = xp.asarray(np.asarray(np.random.default_rng(seed).standard_normal(out.shape)))  # on out's device
    if out.requires_grad:  # otherwise out ignores every input: the analytic gradient is zero
        (out * Tensor(c, device=out.device)).sum().backward()

    def projected():  # L evaluated without building a graph
        with no_grad():
            return float((function(*inputs).data * c).sum())

    worst, report = 0.0, None
    for i in checked:
        x = inputs[i]
        analytic = np.zeros(x.shape) if x.grad is None else to_device(x.grad, "cpu")
        for index in np.ndindex(*x.shape):
            original = float(x.data[index])
            x.data[index] = original + eps
            above = projected()
            x.data[index] = original - eps
            below = projected()
            x.data[index] = original  # restore, so the next element is perturbed from the true point
            numeric = (above - below) / (2 * eps)
            error = abs(analytic[index] - numeric) / max(1.0, abs(analytic[index]), abs(numeric))
            if np.isnan(error):  # a nan gradient on either side is a failure, not a comparison that passes
                error = np.inf
            if error > worst:
                worst = error
                report = (f"input {i} of shape {x.shape}, element {index}: analytic gradient {analytic[index]:.10g} "
                          f"vs numeric {numeric:.10g}")
    if worst > tolerance:
        raise GradcheckError(f"gradcheck({name}): {report} (relative error {worst:.3g} > tolerance {tolerance:g})")
    return float(worst)
