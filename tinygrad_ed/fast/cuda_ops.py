"""The fused CUDA kernels as Functions: each a subclass of the plain op it replaces, with the same inputs and outputs.

On the GPU every `xp.` call inside an op is one kernel launch and one pass over memory; each class here runs its op's
whole formula, forward or backward, as one kernel (tinygrad_ed/fast/cuda_kernels.py, where each kernel's math is
written out above its source). A class's `accepts(xp, arrays, options)` says when it applies: cupy arrays, all
float32, or (GELU, LayerNorm, cross-entropy) all float16. tinygrad_ed/fast/__init__.py asks it before every op through ALTERNATIVES.
"""
import numpy as np

from optim.adamw import AdamW
from tinygrad_ed.fast.cuda_kernels import kernels_for
from tinygrad_ed.ops.activations import Gelu
from tinygrad_ed.ops.layers import Attention, CrossEntropy, LayerNormFunction


def _cupy_float32(xp, arrays):
    """Whether every array is a float32 array of cupy (integer ids, e.g. targets, are not inputs here)."""
    return _cupy_all(xp, arrays, np.float32)


def _cupy_float32_or_16(xp, arrays):
    """Whether the arrays are cupy's and all float32, or all float16 (the float16 run's compute dtype)."""
    return _cupy_all(xp, arrays, np.float32) or _cupy_all(xp, arrays, np.float16)


def _cupy_all(xp, arrays, dtype):
    return getattr(xp, "__name__", None) == "cupy" and all(np.dtype(array.dtype) == dtype for array in arrays)


class GeluKernel(Gelu):
    """x·Φ(x) forward, grad·(Φ(x) + x·φ(x)) backward, one kernel each (Φ recomputed from x in backward); float32, or
    float16 loaded and stored with the math in float."""

    @staticmethod
    def accepts(xp, arrays, options):
        return options.get("approximate", "none") == "none" and _cupy_float32_or_16(xp, arrays)

    def forward(self, x, approximate="none"):
        self.x = x
        return kernels_for(self.xp).gelu_forward(x)

    def backward(self, grad):
        return kernels_for(self.xp).gelu_backward(self.x, grad)


class LayerNormKernel(LayerNormFunction):
    """One kernel, one block per row, for y (writing x̂ and rstd for backward), one for ∂loss/∂x. float16 arrays run
    the same float32 kernels, cast on the way in and out (three launches instead of the plain code's ~12); x̂ and rstd
    stay float32, as in the plain op."""

    @staticmethod
    def accepts(xp, arrays, options):
        return _cupy_float32_or_16(xp, arrays)

    def forward(self, x, weight=None, bias=None, eps=1e-5):
        self.weight = weight
        out, self.normalized, self.rstd = kernels_for(self.xp).layer_norm_forward(x, weight, bias, eps)
        return out.astype(x.dtype, copy=False)

    def backward(self, grad):
        grad_x = kernels_for(self.xp).layer_norm_backward(grad, self.normalized, self.weight, self.rstd)
        return (grad_x.astype(grad.dtype, copy=False), *self.parameter_gradients(grad))[:len(self.inputs)]


class CrossEntropyKernel(CrossEntropy):
    """Softmax and -log p(target) in one kernel with one block per row; (softmax - one-hot)·grad/count in another.
    float16 logits run the same float32 kernels on a float32 copy: the softmax in float32, the mean loss rounded to
    float16 and the logits' gradient cast to float16 (by the autograd engine) at the end."""

    @staticmethod
    def accepts(xp, arrays, options):  # the kernel computes the one-hot loss: label smoothing takes the plain op
        return not options.get("label_smoothing") and _cupy_float32_or_16(xp, arrays)

    def forward(self, logits, targets, ignore_index=None, label_smoothing=0.0):
        xp = self.xp
        logits = logits.reshape(-1, logits.shape[-1])                        # (N, V)
        targets = targets.reshape(-1)                                        # (N,)
        self.probs, losses = kernels_for(xp).cross_entropy_forward(logits, targets, ignore_index)
        self.targets, self.ignore_index = targets, ignore_index
        self.count = max(len(targets), 1) if ignore_index is None else \
            xp.maximum((targets != ignore_index).sum(), 1)                    # a device array: no host sync
        return (losses.sum() / self.count).astype(logits.dtype)

    def backward(self, grad):
        grad_logits = kernels_for(self.xp).cross_entropy_backward(self.probs, self.targets, self.ignore_index,
                                                                  grad / self.count)
        return grad_logits.reshape(self.inputs[0].shape)


class AttentionKernel(Attention):
    """Attention with its softmax (scale, causal mask, softmax, in place) and the softmax's backward as one kernel
    each, one block per row of scores; the matrix products are the plain op's."""

    @staticmethod
    def accepts(xp, arrays, options):
        return _cupy_float32(xp, arrays)

    def softmax(self, scores, causal):
        return kernels_for(self.xp).attention_softmax_forward(scores, self.scale, causal)

    def softmax_backward(self, grad_probs):
        return kernels_for(self.xp).attention_softmax_backward(grad_probs, self.probs, self.scale)


# plain op -> the kernel Function that may stand in for it
ALTERNATIVES = {Gelu: GeluKernel, LayerNormFunction: LayerNormKernel, CrossEntropy: CrossEntropyKernel,
                Attention: AttentionKernel}


def fused_parameter_update(optimizer, param):
    """AdamW's whole update_param in one kernel, for a float32 cupy parameter that watch() does not follow (a watched
    one takes the plain update, which records its intermediate values); None elsewhere."""
    if type(optimizer) is not AdamW or param in optimizer._watches:
        return None
    if not _cupy_float32(param.xp, (param.data, param.grad)):
        return None
    return _adamw_kernel_update


def _adamw_kernel_update(param, group, state):
    m, v, t = AdamW.advance_state(param, state)
    beta1, beta2 = (float(beta) for beta in group["betas"])
    kernels_for(param.xp).adamw_step(param.data, param.grad, m, v, lr=float(group["lr"]), beta1=beta1, beta2=beta2,
                                     weight_decay=float(group["weight_decay"]), eps=float(group["eps"]), step=t)
