"""Data parallelism over processes: the idea of tinygrad_ed/parallel/sharding.py without Python's global
interpreter lock (GIL), which the thread version (threads.py) shares.

Two threads of one process take turns holding the GIL for every op's Python bookkeeping; measured on the default
CPU run, two half-batch shards took 37 ms as threads and 32 ms as separate processes. So here each extra shard runs
in a forked worker process, as PyTorch's DistributedDataParallel runs one process per GPU:
  - the model's parameters are moved into shared memory before the fork, so every process computes with the same
    weights and sees the optimizer's in-place updates at once, without copying them;
  - each worker runs forward and backward on its shard with its own copy of the model objects and writes its
    gradients into its own shared buffer; the main process runs the first shard itself and sums them all,
    weighted by shard size, exactly as DataParallel does.
Commands and results (token ids, losses, logits) travel through pipes; weights and gradients never do.
Needs os.fork (Linux, macOS); elsewhere use DataParallel.
"""
import mmap
import multiprocessing
import signal
import traceback
import weakref
from functools import partial

import numpy as np

from tinygrad_ed.fast.cpu_runtime import keep_freed_memory, set_blas_threads
from tinygrad_ed.functional import cat
from tinygrad_ed.parallel.sharding import ParallelWrapper, drop_gradients, generator_slots, replicate, set_generators
from tinygrad_ed.tensor import Tensor, is_grad_enabled, no_grad


