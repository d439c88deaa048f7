"""The Optimizer base class: parameter groups, zero_grad, step, checkpoints, and a teaching hook (step 5).

An optimizer owns a list of parameter groups, as in PyTorch:
  param_groups = [{"params": [Tensor, ...], "lr": ..., "weight_decay": ..., ...}, ...]
Every group carries its own hyperparameters (nanoGPT uses two groups: one with weight decay, one without).
`step()` walks every parameter that received a gradient and hands it to the subclass's `update_param`, which
changes `param.data` in place on raw arrays (numpy on the CPU, cupy on the GPU: `xp = param.xp`).

Per-parameter state (Adam's moments, SGD's momentum buffer) lives in `optimizer.state[param]`, a dict.
"""
import numpy as np

from tinygrad_ed.device import to_device
from tinygrad_ed.fast import parameter_update
from tinygrad_ed.tensor import Tensor


class Optimizer:
    """Base class: subclasses set `state_numbers`/`state_arrays` and write `update_param(param, group, state)`."""

    state_numbers = ()  # names of per-parameter state entries that are Python numbers (e.g. Adam's "step")
    state_arrays = ()   # names of per-parameter state entries that are arrays shaped like the parameter

    def __init__(self, params, defaults):
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Tensors or of group dicts, got a single Tensor; "
                            "wrap it in a list: [param]")
        groups = list(params)
        if not groups:
            raise ValueError("the optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}      # param -> {"step": ..., "m": ..., ...}; a param enters at its first update
        self._watches = {}   # param -> [(key, index), ...]: entries followed by watch()
        self._records = {}   # key -> what the last update of that entry computed
        self._next_key = 0
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        """Add a group: its own hyperparameters, and the defaults for the ones it leaves out."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"a parameter group is a dict with a 'params' list, got {type(group).__name__}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for param in params:
            if not isinstance(param, Tensor):
                raise TypeError(f"the optimizer updates Tensors, got a {type(param).__name__}")
        seen = {id(param) for existing in self.param_groups for param in existing["params"]}
        for param in params:
            if id(param) in seen:
                # NOTE: a tied weight (wte = lm_head) listed twice would be updated twice per step
                raise ValueError(f"a parameter of shape {param.shape} appears twice in the optimizer's groups; "
                                 f"list each (possibly tied) parameter once")
            seen.add(id(param))
        group = {**self.defaults, **group, "params": params}
        self.check_hyperparameters(group)
        self.param_groups.append(group)

    def check_hyperparameters(self, group):
        """Raise ValueError for a hyperparameter out of range; subclasses check their own."""

    # ---- the training-loop calls ----

    def zero_grad(self, set_to_none=True):
        """Forget the gradients of the last step (step 5's last line), so the next backward() starts afresh.

        set_to_none=True drops the arrays (backward() then allocates new ones: less memory between steps);
        False keeps them and fills them with zeros.
        """
        for param in self._params():
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad.fill(0)

    def step(self):
        """Update every parameter that has a gradient; a parameter whose grad is None is left alone."""
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:  # no gradient flowed to it: frozen, or unused by this loss
                    continue
                if param.grad.shape != param.shape:
                    raise ValueError(f"a parameter of shape {param.shape} has a gradient of shape "
                                     f"{param.grad.shape}")
                # a fused kernel where tinygrad_ed/fast has one for this optimizer and parameter (cuda), else our own
                update_param = parameter_update(self, param) or self.update_param
                update_param(param, group, self.state.setdefault(param, {}))

    def update_param(self, param, group, state):
        """Change `param.data` in place using `param.grad`, the group's hyperparameters and `state`."""
        raise NotImplementedError(f"{type(self).__name__}.update_param")

    def _params(self):
        return [param for group in self.param_groups for param in group["params"]]

    # ---- checkpoints: plain numbers, strings, lists, dicts and numpy arrays (savable with np.savez) ----

    def state_dict(self):
        """{"param_groups": [{hyperparameters..., "params": [indices]}], "state": {index: {name: value}}}.

        Parameters are named by their position across all groups, in order; arrays are copied to the host.
        """
        params = self._params()
        position = {id(param): i for i, param in enumerate(params)}
        groups = [{**{key: _plain(value) for key, value in group.items() if key != "params"},
                   "params": [position[id(param)] for param in group["params"]]}
                  for group in self.param_groups]
        state = {}
        for i, param in enumerate(params):
            if self.state.get(param):
                state[i] = {name: (np.array(to_device(value, "cpu"), copy=True) if name in self.state_arrays
                                   else _plain(value)) for name, value in self.state[param].items()}
        return {"param_groups": groups, "state": state}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and state saved by state_dict(), onto each parameter's device.

        Everything is checked before anything changes: a mismatch raises ValueError and leaves this optimizer
        as it was.
        """
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"the state dict has {len(saved_groups)} parameter groups, this optimizer has "
                             f"{len(self.param_groups)}")
        for g, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"parameter group {g} has {len(saved['params'])} parameters in the state dict "
                                 f"and {len(group['params'])} in this optimizer")
        params = self._params()
        new_groups = []
        for g, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            missing = [key for key in self.defaults if key not in saved]
            if missing:
                raise ValueError(f"parameter group {g} of the state dict lacks {missing}")
            new_group = {key: self._hyperparameter(key, value) for key, value in saved.items() if key != "params"}
            new_group["params"] = group["params"]
            self.check_hyperparameters(new_group)
            new_groups.append(new_group)
        new_state = {}
        for index, saved in saved_state.items():
            index = int(index)  # npz round trips may turn keys into strings
            if not 0 <= index < len(params):
                raise ValueError(f"the state dict has state for parameter {index}, this optimizer has "
                                 f"{len(params)} parameters")
            new_state[params[index]] = self._load_param_state(index, params[index], saved)
        self.param_groups = new_groups
        self.state = new_state

    def _hyperparameter(self, key, value):
        value = _python(value)
        return tuple(value) if isinstance(self.defaults.get(key), tuple) else value

    def _load_param_state(self, index, param, saved):
        expected = set(self.state_numbers) | set(self.state_arrays)
        if set(saved) != expected:
            raise ValueError(f"state for parameter {index} has entries {sorted(saved)}, expected {sorted(expected)}")
        state = {}
        for name, value in saved.items():
            if name in self.state_numbers:
                state[name] = _python(value)
                continue
            if tuple(np.shape(value)) != param.shape:
                raise ValueError(f"state '{name}' of parameter {index} has shape {tuple(np.shape(value))}, "
                                 f"the parameter has shape {param.shape}")
            host = np.array(to_device(value, "cpu"), dtype=param.dtype)  # a copy, in the parameter's dtype
            state[name] = to_device(host, param.device)
        return state

    # ---- a teaching hook: follow one number through the update ----

    def watch(self, param, index=()):
        """Follow entry `index` of `param` through every step(); returns a key for last_update(key).

        The update records, for watched entries only, the values its own arrays held at each stage.
        """
        if not any(param is p for p in self._params()):
            raise ValueError(f"watch(): the parameter of shape {param.shape} is not in this optimizer")
        index = _entry(index, param.shape)
        key, self._next_key = self._next_key, self._next_key + 1
        self._watches.setdefault(param, []).append((key, index))
        return key

    def last_update(self, key):
        """What the last update of a watched entry computed, as Python numbers."""
        if key not in self._records:
            raise KeyError(f"watched entry {key} has not been updated yet: call step() after backward()")
        return {name: _python(to_device(value, "cpu")) for name, value in self._records[key].items()}

    def _recorder(self, param):
        """record(name=value, ...) for update_param: keeps value[index] (arrays) or value (numbers) per watch."""
        watches = self._watches.get(param)
        if not watches:
            return lambda **values: None
        for key, _ in watches:
            self._records[key] = {}

        def record(**values):
            for key, index in watches:
                for name, value in values.items():
                    # arrays: a copy of the one watched element, still on the device (no host sync mid-step)
                    self._records[key][name] = param.xp.array(value[index], copy=True) \
                        if hasattr(value, "shape") else value
        return record


def _entry(index, shape):
    """`index` as a tuple of non-negative ints naming one entry of an array of `shape`."""
    index = (index,) if isinstance(index, (int, np.integer)) else tuple(index)
    if len(index) != len(shape) or any(not -n <= i < n for i, n in zip(index, shape)):
        raise ValueError(f"index {index} does not name one entry of a parameter of shape {shape}")
    return tuple(int(i) % n for i, n in zip(index, shape))


def _plain(value):
    """A hyperparameter or state number as a savable plain value (tuples become lists)."""
    value = _python(value)
    return list(value) if isinstance(value, tuple) else value


def _python(value):
    """numpy scalars and 0-d arrays (as np.load returns them) as Python numbers; lists element by element."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, (list, tuple)):
        return type(value)(_python(v) for v in value)
    return value
