"""Loss scaling for float16 training: the chapter's `scaler` (steps 3-5).

float16 cannot hold gradients below about 6e-8: they flush to zero. Multiplying the loss by a large scale S
multiplies every gradient by S too (backward is linear), lifting them into range. Before the optimizer uses
them they are divided by S again. If S was too large some gradient overflowed to inf: that step is skipped and
S halved; after many good steps S is doubled again, so it hovers just below the overflow point.
"""
import math

from tinygrad_ed import fast


class GradScaler:
    """Dynamic loss scaling, as torch.cuda.amp.GradScaler, on raw numpy or cupy gradients.

    per iteration:
        loss ← S · loss                                 scale(loss), before backward()
        g ← g / S; found_inf ← any(g is inf or NaN)     unscale_(optimizer), once, before clipping
        if not found_inf: optimizer.step()              step(optimizer)
        if found_inf: S ← S · backoff_factor; good ← 0  update()
        else: good ← good + 1; if good = growth_interval: S ← S · growth_factor; good ← 0
    With enabled=False every method passes through: scale returns the loss, step just steps.
    """

    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,
                 enabled=True):
        if not init_scale > 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale}")
        if not growth_factor > 1:
            raise ValueError(f"growth_factor must be > 1, got {growth_factor}")
        if not 0 < backoff_factor < 1:
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor}")
        if int(growth_interval) != growth_interval or growth_interval < 1:
            raise ValueError(f"growth_interval must be a positive integer, got {growth_interval}")
        self.enabled = enabled
        self._scale = float(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._growth_tracker = 0  # good steps in a row since the scale last changed
        self._per_optimizer = {}  # id(optimizer) -> {"all_finite": flag on the device or None, "stepped": bool}

    def get_scale(self):
        """The current scale S (1.0 when disabled)."""
        return self._scale if self.enabled else 1.0

    def scale(self, loss):
        """S · loss, a Tensor of loss's dtype (S is exact in float32: a power of two).

        NOTE: keep the loss float32, as autocast does: S = 2**16 is above float16's largest value, 65504.
        """
        return loss * self._scale if self.enabled else loss

    def unscale_(self, optimizer):
        """Divide every gradient of `optimizer` by S in place and note whether any is inf or NaN.

        Call it once per iteration, before clip_grad_norm_ (step 4) so clipping sees the true gradients;
        step() calls it when you have not.
        """
        if not self.enabled:
            return
        if id(optimizer) in self._per_optimizer:
            raise RuntimeError("unscale_() was already called on this optimizer since the last update(): "
                               "dividing by the scale twice would shrink the gradients by S twice")
        inverse = 1.0 / self._scale  # a Python float: multiplying keeps each gradient's dtype
        parameters = [param for group in optimizer.param_groups for param in group["params"] if param.grad is not None]
        # cuda: the loop below as one pass over one flat buffer of every gradient, the inf check folded in
        all_finite = fast.unscale_gradients(parameters, inverse)
        if all_finite is None:
            for param in parameters:
                param.grad *= inverse
                finite = param.xp.isfinite(param.grad).all()  # a 0-d flag on the device: no host sync yet
                all_finite = finite if all_finite is None else all_finite & finite
        self._per_optimizer[id(optimizer)] = {"all_finite": all_finite, "stepped": False}

    def step(self, optimizer):
        """optimizer.step() unless an unscaled gradient is inf or NaN; returns whether it stepped."""
        if not self.enabled:
            optimizer.step()
            return True
        if id(optimizer) not in self._per_optimizer:
            self.unscale_(optimizer)
        record = self._per_optimizer[id(optimizer)]
        if record["stepped"]:
            raise RuntimeError("step() was already called on this optimizer since the last update()")
        record["stepped"] = True
        if self._found_inf(record):
            return False  # skip: the update would write inf/NaN into the weights
        optimizer.step()
        return True

    def update(self):
        """Adjust S after the iteration: back off after an overflow, grow after growth_interval good steps."""
        if not self.enabled:
            return
        if not self._per_optimizer:
            raise RuntimeError("update() found no unscale_() or step() since the last update(): "
                               "call scaler.step(optimizer) first")
        found_inf = any(self._found_inf(record) for record in self._per_optimizer.values())
        self._per_optimizer = {}
        if found_inf:
            self._scale *= self._backoff_factor
            self._growth_tracker = 0
            return
        self._growth_tracker += 1
        if self._growth_tracker == self._growth_interval:
            grown = self._scale * self._growth_factor
            if math.isfinite(grown):  # a Python float could in principle overflow after ~1000 doublings
                self._scale = grown
            self._growth_tracker = 0

    @staticmethod
    def _found_inf(record):
        """Whether an unscaled gradient was inf or NaN: read from the device once (the one host sync of a step, which
        step() needs to decide) and kept in the record for update()."""
        if "found_inf" not in record:
            all_finite = record["all_finite"]
            record["found_inf"] = all_finite is not None and not bool(all_finite)
        return record["found_inf"]

    # ---- checkpoints: plain numbers, as Optimizer.state_dict ----

    def state_dict(self):
        """{"scale", "growth_factor", "backoff_factor", "growth_interval", "growth_tracker"}; {} when disabled."""
        if not self.enabled:
            return {}
        return {"scale": self._scale, "growth_factor": self._growth_factor, "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval, "growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict):
        if not self.enabled:
            return
        if not state_dict:
            raise ValueError("the scaler state dict is empty: it was saved from a disabled GradScaler")
        expected = ("scale", "growth_factor", "backoff_factor", "growth_interval", "growth_tracker")
        missing = [key for key in expected if key not in state_dict]
        if missing:
            raise ValueError(f"the scaler state dict lacks {missing}")
        self._scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["growth_tracker"])
