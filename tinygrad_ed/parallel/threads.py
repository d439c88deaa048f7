"""Data parallelism over threads: every CPU core on one training step, where os.fork is missing.

Python threads can run at the same time here because numpy releases the GIL inside its array operations and BLAS
calls, which is where a training step spends its time (tinygrad_ed/parallel/sharding.py has the idea).

    model = GPT(config)
    parallel = DataParallel(model, workers=2)
    logits, loss = parallel(X, Y)    # forward on both cores
    loss.backward()                  # backward on both cores; gradients land in model's parameters
"""
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from tinygrad_ed.device import array_module
from tinygrad_ed.fast.cpu_runtime import keep_freed_memory, set_blas_threads
from tinygrad_ed.functional import cat
from tinygrad_ed.parallel.sharding import ParallelWrapper, drop_gradients, generator_slots, replicate, set_generators


class DataParallel(ParallelWrapper):
    """Wrap a model whose forward(inputs, targets) returns (output, mean loss); split the batch (axis 0) across
    `workers` threads. `workers` defaults to the number of CPU cores."""

    def __init__(self, model, workers=None):
        super().__init__(model, workers)
        self.replicas = [replicate(model) for _ in range(self.workers)]
        self._replica_generator_slots = [generator_slots(replica) for replica in self.replicas]
        self._replica_parameters = [replica.parameters() for replica in self.replicas]
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="data-parallel")
        if self.workers > 1:
            set_blas_threads(1)  # each worker is a core already: BLAS threads on top would oversubscribe them
        keep_freed_memory()      # each step frees and allocates the same large arrays again: keep them mapped

    def forward(self, inputs, targets=None):
        shards = self._shards(inputs)
        count = len(shards)
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
        return outputs, self._batch_loss(shards, [loss.data for loss in losses], inputs.device,
                                         partial(self._backward_shards, losses, run))

    def _backward_shards(self, shard_losses, run, weights, grad):
        """Every shard's backward at once, then each parameter's shard gradients summed."""
        def shard_backward(shard):
            try:
                shard_losses[shard].backward(grad * weights[shard])  # chain rule through the weighting
            except BaseException as error:  # returned, not raised: the other shards still finish before we go on
                return error
        replica_parameters = self._replica_parameters[:len(shard_losses)]
        errors = [error for error in run(shard_backward, range(len(shard_losses))) if error is not None]
        if errors:
            for replica in replica_parameters:
                drop_gradients(replica)
            raise errors[0]
        grads = []
        for index in range(len(self._parameters)):                         # Σ over shards, per parameter
            total = None
            for replica in replica_parameters:
                shard_grad, replica[index].grad = replica[index].grad, None  # the replica lets go of it ...
                if shard_grad is not None:
                    if total is None:
                        total = shard_grad
                    else:
                        total += shard_grad                                # ... so it can be summed into in place
            grads.append(total)
        return grads
