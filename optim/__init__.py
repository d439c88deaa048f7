"""optim: what happens after loss.backward() (chapter part 3, steps 4-5) and around it.

  clip_grad_norm_      step 4: limit the global gradient norm
  AdamW, SGD           step 5: the parameter update (Optimizer is their base class)
  GradScaler           loss scaling for float16: scale the loss, unscale the grads, skip overflowing steps
  get_lr               nanoGPT's warmup + cosine learning-rate schedule
  weight_decay_groups  the two groups of nanoGPT's configure_optimizers (gpt/step.py builds AdamW over them):
                       decay matrices, not biases or LayerNorm weights
"""
from optim.adamw import AdamW
from optim.clip import clip_factor, clip_grad_norm_, global_grad_norm
from optim.grad_scaler import GradScaler
from optim.optimizer import Optimizer
from optim.param_groups import weight_decay_groups
from optim.schedule import get_lr
from optim.sgd import SGD

__all__ = ["AdamW", "SGD", "Optimizer", "clip_factor", "clip_grad_norm_", "global_grad_norm", "get_lr", "GradScaler",
           "weight_decay_groups"]
