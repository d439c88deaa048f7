"""The fused ops a GPT is made of. Each is one Function with a closed-form backward, rather than a chain of
primitives, because that is both clearer to read next to the math and several times faster (fewer passes over memory).

Legend: N = rows (batch × time), C = channels, V = vocabulary, B = batch, H = heads, T = time, D = head size.
"""
import math

from tinygrad_ed.cuda_kernels import fused
from tinygrad_ed.tensor import Function


class Linear(Function):
    """y = x Wᵀ + b with W of shape (out, in), as torch.nn.Linear and nanoGPT's checkpoints store it.
    One GEMM forward and two backward, on x flattened to (N, in) rows:
      ∂loss/∂x = g W      (N, out) @ (out, in)
      ∂loss/∂W = gᵀ x     (out, N) @ (N, in)
      ∂loss/∂b = Σ_rows g
    """

    def forward(self, x, weight, bias=None):
        if x.shape[-1] != weight.shape[1]:
            raise ValueError(f"linear: input shape {x.shape} does not fit weight shape {weight.shape} "
                             f"(needs x[..., {weight.shape[1]}])")
        self.x, self.weight = x, weight
        rows = x.reshape(-1, x.shape[-1])                                    # (N, in): one 2-D GEMM, BLAS's fast path
        out = self.xp.matmul(rows, weight.T)                                 # (N, out)
        if bias is not None:
            out += bias
        return out.reshape(*x.shape[:-1], weight.shape[0])

    def backward(self, grad):
        xp, x, weight = self.xp, self.x, self.weight
        rows = grad.reshape(-1, grad.shape[-1])                              # (N, out)
        grad_x = xp.matmul(rows, weight).reshape(x.shape) if self.needs_grad(0) else None
        grad_weight = xp.matmul(rows.T, x.reshape(-1, x.shape[-1])) if self.needs_grad(1) else None
        grad_bias = _column_sum(xp, rows) if len(self.inputs) > 2 and self.needs_grad(2) else None
        return (grad_x, grad_weight, grad_bias)[:len(self.inputs)]


class CrossEntropy(Function):
    """Mean over positions of -log softmax(logits)[target] (the chapter's loss = -log P(correct answer)).

    Fused with the softmax: the gradient of the mean loss with respect to the logits is simply
      ∂loss/∂logits = (softmax(logits) - one_hot(target)) / count
    """

    def forward(self, logits, targets, ignore_index=None):
        xp = self.xp
        vocab = logits.shape[-1]
        logits = logits.reshape(-1, vocab)                                   # (N, V)
        targets = targets.reshape(-1)                                        # (N,)
        self.kernels = fused(xp, logits.dtype)
        if self.kernels:  # cuda, float32: softmax and -log p(target), one kernel with one block per row
            self.probs, losses = self.kernels.cross_entropy_forward(logits, targets, ignore_index)
            self.targets, self.ignore_index = targets, ignore_index
            self.count = max(len(targets), 1) if ignore_index is None else \
                xp.maximum((targets != ignore_index).sum(), 1)                # a device array: no host sync
            return (losses.sum() / self.count).astype(logits.dtype)
        valid = targets != ignore_index if ignore_index is not None else None
        safe_targets = xp.where(valid, targets, 0) if valid is not None else targets
        shifted = logits - _row_max(xp, logits)                              # stable: the largest logit is 0
        exp = xp.exp(shifted)
        sum_exp = _row_sum(xp, exp)
        rows = xp.arange(len(targets))
        losses = xp.log(sum_exp[:, 0]) - shifted[rows, safe_targets]         # -log p(target), per position
        self.count = int(valid.sum()) if valid is not None else len(targets)
        if valid is not None:
            losses = losses * valid
        self.probs, self.rows, self.targets, self.valid = exp / sum_exp, rows, safe_targets, valid
        self.input_shape = (len(targets), vocab)
        return (losses.sum() / max(self.count, 1)).astype(logits.dtype)

    def backward(self, grad):
        if self.kernels:  # cuda, float32: (softmax - one-hot)·grad/count, 0 on ignored rows, in one kernel
            grad_logits = self.kernels.cross_entropy_backward(self.probs, self.targets, self.ignore_index,
                                                              grad / self.count)
            return grad_logits.reshape(self.inputs[0].shape)
        grad_logits = self.probs                                             # softmax ...
        grad_logits[self.rows, self.targets] -= 1                            # ... minus the one-hot target
        if self.valid is not None:
            grad_logits *= self.valid[:, None]                               # ignored positions give nothing
        grad_logits *= grad / max(self.count, 1)                             # mean over positions, chain rule
        return grad_logits.reshape(self.inputs[0].shape)