def _shared_arrays(like):
    """Arrays shaped and typed as `like`, in one anonymous shared memory mapping (kept across fork)."""
    sizes = [array.nbytes for array in like]
    offsets = np.cumsum([0] + [-(-size // 64) * 64 for size in sizes])  # 64-byte aligned, one per cache line
    buffer = mmap.mmap(-1, max(int(offsets[-1]), 1))
    return [np.frombuffer(buffer, dtype=array.dtype, count=array.size, offset=int(offset)).reshape(array.shape)
            for array, offset in zip(like, offsets)]


def _serve(connection, model, gradients):
    """A worker's loop: forward and backward on the shards the main process sends, until told to stop."""
    # Ctrl-C in a terminal reaches the whole process group: the main process handles it and stops its workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parameters, slots, loss = model.parameters(), generator_slots(model), None
    while True:
        command, payload = connection.recv()
        try:
            if command == "forward":
                inputs, targets, training, grad_enabled, seed = payload
                model.train(training)
                if seed is not None:
                    set_generators(slots, np.random.default_rng(seed))
                targets = Tensor(targets) if targets is not None else None
                if grad_enabled:
                    outputs, loss = model(Tensor(inputs), targets)
                else:
                    with no_grad():
                        outputs, loss = model(Tensor(inputs), targets)
                connection.send(("ok", (outputs.data, None if loss is None else loss.data)))
            elif command == "backward":
                loss.backward(payload)
                loss = None
                for parameter, gradient in zip(parameters, gradients):
                    if parameter.grad is None:
                        gradient.fill(0)
                    else:
                        gradient[...] = parameter.grad
                    parameter.grad = None
                connection.send(("ok", None))
            elif command == "stop":
                return
        except Exception:  # report it to the main process, which raises it there, and keep serving
            loss = None
            drop_gradients(parameters)
            connection.send(("error", traceback.format_exc()))


def _stop(processes, connections):
    for connection in connections:
        try:
            connection.send(("stop", None))
        except (BrokenPipeError, OSError):
            pass
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()


class ProcessDataParallel(ParallelWrapper):
    """DataParallel with worker processes (see the module docstring); the same interface and the same results.
    Wraps a model on the cpu whose forward(inputs, targets) returns (output, mean loss). Create it after the
    optimizer and before training; its workers stop when it is garbage collected or the program exits."""

    def __init__(self, model, workers=None):
        if model.parameters()[0].device != "cpu":
            raise ValueError("ProcessDataParallel runs on the cpu; on cuda one GPU is one worker")
        super().__init__(model, workers)
        parameters = self._parameters
        for parameter, shared in zip(parameters, _shared_arrays([p.data for p in parameters])):
            shared[...] = parameter.data
            parameter.data = shared              # the optimizer now updates the shared weights, in place
        self.replica = replicate(model)           # the main process's shard, with its own gradients
        self.replica_parameters = self.replica.parameters()
        self._replica_generator_slots = generator_slots(self.replica)
        set_blas_threads(1)   # each process is a core already (the workers inherit this)
        keep_freed_memory()
        self.worker_gradients, self.connections, self._processes = [], [], []
        context = multiprocessing.get_context("fork")
        for _ in range(self.workers - 1):
            gradients = _shared_arrays([p.data for p in parameters])
            ours, theirs = context.Pipe()
            process = context.Process(target=_serve, args=(theirs, model, gradients), daemon=True)
            process.start()
            theirs.close()
            self.worker_gradients.append(gradients)
            self.connections.append(ours)
            self._processes.append(process)
        self._owed = [0] * len(self.connections)   # replies each worker still owes
        self.calls = 0                              # forwards so far: a loss knows which one made it
        self._finalizer = weakref.finalize(self, _stop, self._processes, self.connections)

    def close(self):
        """Stop the worker processes now."""
        self._finalizer()

    def forward(self, inputs, targets=None):
        self._discard_owed()  # a forward that failed in this process left its workers' results unread
        self.calls += 1
        shards = self._shards(inputs)
        count = len(shards)
        seeds = self._dropout_seeds(count)
        for shard in range(1, count):  # the workers start first, then this process computes shard 0
            low, high = shards[shard]
            self.send(shard - 1, "forward", (
                inputs.numpy()[low:high], None if targets is None else targets.numpy()[low:high],
                self.training, is_grad_enabled(), seeds[shard]))
        if seeds[0] is not None:
            set_generators(self._replica_generator_slots, np.random.default_rng(seeds[0]))
        low, high = shards[0]
        output, main_loss = self.replica(inputs[low:high], targets[low:high] if targets is not None else None)
        self._worker_results = [self.receive(shard) for shard in range(count - 1)]
        outputs = cat([output.detach()] + [Tensor(out) for out, _ in self._worker_results], axis=0)
        if targets is None:
            return outputs, None
        losses = [main_loss.data] + [loss for _, loss in self._worker_results]
        return outputs, self._batch_loss(shards, losses, inputs.device,
                                         partial(self._backward_shards, main_loss, self.calls))

    def _backward_shards(self, main_loss, call, weights, grad):
        """Every shard's backward at once (the workers' in their processes, the first here), then each parameter's
        shard gradients summed."""
        workers = len(weights) - 1
        if call != self.calls:
            raise RuntimeError("backward() through a ProcessDataParallel loss after a later forward: each worker "
                               "keeps the graph of the latest forward only; call backward() before the next one")
        try:
            for shard in range(workers):
                self.send(shard, "backward", np.asarray(grad * weights[shard + 1]))
            main_loss.backward(grad * weights[0])
            for shard in range(workers):
                self.receive(shard)
        except BaseException:
            drop_gradients(self.replica_parameters)
            raise
        grads = []
        for index, replica_parameter in enumerate(self.replica_parameters):
            total, replica_parameter.grad = replica_parameter.grad, None  # the replica's own array: ours to add into
            for shard in range(workers):
                worker_grad = self.worker_gradients[shard][index]
                if total is None:
                    total = worker_grad.copy()
                else:
                    total += worker_grad
            grads.append(total)
        return grads

    # every command gets one reply; counting them keeps each reply matched with its command, even when this
    # process raises before reading one
    def send(self, shard, command, payload):
        self.connections[shard].send((command, payload))
        self._owed[shard] += 1

    def receive(self, shard):
        """Worker `shard`'s reply to its oldest unanswered command; a worker's exception is raised here."""
        status, payload = self.connections[shard].recv()
        self._owed[shard] -= 1
        if status == "error":
            raise RuntimeError(f"a data-parallel worker process failed:\n{payload}")
        return payload

    def _discard_owed(self):
        for shard, owed in enumerate(self._owed):
            for _ in range(owed):
                self.connections[shard].recv()
            self._owed[shard] = 0
