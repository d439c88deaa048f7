"""tinygrad_ed: a from-scratch reverse-mode autograd engine on numpy (cpu) and cupy (cuda)."""
from tinygrad_ed.tensor import Tensor, no_grad, is_grad_enabled, where
from tinygrad_ed.functional import (cat, linear, stack, cross_entropy, layer_norm, embedding, dropout,
                                    scaled_dot_product_attention)
from tinygrad_ed.gradcheck import gradcheck, GradcheckError
from tinygrad_ed.device import cuda_available

__all__ = ["Tensor", "no_grad", "is_grad_enabled", "where", "cat", "stack", "linear", "cross_entropy", "layer_norm",
           "embedding", "dropout", "scaled_dot_product_attention", "gradcheck", "GradcheckError", "cuda_available"]
