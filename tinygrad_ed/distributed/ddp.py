"""DistributedDataParallel: one model per rank, the batch cut into rank slices, the gradients summed across ranks.

Why the sum is right: the batch loss is a mean over its n sequences, and rank r holds n_r of them, so
    L = Σ_r (n_r / n) · L_r            and            ∂L/∂w = Σ_r (n_r / n) · ∂L_r/∂w.
Each rank weights its slice's loss by n_r / n, backward gives it (n_r / n) · ∂L_r/∂w, and one all-reduce (a sum)
over one flat bucket of every gradient gives each rank ∂L/∂w, the gradient one process computes for the whole
batch. (PyTorch's DDP averages instead, which is the same when every slice is the same size.)

So that 1, 2 or N ranks compute the same function:
  - every rank draws the whole batch, as one process does, and takes its rows;
  - the loss DDP returns is the whole batch's (each rank's weighted slice loss, summed across ranks), so what is
    printed, and every decision taken from it, is the same on every rank and at every world size;
  - dropout gives every sequence of the batch its own random stream, seeded from the model's dropout generator
    and the sequence's row, so a sequence is dropped out the same way whichever rank holds it.
nanoGPT's gradient accumulation rule: set `model.require_backward_grad_sync = False` on the micro-steps before the
last, and their gradients only add up locally; the last micro-step's backward sums the accumulated ones.
"""
import numpy as np

from tinygrad_ed import fast
from tinygrad_ed.device import array_module
from tinygrad_ed.nn import Wrapper
from tinygrad_ed.tensor import Function, Tensor


def generator_slots(module):
    """(module, attribute name) of every random generator in a module tree: where dropout draws its masks."""
    return [(owner, name) for owner in module.modules() for name, value in vars(owner).items()
            if hasattr(value, "bit_generator")]


class RowStreams:
    """A dropout generator that draws each row of an array (a sequence of the batch) from that row's own stream:
    row `first_row + i` of the global batch always gets the same numbers, whichever rank draws it."""

    def __init__(self, xp, seed, first_row, rows):
        self.xp = xp
        self.generators = [xp.random.default_rng(int(np.random.SeedSequence([seed, row]).generate_state(1)[0]))
                           for row in range(first_row, first_row + rows)]

    def random(self, shape, dtype="float32"):
        if shape[0] != len(self.generators):
            raise ValueError(f"RowStreams: an array of {shape[0]} rows drawn from {len(self.generators)} streams")
        return self.xp.stack([generator.random(shape[1:], dtype=dtype) for generator in self.generators])


class BatchLoss(Function):
    """The whole batch's loss Σ_r (n_r/n)·L_r as one node whose inputs are the model's parameters.

    Forward: this rank's weighted slice loss, summed across ranks. Backward: this slice's own backward (the
    gradients land on the parameters and add up across micro-steps, as any backward's do), then, on a micro-step
    that synchronises, the one all-reduce of every gradient. Nothing more flows to the parameters from here.
    """

    def forward(self, *parameters, slice_loss, weight, ddp):
        self.slice_loss, self.weight, self.ddp = slice_loss, weight, ddp
        total = (slice_loss.data * slice_loss.dtype.type(weight)).reshape(1)  # an array: all_reduce sums in place
        ddp.group.all_reduce(total)
        return total.reshape(())

    def backward(self, grad):
        self.slice_loss.backward(grad * grad.dtype.type(self.weight))  # chain rule through the weighting
        if self.ddp.require_backward_grad_sync:
            self.ddp.sync_gradients()
        return (None,) * len(self.inputs)


class DistributedDataParallel(Wrapper):
    """Wrap a model whose forward(inputs, targets) returns (output, mean loss) for data-parallel training in
    `group`. Construction copies rank 0's weights to every rank. forward(X, Y) takes the whole batch and returns
    (this rank's slice of the output, the whole batch's loss)."""

    def __init__(self, module, group):
        self.module, self.group = module, group
        self.require_backward_grad_sync = True
        self.gradient_syncs = 0                  # all-reduces of the gradients so far (tests count them)
        self._parameters = module.parameters()   # one walk, not one a step
        slots = generator_slots(module)
        self._dropout_slots = slots
        self._dropout_source = getattr(*slots[0]) if slots else None
        if group.world_size > 1:
            bucket = self._bucket()
            for parameter, view in self._views(bucket):
                view[...] = parameter.data.reshape(-1)
            group.broadcast(bucket)
            for parameter, view in self._views(bucket):
                parameter.data[...] = view.reshape(parameter.shape)

    def _bucket(self):
        first = self._parameters[0]
        if not hasattr(self, "_flat"):
            self._flat = first.xp.empty(sum(p.size for p in self._parameters), dtype=first.dtype)
        return self._flat

    def _views(self, bucket):
        offset = 0
        for parameter in self._parameters:
            yield parameter, bucket[offset:offset + parameter.size]
            offset += parameter.size

    def _rows(self, n):
        """(first row, end row) of this rank's slice of a batch of n sequences."""
        rank, world_size = self.group.rank, self.group.world_size
        if n < world_size:
            raise ValueError(f"DistributedDataParallel: a batch of {n} sequences cannot be cut into {world_size} "
                             f"rank slices; use a batch_size of at least {world_size}, or fewer ranks")
        return rank * n // world_size, (rank + 1) * n // world_size

    def forward(self, inputs, targets=None):
        n = inputs.shape[0]
        low, high = self._rows(n)
        if self.group.world_size > 1:
            inputs = Tensor(inputs.data[low:high], device=inputs.device)
            targets = None if targets is None else Tensor(targets.data[low:high], device=targets.device)
        if self.training and self._dropout_source is not None:
            seed = int(self._dropout_source.integers(2 ** 62))  # the same on every rank: the same seed, the same draws
            streams = RowStreams(array_module(inputs.device), seed, low, high - low)
            for owner, name in self._dropout_slots:
                setattr(owner, name, streams)
            try:
                output, slice_loss = self.module(inputs, targets)
            finally:
                for owner, name in self._dropout_slots:
                    setattr(owner, name, self._dropout_source)
        else:
            output, slice_loss = self.module(inputs, targets)
        if slice_loss is None:
            return output, None
        return output, BatchLoss.apply(*self._parameters, slice_loss=slice_loss, weight=(high - low) / n, ddp=self)

    def sync_gradients(self):
        """Sum every parameter's gradient across the ranks, in one all-reduce of one flat bucket."""
        self.gradient_syncs += 1
        if self.group.world_size == 1:
            return
        gradients = fast.gradient_buffer(self._parameters)  # cuda: the gradients already are one flat buffer
        if gradients is not None:
            self.group.all_reduce(gradients)
            return
        bucket = self._bucket()
        for parameter, view in self._views(bucket):
            if parameter.grad is None:
                view.fill(0)
            else:
                view[...] = parameter.grad.reshape(-1)
        self.group.all_reduce(bucket)
        for parameter, view in self._views(bucket):
            if parameter.grad is None:
                parameter.grad = view.reshape(parameter.shape).copy()
            else:
                parameter.grad[...] = view.reshape(parameter.shape)

    def parameters(self):
        """The wrapped model's parameters, as listed once when the wrapper was made (a walk costs ~0.1 ms a step)."""
        return list(self._parameters)