# Reductions over a short last axis (a row of 64 attention scores, 65 logits, 128 channels) are slow in numpy: it
# pays a fixed cost per row. The same sums as one matrix-vector product run in BLAS several times faster.
def _row_sum(xp, x, weight=1.0):
    """weight · Σ over the last axis, kept as an axis of size 1: x @ (weight, weight, ...)."""
    return xp.matmul(x, xp.full(x.shape[-1], weight, dtype=x.dtype))[..., None]


def _row_mean(xp, x):
    return _row_sum(xp, x, 1 / x.shape[-1])


def _row_max(xp, x):
    """Max over the last axis, kept as an axis of size 1. Where the largest entry is, then its value: numpy's
    argmax over a short axis is twice as fast as its max."""
    return xp.take_along_axis(x, x.argmax(axis=-1)[..., None], axis=-1)


def _column_sum(xp, x):
    """Sum over every axis but the last, again through BLAS: ones(N) @ x."""
    rows = x.reshape(-1, x.shape[-1])
    return xp.matmul(xp.ones(rows.shape[0], dtype=x.dtype), rows)


class LayerNorm(Function):
    """y = (x - mean) / √(var + eps) · weight + bias over the last axis (nanoGPT: eps 1e-5, optional bias)."""

    def forward(self, x, weight=None, bias=None, eps=1e-5):
        xp = self.xp
        self.weight = weight
        self.kernels = fused(xp, x.dtype, *(p.dtype for p in (weight, bias) if p is not None))
        if self.kernels:  # cuda, float32: one kernel, one block per row; it also writes x̂ and rstd for backward
            out, self.normalized, self.rstd = self.kernels.layer_norm_forward(x, weight, bias, eps)
            return out
        mean = _row_mean(xp, x)                                             # (N, 1)
        centered = x - mean
        variance = _row_mean(xp, centered * centered)                        # biased, as LayerNorm defines it
        self.rstd = 1 / xp.sqrt(variance + x.dtype.type(eps))               # saved for the backward pass
        self.normalized = centered * self.rstd                               # x̂
        out = self.normalized * weight if weight is not None else self.normalized.copy()
        if bias is not None:
            out += bias
        return out

    def backward(self, grad):
        xp, x_hat = self.xp, self.normalized
        grad_weight = _column_sum(xp, grad * x_hat) if self.weight is not None and self.needs_grad(1) else None
        grad_bias = _column_sum(xp, grad) if len(self.inputs) > 2 and self.needs_grad(2) else None
        if self.kernels:  # cuda, float32: the three terms below in one kernel, one block per row
            return (self.kernels.layer_norm_backward(grad, x_hat, self.weight, self.rstd), grad_weight,
                    grad_bias)[:len(self.inputs)]
        grad_x_hat = grad * self.weight if self.weight is not None else grad
        # dx = rstd · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂))
        #      term 1: direct path; term 2: through the mean; term 3: through the variance
        grad_x = (grad_x_hat - _row_mean(xp, grad_x_hat) - x_hat * _row_mean(xp, grad_x_hat * x_hat)) * self.rstd
        return (grad_x, grad_weight, grad_bias)[:len(self.inputs)]


class Embedding(Function):
    """out[..., :] = weight[idx[...], :] — a table lookup, one row per token id."""

    def forward(self, weight, idx):
        self.idx, self.weight_shape = idx, weight.shape
        return weight[idx]

    def backward(self, grad):
        # each row of the table gets the sum of the gradients of every position that looked it up
        xp = self.xp
        vocab, channels = self.weight_shape
        idx, grad = self.idx.reshape(-1), grad.reshape(-1, channels)
        if idx.size * vocab <= 1 << 24:
            # small vocabulary: a one-hot matrix product is a single fast GEMM
            one_hot = (idx[None, :] == xp.arange(vocab)[:, None]).astype(grad.dtype)   # (V, N)
            return one_hot @ grad
        grad_weight = xp.zeros(self.weight_shape, dtype=grad.dtype)
        xp.add.at(grad_weight, idx, grad)  # repeated ids accumulate
        return grad_weight


