"""The layers a GPT is made of, each one Function with a closed-form backward, rather than a chain of primitives,
because that is both clearer to read next to the math and several times faster (fewer passes over memory).

Where tinygrad_ed/nn.py has a Module of the same idea (Linear, Embedding, LayerNorm, Dropout), the Function's name
ends in `Function`, as PyTorch's own guide to extending autograd names its example (`LinearFunction`): the Module owns
parameters, the Function computes. Faster versions of some of these (fused CUDA kernels) live in tinygrad_ed/fast/.

Legend: N = rows (batch × time), C = channels, V = vocabulary, B = batch, H = heads, T = time, D = head size.
"""
import math

from tinygrad_ed.fast.rows import column_sum, row_max, row_mean, row_sum
from tinygrad_ed.tensor import Function


class LinearFunction(Function):
    """y = x Wᵀ + b with W of shape (out, in), as torch.nn.Linear and nanoGPT's checkpoints store it.
    One GEMM forward and two backward, on x flattened to (N, in) rows:
      ∂loss/∂x = g W      (N, out) @ (out, in)
      ∂loss/∂W = gᵀ x     (out, N) @ (N, in)
      ∂loss/∂b = Σ_rows g
    """
    promotion = "common"

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
        grad_bias = column_sum(xp, rows).astype(rows.dtype, copy=False) if len(self.inputs) > 2 and self.needs_grad(2) \
            else None
        return (grad_x, grad_weight, grad_bias)[:len(self.inputs)]


class CrossEntropy(Function):
    """Mean over positions of -log softmax(logits)[target] (the chapter's loss = -log P(correct answer)).

    With label_smoothing ε the target is not one-hot but q = (1 - ε)·one_hot(target) + ε/V, as torch's, and the loss
    is the cross-entropy -Σ_j q_j log softmax_j. Fused with the softmax: the gradient of the mean loss with respect
    to the logits is simply
      ∂loss/∂logits = (softmax(logits) - q) / count
    float16 logits: the softmax's sums and the sum of the losses are float32 (rows.py), the mean comes out float16.
    """

    def forward(self, logits, targets, ignore_index=None, label_smoothing=0.0):
        xp = self.xp
        vocab = logits.shape[-1]
        logits = logits.reshape(-1, vocab)                                   # (N, V)
        targets = targets.reshape(-1)                                        # (N,)
        valid = targets != ignore_index if ignore_index is not None else None
        safe_targets = xp.where(valid, targets, 0) if valid is not None else targets
        shifted = logits - row_max(xp, logits)                              # stable: the largest logit is 0
        exp = xp.exp(shifted)
        sum_exp = row_sum(xp, exp)
        rows = xp.arange(len(targets))
        losses = xp.log(sum_exp[:, 0]) - shifted[rows, safe_targets]         # -log p(target), per position
        if label_smoothing:                                                  # (1 - ε)·that + ε·mean_j(-log p_j)
            mean_log_p = row_sum(xp, shifted, 1 / vocab)[:, 0] - xp.log(sum_exp[:, 0])
            losses = (1 - label_smoothing) * losses - label_smoothing * mean_log_p
        self.count = int(valid.sum()) if valid is not None else len(targets)
        if valid is not None:
            losses = losses * valid
        probs = (exp / sum_exp).astype(logits.dtype, copy=False)
        self.probs, self.rows, self.targets, self.valid = probs, rows, safe_targets, valid
        self.label_smoothing = label_smoothing
        return (losses.sum() / max(self.count, 1)).astype(logits.dtype)

    def backward(self, grad):
        grad_logits = self.probs                                             # softmax ...
        if self.label_smoothing:
            grad_logits -= self.label_smoothing / grad_logits.shape[-1]      # ... minus the smoothed target q
            grad_logits[self.rows, self.targets] -= 1 - self.label_smoothing
        else:
            grad_logits[self.rows, self.targets] -= 1                        # ... minus the one-hot target
        if self.valid is not None:
            grad_logits *= self.valid[:, None]                               # ignored positions give nothing
        grad_logits *= grad / max(self.count, 1)                             # mean over positions, chain rule
        return grad_logits.reshape(self.inputs[0].shape)


