"""What every data-parallel wrapper shares: how a batch is cut into shards, how each shard's dropout is seeded, how
a model is replicated, the one graph node that stands for the whole batch's loss, and how many cores there are.

The idea is the one multi-GPU training uses (PyTorch's DistributedDataParallel), on the cores of one machine:
  1. split the batch into shards, one per worker;
  2. each worker runs forward and backward on its shard with a replica of the model whose parameters share the same
     arrays (no copies), so each replica gets its own gradient;
  3. the full-batch gradient is the shard gradients weighted by shard size and summed, because the loss is a mean
     over the batch:  ∂mean(L)/∂w = Σ_s (n_s / n) · ∂mean(L_s)/∂w.
"""
import os
from functools import partial

from tinygrad_ed.nn import Wrapper, copy_module
from tinygrad_ed.tensor import Function, Tensor, is_grad_enabled

# A shard smaller than this many tokens costs more in hand-offs (tens of microseconds each) than its share of the
# work saves: such batches run whole, in the calling thread.
MIN_SHARD_TOKENS = 256


def usable_cores():
    """The CPU cores this process may run on: its affinity mask where the OS has one (containers limit it), else
    the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def replicate(module):
    """A copy of `module` whose parameters are new Tensors sharing the original arrays: updates to the original
    (the optimizer works in place) are seen by the replica, while each keeps its own `.grad`. Tied weights stay
    tied. Everything else (configs, generators) is shared."""
    return copy_module(module, lambda parameter: Tensor(parameter.data, device=parameter.device, requires_grad=True))


def generator_slots(module):
    """(module, attribute name) of every random generator in a module tree: where dropout draws its masks."""
    return [(owner, name) for owner in module.modules() for name, value in vars(owner).items()
            if hasattr(value, "bit_generator")]


def set_generators(slots, generator):
    """Point every generator slot (see generator_slots) at `generator`."""
    for owner, name in slots:
        setattr(owner, name, generator)


def drop_gradients(parameters):
    """Forget the gradients of `parameters`: after a backward that failed half-way, whatever it summed so far
    must not be added to by the next one."""
    for parameter in parameters:
        parameter.grad = None


class ShardedLoss(Function):
    """The batch loss Σ_s (n_s/n)·loss_s as one graph node whose inputs are the model's parameters.

    Its backward is `backward_shards(grad)`, given by the wrapper that made it: it runs every shard's backward (in
    threads, or in worker processes) and returns each parameter's shard gradients, summed.
    """

    def forward(self, *parameters, shard_losses, weights, backward_shards):
        self.backward_shards = backward_shards
        return sum(weight * loss for weight, loss in zip(weights, shard_losses))

    def backward(self, grad):
        return tuple(self.backward_shards(grad))


class ParallelWrapper(Wrapper):
    """The base of the data-parallel wrappers: the wrapped model (`self.module`) owns the parameters that train and
    get saved, and train() / eval() reach it and the replicas through Module's walk over sub-modules; the batch is
    cut into shards the same way, and each shard's dropout is seeded the same way."""

    def __init__(self, model, workers):
        self.workers = max(1, workers or usable_cores())
        self.module = model
        self._parameters = model.parameters()  # the list never changes: walk the modules once, not every step
        # dropout: one generator per shard, reseeded from the model's own generator at every forward, so a run is
        # reproducible (workers drawing from one shared generator would take turns in any order)
        model_generators = generator_slots(model)
        self._source_generator = getattr(*model_generators[0]) if model_generators else None

    def _shards(self, inputs):
        """(first row, end row) of each shard of the batch: up to `workers`, none under MIN_SHARD_TOKENS tokens."""
        n = inputs.shape[0]
        count = max(1, min(self.workers, n, inputs.size // MIN_SHARD_TOKENS))
        return [(start * n // count, (start + 1) * n // count) for start in range(count)]

    def _batch_loss(self, shards, shard_losses, device, backward_shards):
        """The batch's mean loss Σ_s (n_s/n)·loss_s from each shard's (an array each): under no_grad a plain tensor,
        else a ShardedLoss node whose backward is backward_shards(weights, grad)."""
        n = shards[-1][1]
        weights = [(high - low) / n for low, high in shards]
        if not is_grad_enabled():
            return Tensor(sum(weight * loss for weight, loss in zip(weights, shard_losses)), device=device)
        return ShardedLoss.apply(*self._parameters, shard_losses=shard_losses, weights=weights,
                                 backward_shards=partial(backward_shards, weights))

    def _dropout_seeds(self, count):
        """One seed per shard, drawn from the model's own generator while training; None where nothing is drawn."""
        if not self.training or self._source_generator is None:
            return [None] * count
        return [int(self._source_generator.integers(2 ** 62)) for _ in range(count)]

    def parameters(self):
        """The wrapped model's parameters, as listed once when the wrapper was made (a walk costs ~0.1 ms a step)."""
        return list(self._parameters)