class Dropout(Function):
    """Zero each element with probability p and scale the rest by 1/(1-p), so the expected value is unchanged."""

    def forward(self, x, p, generator):
        xp = self.xp
        keep = xp.asarray(generator.random(x.shape, dtype="float32") >= p)
        self.scaled_mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - p))
        return x * self.scaled_mask

    def backward(self, grad):  # the same mask and scale: dropped elements get no gradient
        return grad * self.scaled_mask


_causal_masks = {}


def causal_mask(xp, length, dtype):
    """(T, T) additive mask, 0 on and below the diagonal and -inf above: position t may not look at t' > t.
    Built once per (array module, length, dtype) and reused by every layer and iteration."""
    key = (xp.__name__, length, str(dtype))
    if key not in _causal_masks:
        above_diagonal = xp.triu(xp.ones((length, length), dtype=bool), k=1)
        _causal_masks[key] = xp.where(above_diagonal, -xp.inf, 0).astype(dtype)
    return _causal_masks[key]


class Attention(Function):
    """Causal scaled dot-product attention, fused:
        S = q kᵀ / √D + mask       (B, H, T, T) scores
        P = softmax(S)             attention weights, row t spread over positions ≤ t
        P' = dropout(P)            (training only)
        out = P' v                 (B, H, T, D)
    """

    def forward(self, q, k, v, causal=True, dropout_p=0.0, generator=None):
        xp = self.xp
        self.scale = q.dtype.type(1 / math.sqrt(q.shape[-1]))
        scores = xp.matmul(q, xp.swapaxes(k, -1, -2))                      # (B, H, T, T)
        self.kernels = fused(xp, scores.dtype)
        if self.kernels:  # cuda, float32: scale, causal mask and softmax in one kernel, in place, one block per row
            probs = self.kernels.attention_softmax_forward(scores, self.scale, causal)
        else:
            scores *= self.scale
            if causal:
                scores += causal_mask(xp, q.shape[-2], scores.dtype)
            scores -= _row_max(xp, scores)                                  # stable softmax
            probs = xp.exp(scores, out=scores)
            probs /= _row_sum(xp, probs)
        self.q, self.k, self.v, self.probs = q, k, v, probs
        self.dropout_mask = None
        if dropout_p > 0:
            keep = xp.asarray(generator.random(probs.shape, dtype="float32") >= dropout_p)
            self.dropout_mask = keep.astype(probs.dtype) * probs.dtype.type(1 / (1 - dropout_p))
            probs = probs * self.dropout_mask
        self.dropped_probs = probs
        return xp.matmul(probs, v)

    def backward(self, grad):                                               # grad: (B, H, T, D)
        xp = self.xp
        grad_v = xp.matmul(xp.swapaxes(self.dropped_probs, -1, -2), grad)  # P'ᵀ g
        grad_probs = xp.matmul(grad, xp.swapaxes(self.v, -1, -2))           # g vᵀ
        if self.dropout_mask is not None:
            grad_probs *= self.dropout_mask
        # softmax backward, row by row: dS = P ⊙ (dP - Σ_j dP⊙P); masked entries have P = 0 so get 0
        if self.kernels:  # cuda, float32: this and the scale below in one kernel, in place
            grad_scores = self.kernels.attention_softmax_backward(grad_probs, self.probs, self.scale)
        else:
            grad_scores = grad_probs
            grad_scores -= _row_sum(xp, grad_probs * self.probs)
            grad_scores *= self.probs
            grad_scores *= self.scale                                       # through S = q kᵀ · scale
        grad_q = xp.matmul(grad_scores, self.k)                             # dS k
        grad_k = xp.matmul(xp.swapaxes(grad_scores, -1, -2), self.q)       # dSᵀ q
        return grad_q, grad_k, grad_v
