"""Data parallelism over threads: use every CPU core for one training step.

The idea is the one multi-GPU training uses (PyTorch's DistributedDataParallel), on the cores of one machine:
  1. split the batch into shards, one per worker;
  2. each worker runs forward and backward on its shard with a replica of the model whose parameters share
     the same arrays (no copies), so each replica gets its own gradient;
  3. the full-batch gradient is the shard gradients weighted by shard size and summed — because the loss is a
     mean over the batch:  ∂mean(L)/∂w = Σ_s (n_s / n) · ∂mean(L_s)/∂w.
Python threads can run at the same time here because numpy releases the GIL inside its array operations and
BLAS calls, which is where a training step spends its time.

    model = GPT(config)
    parallel = DataParallel(model, workers=2)
    logits, loss = parallel(X, Y)    # forward on both cores
    loss.backward()                  # backward on both cores; gradients land in model's parameters
"""
import copy
import os
from concurrent.futures import ThreadPoolExecutor

from tinygrad_ed.fast.cpu_runtime import keep_freed_memory, set_blas_threads
from tinygrad_ed.device import array_module
from tinygrad_ed.functional import cat
from tinygrad_ed.nn import Module
from tinygrad_ed.tensor import Function, Tensor, is_grad_enabled


def usable_cores():
    """The CPU cores this process may run on: its affinity mask where the OS has one (containers limit it), else
    the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def replicate(module):
    """A copy of `module` whose parameters are new Tensors sharing the original arrays: updates to the original
    (the optimizer works in place) are seen by the replica, while each keeps its own `.grad`. Tied weights stay
    tied. Everything else (configs, generators) is shared."""
    replicas = {}  # id(original tensor) -> replica tensor, so a tied weight maps to one replica

    def copy_module(original):
        clone = copy.copy(original)
        for name, value in vars(original).items():
            if isinstance(value, Tensor) and value.requires_grad:
                if id(value) not in replicas:
                    replicas[id(value)] = Tensor(value.data, device=value.device, requires_grad=True)
                setattr(clone, name, replicas[id(value)])
            elif isinstance(value, Module):
                setattr(clone, name, copy_module(value))
            elif isinstance(value, list) and any(isinstance(item, Module) for item in value):
                setattr(clone, name, [copy_module(item) for item in value])
        return clone

    return copy_module(module)


def _generator_slots(module):
    """(module, attribute name) of every random generator in a module tree: where dropout draws its masks."""
    return [(owner, name) for owner in module.modules() for name, value in vars(owner).items()
            if hasattr(value, "bit_generator")]


def drop_gradients(parameters):
    """Forget the gradients of `parameters`: after a backward that failed half-way, whatever it summed so far
    must not be added to by the next one."""
    for parameter in parameters:
        parameter.grad = None


def set_generators(slots, generator):
    """Point every generator slot (see _generator_slots) at `generator`."""
    for owner, name in slots:
        setattr(owner, name, generator)


# A shard smaller than this many tokens costs more in thread hand-offs (tens of microseconds each) than its share
# of the work saves: such batches run whole, in the calling thread.
MIN_SHARD_TOKENS = 256


class _ShardedLoss(Function):
    """The batch loss Σ_s (n_s/n)·loss_s as one graph node whose inputs are the model's parameters.
    Its backward runs the shards' backward passes in parallel and sums each parameter's shard gradients."""

    def forward(self, *parameters, shard_losses, weights, replica_parameters, run):
        self.shard_losses, self.weights, self.replica_parameters, self.run = \
            shard_losses, weights, replica_parameters, run
        return sum(weight * loss.data for weight, loss in zip(weights, shard_losses))

    def backward(self, grad):
        def shard_backward(shard):
            try:
                self.shard_losses[shard].backward(grad * self.weights[shard])  # chain rule through the weighting
            except BaseException as error:  # returned, not raised: the other shards still finish before we go on
                return error
        errors = [error for error in self.run(shard_backward, range(len(self.shard_losses))) if error is not None]
        if errors:
            for replica in self.replica_parameters:
                drop_gradients(replica)
            raise errors[0]
        grads = []
        for index in range(len(self.inputs)):                              # Σ over shards, per parameter
            total = None
            for replica in self.replica_parameters:
                shard_grad, replica[index].grad = replica[index].grad, None  # the replica lets go of it ...
                if shard_grad is not None:
                    if total is None:
                        total = shard_grad
                    else:
                        total += shard_grad                                # ... so it can be summed into in place
            grads.append(total)
        return tuple(grads)


class ParallelWrapper(Module):
    """What every data-parallel wrapper shares: the wrapped model (`self.module`) owns the parameters that train
    and get saved, and train() / eval() reach it and the replicas through Module's walk over sub-modules; the
    batch is cut into shards the same way, and each shard's dropout is seeded the same way."""

    def __init__(self, model, workers):
        self.workers = max(1, workers or usable_cores())
        self.module = model
        self._parameters = model.parameters()  # the list never changes: walk the modules once, not every step
        # dropout: one generator per shard, reseeded from the model's own generator at every forward, so a run is
        # reproducible (workers drawing from one shared generator would take turns in any order)
        model_generators = _generator_slots(model)
        self._source_generator = getattr(*model_generators[0]) if model_generators else None

    def _shards(self, inputs):
        """(first row, end row) of each shard of the batch: up to `workers`, none under MIN_SHARD_TOKENS tokens."""
        n = inputs.shape[0]
        count = max(1, min(self.workers, n, inputs.size // MIN_SHARD_TOKENS))
        return [(start * n // count, (start + 1) * n // count) for start in range(count)]

    def _dropout_seeds(self, count):
        """One seed per shard, drawn from the model's own generator while training; None where nothing is drawn."""
        if not self.training or self._source_generator is None:
            return [None] * count
        return [int(self._source_generator.integers(2 ** 62)) for _ in range(count)]

    def named_parameters(self):
        return self.module.named_parameters()

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state_dict):
        return self.module.load_state_dict(state_dict)


class DataParallel(ParallelWrapper):
    """Wrap a model whose forward(inputs, targets) returns (output, mean loss); split the batch (axis 0) across
    `workers` threads. `workers` defaults to the number of CPU cores."""

    def __init__(self, model, workers=None):
        super().__init__(model, workers)
        self.replicas = [replicate(model) for _ in range(self.workers)]
        self._replica_generator_slots = [_generator_slots(replica) for replica in self.replicas]
        self._replica_parameters = [replica.parameters() for replica in self.replicas]
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="data-parallel")
        if self.workers > 1:
            set_blas_threads(1)  # each worker is a core already: BLAS threads on top would oversubscribe them
        keep_freed_memory()      # each step frees and allocates the same large arrays again: keep them mapped

    def forward(self, inputs, targets=None):
        shards = self._shards(inputs)
        count, n = len(shards), inputs.shape[0]
        run = self._pool.map if count > 1 else map  # one shard: no thread hand-off at all
        for slots, seed in zip(self._replica_generator_slots, self._dropout_seeds(count)):
            if seed is not None:
                set_generators(slots, array_module(inputs.device).random.default_rng(seed))

        def shard_forward(shard):
            (low, high), replica = shards[shard], self.replicas[shard]
            return replica(inputs[low:high], targets[low:high] if targets is not None else None)

        results = list(run(shard_forward, range(count)))
        outputs = cat([output.detach() for output, _ in results], axis=0) if count > 1 else results[0][0].detach()
        if targets is None:
            return outputs, None
        losses = [loss for _, loss in results]
        weights = [(high - low) / n for low, high in shards]
        if not is_grad_enabled():
            return outputs, Tensor(sum(w * loss.data for w, loss in zip(weights, losses)), device=inputs.device)
        loss = _ShardedLoss.apply(*self._parameters, shard_losses=losses, weights=weights,
                                  replica_parameters=self._replica_parameters[:count], run=run)
        return outputs, loss
