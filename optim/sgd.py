"""SGD: the simplest update, w ← w − lr·gradient, the chapter's baseline in step 5 and FAQ Q3."""
from optim.optimizer import Optimizer


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum and (L2) weight decay, with PyTorch's semantics.

    input: γ (lr), μ (momentum), λ (weight_decay), θ_0 (params), f(θ) (the loss)
    for t = 1, 2, ...:
        g_t ← ∇_θ f_t(θ_{t-1})
        if λ ≠ 0:  g_t ← g_t + λθ_{t-1}         L2 penalty: unlike AdamW's, it goes through the momentum
        if μ ≠ 0:
            b_t ← g_t                  if t = 1
            b_t ← μ b_{t-1} + g_t      otherwise
            g_t ← b_t
        θ_t ← θ_{t-1} − γ g_t
    return θ_t

    State per parameter, in `optimizer.state[param]`: "momentum_buffer" (b), only when momentum ≠ 0.
    """

    state_arrays = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    def check_hyperparameters(self, group):
        if group["lr"] < 0 or group["momentum"] < 0 or group["weight_decay"] < 0:
            raise ValueError(f"SGD needs lr, momentum and weight_decay >= 0, got lr={group['lr']}, "
                             f"momentum={group['momentum']}, weight_decay={group['weight_decay']}")

    def update_param(self, param, group, state):
        # step 5 with the chapter's "standard SGD": w = w − learning_rate × gradient
        xp, w, g = param.xp, param.data, param.grad
        lr, momentum, wd = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
        record = self._recorder(param)
        record(lr=lr, old=w, grad=g)

        direction = g
        if wd != 0.0:  # g ← g + λθ (a new array: param.grad itself is left as backward() made it)
            direction = xp.multiply(w, wd, out=xp.empty_like(w))  # out=: a 0-d result stays an array
            direction += g
        if momentum != 0.0:  # b ← μ·b + g
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = xp.array(direction, copy=True)
            else:
                state["momentum_buffer"] *= momentum
                state["momentum_buffer"] += direction
            direction = state["momentum_buffer"]
            record(momentum_buffer=direction)

        update = xp.multiply(direction, lr, out=xp.empty_like(w))  # γ·g
        record(update=update)
        w -= update
        record(new=w)
