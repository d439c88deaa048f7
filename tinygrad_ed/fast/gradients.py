"""Every parameter's gradient in one flat buffer on the GPU, so that what a step does to all gradients at once takes
one kernel launch instead of a few per parameter.

The chapter's clipping (optim/clip.py, step 4) and loss scaling (optim/grad_scaler.py) loop over the parameters:
on a GPU each line of such a loop is a kernel launch per parameter (~40 parameters in a 6-layer GPT: ~150 launches
for clipping, ~4 per parameter for unscaling), each launch a few microseconds of CPU time however little it does.
Here the gradients of a set of parameters are views of one flat buffer, the same idea as the flat bucket that
tinygrad_ed/distributed/ddp.py all-reduces: backward() writes each parameter's gradient into its view (its
`grad_home`, tinygrad_ed/tensor.py), and then
    ‖g‖² = flat · flat                        one dot product over every gradient
    g ← factor · g                            one elementwise kernel (cuda_kernels.CLIP_GRADIENTS)
    g ← g / S, found_inf                      one elementwise kernel (cuda_kernels.UNSCALE_GRADIENTS)

A bucket is made at the first step that asks for one (clipping or unscaling), from the gradients that step has; it
applies when the step's parameters are exactly those of one bucket and every gradient is still its view. Anything
else (a parameter without a gradient, a gradient set by hand, float16 or float64 gradients, numpy) takes the plain
loop, so the formulas stay the chapter's and this is only their speed.
"""
import weakref

import numpy as np

from tinygrad_ed.fast.cuda_kernels import kernels_for

_bucket_of = weakref.WeakKeyDictionary()  # parameter Tensor -> its GradientBucket


class GradientBucket:
    """One flat float32 buffer holding the gradients of `parameters` back to back; each parameter's grad_home is
    its view, and its current gradient is copied in (once: backward() writes into the view from then on)."""

    def __init__(self, xp, parameters):
        self.xp, self.count = xp, len(parameters)  # no list of the parameters: the bucket must not keep them alive
        self.flat = xp.empty(sum(param.size for param in parameters), dtype=np.float32)
        offset = 0
        for param in parameters:
            home = self.flat[offset:offset + param.size].reshape(param.shape)
            offset += param.size
            home[...] = param.grad
            param.grad_home, param.grad = home, home
            _bucket_of[param] = self

    def holds(self, parameters):
        """Whether `parameters` are exactly this bucket's, each with its gradient in the bucket."""
        return len(parameters) == self.count and \
            all(_bucket_of.get(param) is self and param.grad is param.grad_home for param in parameters)


def bucket_for(parameters):
    """The GradientBucket that holds exactly these parameters' gradients, made now when none of them has one yet;
    None where the plain loop must run (see the module's docstring)."""
    parameters = list(parameters)
    if not parameters or len({id(param) for param in parameters}) != len(parameters):
        return None
    xp = parameters[0].xp
    if getattr(xp, "__name__", None) != "cupy":
        return None
    if any(param.grad is None or param.device != parameters[0].device or np.dtype(param.dtype) != np.float32
           or np.dtype(param.grad.dtype) != np.float32 for param in parameters):
        return None
    buckets = {id(_bucket_of.get(param)): _bucket_of.get(param) for param in parameters}
    if list(buckets.values()) == [None]:
        return GradientBucket(xp, parameters)
    bucket = next(iter(buckets.values()))
    return bucket if len(buckets) == 1 and bucket is not None and bucket.holds(parameters) else None


def unscale(parameters, inverse_scale):
    """Every gradient times inverse_scale in one pass; returns the device flag (1: all finite), or None."""
    bucket = bucket_for(parameters)
    if bucket is None:
        return None
    return kernels_for(bucket.xp).unscale_gradients(bucket.flat, inverse_scale)


def clip(parameters, max_norm):
    """Every gradient scaled so that their global norm is at most max_norm, in one pass; returns the norm before
    (a 0-d device array), or None."""
    bucket = bucket_for(parameters)
    if bucket is None:
        return None
    before = _norm(bucket)
    kernels_for(bucket.xp).clip_gradients(bucket.flat, before, max_norm)
    return before


def norm(parameters):
    """The global norm of the gradients as one dot product (a 0-d device array), or None."""
    bucket = bucket_for(parameters)
    return None if bucket is None else _norm(bucket)


def _norm(bucket):
    """‖g‖ = sqrt(flat · flat): every gradient of the bucket in one dot product."""
    return bucket.xp.sqrt(bucket.xp.dot(bucket.flat, bucket.flat))
