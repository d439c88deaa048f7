"""One training iteration, the chapter's steps 2.1-2.5, once: train(), --explain, experiments.py, every benchmark
and the GPU scripts call `train_step`. nanoGPT's train.py inner loop, line for line:

    for micro_step in range(gradient_accumulation_steps):
        if ddp:
            model.require_backward_grad_sync = (micro_step == gradient_accumulation_steps - 1)
        logits, loss = model(X, Y)
        loss = loss / gradient_accumulation_steps
        X, Y = get_batch('train')
        scaler.scale(loss).backward()
    if grad_clip != 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)

`configure_optimizers` is nanoGPT's too: the one place that builds the AdamW every run trains with.
"""
from dataclasses import dataclass
from typing import Optional

from optim import AdamW, GradScaler, clip_grad_norm_, global_grad_norm, weight_decay_groups
from tinygrad_ed import Tensor
from tinygrad_ed.distributed import DistributedDataParallel



def configure_optimizers(model, weight_decay, learning_rate, betas):
    """nanoGPT's configure_optimizers: AdamW with weight decay on the matrices (matmul and embedding weights) and
    none on the vectors (biases, LayerNorm gains), optim/param_groups.py's two groups."""
    return AdamW(weight_decay_groups(model.named_parameters(), weight_decay), lr=learning_rate, betas=betas)


class StepObserver:
    """What train_step shows whoever watches it (--explain, the run's log line). Every method does nothing here:
    a watcher overrides the ones it needs, and reads; it must not change what it is shown."""

    def after_forward(self, index):
        """After micro-step `index`'s forward, before its backward."""

    def after_backward(self, index, X, Y, logits, loss):
        """After micro-step `index`'s backward: its batch, its logits, its loss (before the division of step 2.2);
        the parameters' .grad hold the gradients accumulated so far."""

    def before_update(self, model, grad_norm):
        """After clipping, before the optimizer moves the weights: model.parameters()' gradients are the ones the
        update uses; grad_norm is their global norm before clipping (None when neither clipped nor measured)."""


@dataclass
class Step:
    """What one train_step did."""
    loss: Tensor                 # the last micro-batch's loss (a 0-d Tensor: reading it waits for the device)
    grad_norm: Optional[Tensor]  # the global gradient norm before clipping; None when neither clipped nor measured
    stepped: bool                # False when the loss scaler skipped an update that overflowed (float16)
    next_batch: tuple            # (X, Y) for the next iteration, fetched during this one


def train_step(model, optimizer, batch, get_batch, lr, accumulation_steps=1, grad_clip=0.0, scaler=None,
               measure_norm=False, observer=None):
    """One iteration: set the learning rate, accumulate gradients over `accumulation_steps` micro-batches, clip,
    update, zero the gradients.

    model        computes (logits, mean loss) from (X, Y): a GPT, or a wrapper of one (DistributedDataParallel,
                 float16)
    optimizer    updates the parameters that the model's gradients land on
    batch        (X, Y) of this iteration's first micro-step; get_batch() draws each next one
    lr           this iteration's learning rate (step 2.1: the caller's schedule, get_lr or a constant)
    grad_clip    the global norm to clip to; 0.0 turns clipping off
    scaler       a GradScaler for float16; float32 needs none
    measure_norm compute the gradient norm even when clipping is off (a log iteration's health check)
    observer     a StepObserver to show the step to (--explain)
    """
    scaler = scaler or GradScaler(enabled=False)   # disabled, every method passes through
    observer = observer or StepObserver()
    X, Y = batch
    # step 2.1: this iteration's learning rate, on every parameter group
    for group in optimizer.param_groups:
        group["lr"] = lr

    # step 2.2: gradient accumulation over micro-batches
    for micro_step in range(accumulation_steps):
        # data parallel: the ranks sum their gradients once, in the last micro-step's backward (nanoGPT's rule)
        if isinstance(model, DistributedDataParallel):
            model.require_backward_grad_sync = micro_step == accumulation_steps - 1
        # a) forward; dividing the loss makes the summed gradients the mean over the micro-batches, not their sum
        logits, loss = model(X, Y)
        scaled_loss = loss / accumulation_steps
        observer.after_forward(micro_step)
        # b) fetch the next batch now: on a GPU the host prepares it while the device still computes
        next_X, next_Y = get_batch()
        # c) backward (part 3's step 3): the gradients add up (+=) across micro-steps; scaled for float16
        scaler.scale(scaled_loss).backward()
        observer.after_backward(micro_step, X, Y, logits, loss)
        X, Y = next_X, next_Y

    # step 2.3 (part 3's step 4): clip the global gradient norm, measured on the unscaled gradients
    grad_norm = None
    if grad_clip != 0.0 or measure_norm:
        scaler.unscale_(optimizer)
        grad_norm = clip_grad_norm_(model.parameters(), grad_clip) if grad_clip != 0.0 \
            else global_grad_norm(model.parameters())
    observer.before_update(model, grad_norm)

    # step 2.4 (part 3's step 5): the update, skipped by the scaler when a float16 gradient overflowed
    stepped = scaler.step(optimizer)
    scaler.update()                  # float16: a smaller loss scale after an overflow, a larger one after many steps
    # step 2.5: drop the gradients, so the next backward starts from zero
    optimizer.zero_grad(set_to_none=True)
    return Step(loss=loss, grad_norm=grad_norm, stepped=stepped, next_batch=(X, Y))
