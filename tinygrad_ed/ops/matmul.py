"""Matrix product, batched over leading axes with broadcasting (as numpy.matmul). Tensor.matmul checks the shapes
and turns a 1-D operand into a matrix of one row or column, as torch.matmul does.

For C = A @ B with A (..., n, k) and B (..., k, m):
  ∂loss/∂A = ∂loss/∂C @ Bᵀ      (..., n, m) @ (..., m, k)
  ∂loss/∂B = Aᵀ @ ∂loss/∂C      (..., k, n) @ (..., n, m)
then summed over any batch axes that broadcasting created (unbroadcast).
"""
from tinygrad_ed.tensor import Function, unbroadcast


class MatMul(Function):
    promotion = "common"

    def forward(self, a, b):
        self.a, self.b = a, b
        return self.xp.matmul(a, b)

    def backward(self, grad):
        xp = self.xp
        grad_a = unbroadcast(xp.matmul(grad, xp.swapaxes(self.b, -1, -2)), self.a.shape) if self.needs_grad(0) else None
        grad_b = None
        if self.needs_grad(1):
            if self.b.ndim == 2 and grad.ndim > 2:
                # a weight shared by every row of a batch: fold the batch into rows, one big GEMM instead of
                # a batch of small ones followed by a sum
                grad_b = xp.matmul(self.a.reshape(-1, self.a.shape[-1]).T, grad.reshape(-1, grad.shape[-1]))
            else:
                grad_b = unbroadcast(xp.matmul(xp.swapaxes(self.a, -1, -2), grad), self.b.shape)
        return grad_a, grad_b
