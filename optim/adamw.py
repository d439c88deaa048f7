"""AdamW: the optimizer nanoGPT trains with (chapter part 3, step 5).

Adam keeps two running averages per parameter entry, the gradient's mean m and its uncentred variance v, and
moves each entry by about lr against m (downhill), whatever the gradient's scale: steep directions (large v)
take smaller steps, flat ones keep their momentum. AdamW's "W" is decoupled weight decay: the weights shrink
toward zero directly, instead of through the gradient where Adam's normalisation would rescale the decay.
"""
from optim.optimizer import Optimizer


class AdamW(Optimizer):
    r"""AdamW with PyTorch's semantics (Loshchilov & Hutter, "Decoupled Weight Decay Regularization").

    input: γ (lr), β1, β2 (betas), ε (eps), λ (weight_decay), θ_0 (params), f(θ) (the loss)
    m_0 ← 0, v_0 ← 0
    for t = 1, 2, ...:
        g_t ← ∇_θ f_t(θ_{t-1})
        θ_t ← θ_{t-1} − γλθ_{t-1}               decoupled weight decay
        m_t ← β1 m_{t-1} + (1 − β1) g_t         first moment: a running mean of the gradient
        v_t ← β2 v_{t-1} + (1 − β2) g_t²        second moment: a running mean of its square
        m̂_t ← m_t / (1 − β1^t)                  bias correction: m and v start at 0, so early averages
        v̂_t ← v_t / (1 − β2^t)                  are too small by exactly these factors
        θ_t ← θ_t − γ m̂_t / (√v̂_t + ε)
    return θ_t

    State per parameter, in `optimizer.state[param]`: "step" (t), "m" (exp_avg), "v" (exp_avg_sq).
    A parameter whose grad is None is skipped: neither its weights nor its t move.
    """

    state_numbers = ("step",)
    state_arrays = ("m", "v")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def check_hyperparameters(self, group):
        beta1, beta2 = group["betas"]
        if group["lr"] < 0 or group["eps"] < 0 or group["weight_decay"] < 0:
            raise ValueError(f"AdamW needs lr, eps and weight_decay >= 0, got lr={group['lr']}, "
                             f"eps={group['eps']}, weight_decay={group['weight_decay']}")
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"AdamW needs 0 <= beta < 1, got betas=({beta1}, {beta2})")

    def update_param(self, param, group, state):
        # step 5: AdamW. Python floats throughout, so float32 arrays stay float32 (a np.float64 would promote)
        xp, w, g = param.xp, param.data, param.grad
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = (float(beta) for beta in group["betas"])
        m, v, t = self.advance_state(param, state)
        record = self._recorder(param)  # a no-op unless watch() asked for an entry of this parameter
        record(step=t, lr=lr, weight_decay=wd, old=w, grad=g, m_before=m, v_before=v)

        # θ ← θ − γλθ: shrink the weights toward zero, before and apart from the gradient step
        if wd != 0.0:
            w *= 1.0 - lr * wd

        # two parameter-sized buffers for the intermediate quantities, filled in place (out=) from here on
        # NOTE: with out= a 0-d parameter's intermediates stay 0-d arrays (numpy would return bare scalars)
        scratch, m_hat = xp.empty_like(w), xp.empty_like(w)

        # m ← β1·m + (1 − β1)·g
        xp.multiply(g, 1.0 - beta1, out=scratch)
        m *= beta1
        m += scratch
        # v ← β2·v + (1 − β2)·g²
        xp.multiply(g, g, out=scratch)
        scratch *= 1.0 - beta2
        v *= beta2
        v += scratch
        record(m=m, v=v)

        # bias correction: m̂ = m / (1 − β1^t), v̂ = v / (1 − β2^t)
        xp.divide(m, 1.0 - beta1 ** t, out=m_hat)
        v_hat = xp.divide(v, 1.0 - beta2 ** t, out=scratch)
        record(m_hat=m_hat, v_hat=v_hat)

        # θ ← θ − γ·m̂ / (√v̂ + ε), computed in place: v̂'s buffer becomes the denominator, m̂'s the update
        denominator = xp.sqrt(v_hat, out=v_hat)
        denominator += eps
        adam_term = xp.divide(m_hat, denominator, out=m_hat)
        adam_term *= lr
        record(adam_term=adam_term)
        w -= adam_term
        record(new=w)

    @staticmethod
    def advance_state(param, state):
        """(m, v, t) for this step: t counts up from 1; m_0 = v_0 = 0 are made at the first step."""
        if not state:
            state.update(step=0, m=param.xp.zeros_like(param.data), v=param.xp.zeros_like(param.data))
        state["step"] += 1
        return state["m"], state["v"], state["step"]

    def last_update(self, key):
        """The last update of a watched entry: grad, m and v before and after, m_hat, v_hat, the two terms, old and
        new weight.

        weight_decay_term = lr·wd·old and adam_term = lr·m̂/(√v̂ + ε), so new = old − weight_decay_term − adam_term
        (up to rounding in the parameter's dtype).
        """
        update = super().last_update(key)
        update["weight_decay_term"] = update["lr"] * update["weight_decay"] * update["old"]
        order = ("step", "lr", "weight_decay", "grad", "m_before", "v_before", "m", "v", "m_hat", "v_hat",
                 "old", "weight_decay_term", "adam_term", "new")  # the order the chapter explains them in
        return {name: update[name] for name in order}
