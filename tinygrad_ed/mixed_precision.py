"""float16 compute on float32 weights (mixed precision), as one wrapper around the model.

The forward and backward passes run on a float16 copy of the model, at half the memory traffic; the optimizer keeps
updating the float32 weights, because float16 cannot hold a small update to a weight (1 - lr·wd rounds to 1 in
float16). The loss scaler (optim/grad_scaler.py) lifts the tiny float16 gradients out of underflow.

    model = HalfPrecision(raw_model)     # raw_model: float32, what the optimizer updates and a checkpoint saves
    logits, loss = model(X, Y)           # float16 forward on this step's weights; the loss comes out as float32
    scaler.scale(loss).backward()        # float16 backward; the gradients land on raw_model's float32 parameters

Evaluation and generation (anything under no_grad) run the float32 weights directly: no scaling is needed there.
"""
import numpy as np

from tinygrad_ed.nn import Wrapper, copy_module
from tinygrad_ed.tensor import Function, Tensor, is_grad_enabled


class HalfPrecision(Wrapper):
    """Wrap a model whose forward(inputs, targets) returns (output, loss); run it in `dtype` (float16) while the
    wrapped model's parameters, which this wrapper reports as its own, stay as they are."""

    def __init__(self, model, dtype=np.float16):
        self.module = model
        self.half = copy_module(model, lambda p: Tensor(p.data.astype(dtype), device=p.device, requires_grad=True))

    def forward(self, inputs, targets=None):
        if not is_grad_enabled():
            return self.module(inputs, targets)
        # NOTE: walked at every forward, not kept: a data-parallel replica of this wrapper must find its own tensors
        weights, half_weights = self.module.parameters(), self.half.parameters()
        for weight, half_weight in zip(weights, half_weights):
            half_weight.data[...] = weight.data     # this step's weights, rounded to float16
        output, half_loss = self.half(inputs, targets)
        if half_loss is None:
            return output, None
        return output, HalfLoss.apply(*weights, half_loss=half_loss, half_weights=half_weights)


class HalfLoss(Function):
    """The float16 model's loss as a node whose inputs are the float32 weights. Forward: the loss in the weights'
    dtype. Backward: the float16 backward, whose float16 gradients the autograd engine casts to the float32 weights'
    dtype (straight into a weight's place in the flat gradient buffer on cuda: one pass, tinygrad_ed/fast)."""

    def forward(self, *weights, half_loss, half_weights):
        self.half_loss, self.half_weights = half_loss, half_weights
        return half_loss.data.astype(weights[0].dtype)

    def backward(self, grad):
        try:
            self.half_loss.backward(grad.astype(self.half_loss.dtype))
            return tuple(half.grad for half in self.half_weights)
        finally:
            for half in self.half_weights:
                half.grad = None