class LayerNormFunction(Function):
    """y = (x - mean) / √(var + eps) · weight + bias over the last axis (nanoGPT: eps 1e-5, optional bias).
    float16 x: mean, variance and x̂ are float32 (row_mean accumulates in float32), y and the gradients float16."""
    promotion = "float"

    def forward(self, x, weight=None, bias=None, eps=1e-5):
        xp = self.xp
        self.weight = weight
        mean = row_mean(xp, x)                                             # (N, 1)
        centered = x - mean
        variance = row_mean(xp, centered * centered)                        # biased, as LayerNorm defines it
        self.rstd = 1 / xp.sqrt(variance + variance.dtype.type(eps))        # saved for the backward pass
        self.normalized = centered * self.rstd                               # x̂
        out = self.normalized * weight if weight is not None else self.normalized.copy()
        if bias is not None:
            out += bias
        return out.astype(x.dtype, copy=False)

    def backward(self, grad):
        xp, x_hat = self.xp, self.normalized
        grad_x_hat = grad * self.weight if self.weight is not None else grad
        # dx = rstd · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂))
        #      term 1: direct path; term 2: through the mean; term 3: through the variance
        grad_x = (grad_x_hat - row_mean(xp, grad_x_hat) - x_hat * row_mean(xp, grad_x_hat * x_hat)) * self.rstd
        return (grad_x.astype(grad.dtype, copy=False), *self.parameter_gradients(grad))[:len(self.inputs)]

    def parameter_gradients(self, grad):
        """(∂loss/∂weight, ∂loss/∂bias) = (Σ_rows g·x̂, Σ_rows g), None for one that is absent or needs none."""
        xp, dtype = self.xp, grad.dtype
        grad_weight = column_sum(xp, grad * self.normalized).astype(dtype, copy=False) \
            if self.weight is not None and self.needs_grad(1) else None
        grad_bias = column_sum(xp, grad).astype(dtype, copy=False) if len(self.inputs) > 2 and self.needs_grad(2) \
            else None
        return grad_weight, grad_bias


class EmbeddingFunction(Function):
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


class DropoutFunction(Function):
    """Zero each element with probability p and scale the rest by 1/(1-p), so the expected value is unchanged."""
    promotion = "float"

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
    """Causal scaled dot-product attention, one Function:
        S = q kᵀ / √D + mask       (B, H, T, T) scores
        P = softmax(S)             attention weights, row t spread over positions ≤ t
        P' = dropout(P)            (training only)
        out = P' v                 (B, H, T, D)
    """
    promotion = "float"

    def forward(self, q, k, v, causal=True, dropout_p=0.0, generator=None):
        xp = self.xp
        self.scale = q.dtype.type(1 / math.sqrt(q.shape[-1]))
        scores = xp.matmul(q, xp.swapaxes(k, -1, -2))                      # (B, H, T, T)
        probs = self.softmax(scores, causal)                                # (B, H, T, T)
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
        grad_scores = self.softmax_backward(grad_probs)                     # (B, H, T, T)
        grad_q = xp.matmul(grad_scores, self.k)                             # dS k
        grad_k = xp.matmul(xp.swapaxes(grad_scores, -1, -2), self.q)       # dSᵀ q
        return grad_q, grad_k, grad_v

    def softmax(self, scores, causal):
        """P = softmax(scale · scores + mask) over each row, in place on the scores q kᵀ."""
        xp = self.xp
        scores *= self.scale
        if causal:
            scores += causal_mask(xp, scores.shape[-2], scores.dtype)
        scores -= row_max(xp, scores)                                       # stable: each row's largest is 0
        probs = xp.exp(scores, out=scores)
        probs /= row_sum(xp, probs)
        return probs

    def softmax_backward(self, grad_probs):
        """∂loss/∂scores from ∂loss/∂P, row by row: dS = scale · P ⊙ (dP - Σ_j dP⊙P), in place on dP. Masked entries
        have P = 0, so they get 0."""
        grad_scores = grad_probs
        grad_scores -= row_sum(self.xp, grad_probs * self.probs)
        grad_scores *= self.probs
        grad_scores *= self.scale                                           # through S = q kᵀ · scale
        return grad_scores
