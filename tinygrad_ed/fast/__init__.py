"""The speed at the edge: what makes the plain math fast on one kind of machine, chosen in one place.

A reader of the chapter can skip this package. The op files (tinygrad_ed/ops/) and optim/adamw.py hold each formula
once, written against `xp` (numpy or cupy); what is here computes the same numbers faster:

  rows.py          the sums, means and maxima over a row that the layers' formulas name (row_sum(xp, x) is Σ over
                   the last axis): on numpy as BLAS matrix-vector products, measured several times faster there;
                   elsewhere xp's own sum and max. The formula reads the same either way.
  cuda_kernels.py  fused CUDA kernels (GELU, LayerNorm, cross-entropy, the attention softmax, AdamW), and their
  cuda_ops.py      Functions: subclasses of the plain ops whose forward and backward launch one kernel each
  gradients.py     every gradient in one flat buffer on the GPU: clipping and unscaling in one launch each
  cpu_runtime.py   the BLAS thread count and the C allocator, for data parallelism over CPU cores

The one dispatch point is `implementation(function, xp, arrays, options)`, which `Function.apply` asks before every
op: it returns the op itself, or the faster Function registered for it when that one accepts these arrays (cupy and
float32 for the CUDA kernels). The optimizer asks `parameter_update(optimizer, param)` the same way, clipping
`clip_gradients` and `gradient_norm`, the loss scaler `unscale_gradients`, data parallelism `gradient_buffer`: each
returns None where the plain code runs.
`with plain_path():` switches every alternative off, to compare the two paths on one GPU.
"""
import contextlib

from tinygrad_ed.fast import gradients  # imports numpy only: the kernels are built from the xp they are given

_enabled = True
# plain op class -> its faster Function, and the optimizers' faster update; filled from cuda_ops at the first call,
# not at import: cuda_ops imports the ops, which import Function from tinygrad_ed.tensor, which imports this module
_alternatives = {}
_fused_update = None


def _load():
    global _fused_update
    from tinygrad_ed.fast import cuda_ops  # never imports cupy: the kernels are built from the xp they are given
    _alternatives.update(cuda_ops.ALTERNATIVES)
    _fused_update = cuda_ops.fused_parameter_update


def implementation(function, xp, arrays, options):
    """The Function class that should run `function` on these input arrays: a registered faster one where it accepts
    them, else `function` itself."""
    if _fused_update is None:
        _load()
    faster = _alternatives.get(function)
    if faster is None or not _enabled:
        return function
    return faster if faster.accepts(xp, arrays, options) else function


def parameter_update(optimizer, param):
    """A faster `update_param(param, group, state)` for this optimizer and parameter, or None for its own."""
    if _fused_update is None:
        _load()
    return _fused_update(optimizer, param) if _enabled else None


def clip_gradients(parameters, max_norm):
    """Clip the gradients of `parameters` to the global norm max_norm in one pass over one flat buffer (cuda); returns
    the norm before clipping (a 0-d device array), or None where optim/clip.py's loop runs."""
    return gradients.clip(parameters, max_norm) if _enabled else None


def gradient_norm(parameters):
    """The global norm of the gradients of `parameters` as one dot product (cuda), or None for the plain loop."""
    return gradients.norm(parameters) if _enabled else None


def gradient_buffer(parameters):
    """The one flat array that holds every gradient of `parameters` (cuda), for a collective to sum in place; None
    where they are separate arrays (DistributedDataParallel then copies them into its own bucket)."""
    bucket = gradients.bucket_for(parameters) if _enabled else None
    return None if bucket is None else bucket.flat


def unscale_gradients(parameters, inverse_scale):
    """Multiply the gradients of `parameters` by inverse_scale in one pass that also checks them for inf and NaN
    (cuda); returns the device flag (nonzero: all finite), or None where optim/grad_scaler.py's loop runs."""
    return gradients.unscale(parameters, inverse_scale) if _enabled else None


@contextlib.contextmanager
def plain_path():
    """Inside `with plain_path():` every op and optimizer runs its plain xp code, as on the CPU. An op whose forward
    ran with a kernel still runs its backward with one: it is an object of the kernel's class."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous
