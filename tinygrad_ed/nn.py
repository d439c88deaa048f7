"""Modules: objects that own parameters, shaped like torch.nn so a learner can move between the two.

A Module finds its parameters by walking its attributes: Tensors that require grad, sub-Modules and lists of
Modules. The dotted path to each parameter is its name (`transformer.h.0.attn.c_attn.weight`), which is what
`named_parameters()`, `state_dict()` and checkpoints use.
"""
import copy
import itertools

import numpy as np

from tinygrad_ed import functional as F
from tinygrad_ed.device import array_module, to_device
from tinygrad_ed.tensor import Tensor


_hook_keys = itertools.count()


class Module:
    training = True
    _forward_hooks = None  # {key: (hook, with_kwargs)} on a module that register_forward_hook was called on

    def __call__(self, *args, **kwargs):
        output = self.forward(*args, **kwargs)
        if self._forward_hooks:  # only while something listens (graph.py's record_modules)
            for hook, with_kwargs in list(self._forward_hooks.values()):
                result = hook(self, args, kwargs, output) if with_kwargs else hook(self, args, output)
                output = output if result is None else result
        return output

    def register_forward_hook(self, hook, with_kwargs=False):
        """Call hook(module, args, output) after every forward (hook(module, args, kwargs, output) with_kwargs), as
        torch's register_forward_hook: a result other than None replaces the output. Returns a handle whose remove()
        takes the hook off again. How tinygrad_ed/graph.py learns which module made which part of the graph."""
        if not callable(hook):
            raise TypeError(f"register_forward_hook: hook must be callable, got {type(hook).__name__}")
        if self._forward_hooks is None:
            self._forward_hooks = {}
        key = next(_hook_keys)  # unique for the process: a stale handle can never remove a later hook
        self._forward_hooks[key] = (hook, with_kwargs)
        return RemovableHandle(self, key)

    def _children(self):
        """(name, module) for direct sub-modules, including those in lists (numbered as in PyTorch)."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{i}", item

    def named_parameters(self):
        """(name, tensor) for every parameter, each tensor once (a tied weight keeps its first name)."""
        seen = set()
        stack = [("", self)]
        while stack:
            prefix, module = stack.pop()
            for name, value in vars(module).items():
                if isinstance(value, Tensor) and value.requires_grad and id(value) not in seen:
                    seen.add(id(value))
                    yield prefix + name, value
            stack.extend((prefix + name + ".", child) for name, child in reversed(list(module._children())))

    def parameters(self):
        return [parameter for _, parameter in self.named_parameters()]

    def num_parameters(self):
        return sum(parameter.size for parameter in self.parameters())

    def modules(self):
        yield self
        for _, child in self._children():
            yield from child.modules()

    def named_modules(self, prefix=""):
        """(dotted name, module) for this module ("" unless `prefix` is given) and every sub-module, each once."""
        seen, stack = set(), [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            stack.extend((f"{name}.{child_name}" if name else child_name, child)
                         for child_name, child in reversed(list(module._children())))

    def train(self, mode=True):
        """Training mode switches dropout on; eval() switches it off."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for parameter in self.parameters():
            parameter.grad = None

    def state_dict(self):
        """name -> numpy array copy of every parameter (host memory, ready for np.savez)."""
        return {name: np.array(parameter.numpy()) for name, parameter in self.named_parameters()}

    def load_state_dict(self, state_dict):
        """Copy arrays into the parameters, strictly: a missing, unexpected or mis-shaped key is an error."""
        parameters = dict(self.named_parameters())
        missing = [name for name in parameters if name not in state_dict]
        unexpected = [name for name in state_dict if name not in parameters]
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name, parameter in parameters.items():  # check every shape before changing anything
            if tuple(state_dict[name].shape) != parameter.shape:
                raise ValueError(f"load_state_dict: {name} has shape {tuple(state_dict[name].shape)} in the state "
                                 f"dict but {parameter.shape} in the model")
        for name, parameter in parameters.items():
            parameter.data[...] = to_device(state_dict[name], parameter.device).astype(parameter.dtype)


class RemovableHandle:
    """What register_forward_hook returns: remove() takes the hook off (again is harmless), as torch's handle."""

    def __init__(self, module, key):
        self.module, self.key = module, key

    def remove(self):
        hooks = self.module._forward_hooks
        if hooks is not None:
            hooks.pop(self.key, None)
            if not hooks:  # the last one: the module is as it was before any hook
                del self.module._forward_hooks


class Wrapper(Module):
    """A module that runs another one, `self.module`, in some other way (split over workers, in float16). The
    parameters are the wrapped module's: they are what trains, and what a state_dict saves and loads."""

    def named_parameters(self):
        return self.module.named_parameters()

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state_dict):
        return self.module.load_state_dict(state_dict)


def copy_module(module, new_parameter):
    """A copy of a module tree in which every parameter is `new_parameter(parameter)`, made once per tensor so that
    tied weights stay tied; everything else (configs, generators, buffers) is shared with the original."""
    copies = {}  # id(original tensor) -> its copy

    def copy_tree(original):
        clone = copy.copy(original)
        for name, value in vars(original).items():
            if isinstance(value, Tensor) and value.requires_grad:
                if id(value) not in copies:
                    copies[id(value)] = new_parameter(value)
                setattr(clone, name, copies[id(value)])
            elif isinstance(value, Module):
                setattr(clone, name, copy_tree(value))
            elif isinstance(value, list) and any(isinstance(item, Module) for item in value):
                setattr(clone, name, [copy_tree(item) for item in value])
        return clone

    return copy_tree(module)


def _normal(generator, shape, std, device, dtype):
    """A parameter drawn from N(0, std²) with a numpy Generator, so the same seed gives the same model on any device."""
    data = (generator.standard_normal(shape) * std).astype(dtype)
    return Tensor(data, device=device, requires_grad=True)


def _constant(value, shape, device, dtype):
    return Tensor(array_module(device).full(shape, value, dtype=dtype), device=device, requires_grad=True)


class Linear(Module):
    """y = x Wᵀ + b; weight (out_features, in_features) drawn from N(0, std²) as nanoGPT initialises it."""

    def __init__(self, in_features, out_features, bias=True, std=0.02, generator=None, device="cpu",
                 dtype=np.float32):
        generator = generator if generator is not None else np.random.default_rng()
        self.weight = _normal(generator, (out_features, in_features), std, device, dtype)
        self.bias = _constant(0.0, (out_features,), device, dtype) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class Embedding(Module):
    """A (num_embeddings, embedding_dim) table; forward looks up rows by integer id."""

    def __init__(self, num_embeddings, embedding_dim, std=0.02, generator=None, device="cpu", dtype=np.float32):
        generator = generator if generator is not None else np.random.default_rng()
        self.weight = _normal(generator, (num_embeddings, embedding_dim), std, device, dtype)

    def forward(self, idx):
        return F.embedding(self.weight, idx)


class LayerNorm(Module):
    """LayerNorm over the last axis with a weight (ones) and an optional bias (zeros), as nanoGPT's."""

    def __init__(self, size, bias=True, eps=1e-5, device="cpu", dtype=np.float32):
        self.weight = _constant(1.0, (size,), device, dtype)
        self.bias = _constant(0.0, (size,), device, dtype) if bias else None
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, self.eps)


class Dropout(Module):
    """Dropout with its own generator: active in train(), the identity in eval()."""

    def __init__(self, p, generator=None):
        self.p, self.generator = p, generator

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training, generator=self.generator)
