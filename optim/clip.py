"""Gradient clipping by the global norm (chapter part 3, step 4).

One exploding gradient (the chapter's w6.grad = 45629.12) would throw its weight far off. Clipping looks at all
gradients as one long vector g and, when its length ‖g‖ exceeds max_norm, shrinks every gradient by the same
factor: the direction of the update is kept, only its size is limited.
"""
import numpy as np

from tinygrad_ed import fast
from tinygrad_ed.device import array_module, device_of
from tinygrad_ed.tensor import Tensor


def global_grad_norm(parameters):
    """‖g‖ = sqrt(Σ over all parameters Σ over entries g²), as a 0-d Tensor on the gradients' device.

    Parameters without a gradient are skipped. Summed in float32 at least (float16 gradients would overflow at
    g² > 65504), in float64 when a gradient is float64. An inf or NaN gradient gives an inf or NaN norm.
    """
    parameters = list(parameters)
    fused = fast.gradient_norm(parameters)  # cuda: one dot product over one flat buffer of every gradient
    if fused is not None:
        return Tensor(fused, device=parameters[0].device)
    grads = [param.grad for param in parameters if param.grad is not None]
    if not grads:
        return Tensor(np.zeros((), dtype=np.float32))
    devices = {device_of(grad) for grad in grads}
    if len(devices) > 1:
        raise ValueError(f"gradients on several devices {sorted(devices)}: move the model to one device")
    device = devices.pop()
    xp = array_module(device)
    dtype = np.float64 if any(grad.dtype == np.float64 for grad in grads) else np.float32
    total = xp.zeros((), dtype=dtype)
    for grad in grads:
        flat = grad.astype(dtype, copy=False).ravel()
        total += xp.dot(flat, flat)  # Σ g² as one BLAS dot product: no g²-sized temporary, 3× faster than einsum
    return Tensor(xp.sqrt(total), device=device)


def clip_factor(xp, norm, max_norm):
    """min(1, max_norm / (‖g‖ + 1e-6)), what clip_grad_norm_ multiplies every gradient by, for a norm that is an
    array of module xp (or, with numpy, a Python number). Never above 1: clipping never enlarges a gradient."""
    return xp.minimum(float(max_norm) / (norm + 1e-6), 1.0)


def clip_grad_norm_(parameters, max_norm):
    """Scale all gradients in place so that their global norm is at most max_norm; return the norm before.

    # step 4: clip the global norm
        ‖g‖ ← sqrt(Σ g²)                      over every gradient of every parameter
        factor ← min(1, max_norm / (‖g‖ + 1e-6))
        g ← factor · g                        for every gradient
    The min happens on the device, as in PyTorch, so no value travels to the host. The returned norm (a 0-d
    Tensor) is the chapter's grad_norm: log it to see explosions, which an inf or NaN norm reports as such.
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm} (nanoGPT skips clipping when grad_clip == 0.0)")
    parameters = list(parameters)
    fused = fast.clip_gradients(parameters, max_norm)  # cuda: the same in one pass over one flat buffer
    if fused is not None:
        return Tensor(fused, device=parameters[0].device)
    norm = global_grad_norm(parameters)
    xp = norm.xp
    factor = clip_factor(xp, norm.data, max_norm)
    for param in parameters:
        if param.grad is not None:
            param.grad *= factor.astype(param.grad.dtype)
    return norm

