"""Fused CUDA kernels for the ops where a GPT iteration spends its elementwise time on the GPU.

On the GPU every `xp.` call inside an op is one kernel launch and one pass over memory: GELU through erf_fast is
about twenty passes, LayerNorm about ten, a softmax six. Each kernel here computes one op's whole formula in a single
pass, with the same math as the op's plain code (written out in a comment above each kernel):

  GELU forward, backward            ElementwiseKernel: one thread per element (float32, and float16 too)
  AdamW update                      ElementwiseKernel over each parameter: w, m and v updated in place
  unscale, clip                     ElementwiseKernel over one flat buffer of every gradient: one pass each
  cross-entropy backward            ElementwiseKernel over the logits: (softmax - one-hot) * grad / count
  LayerNorm forward, backward       one block per row of C channels
  cross-entropy forward             one block per row of V logits: softmax and -log p(target)
  attention softmax, its backward   one block per row of T scores: scale, causal mask and softmax in place

The ops never call these directly: tinygrad_ed/fast/cuda_ops.py wraps them as Functions that stand in for the plain
ops where the arrays are cupy and float32 (the training dtype), and tinygrad_ed/fast/__init__.py chooses between the
two. float64 (gradient checks, where the plain code's accuracy is the point) takes the plain xp code. float16: GELU
has kernels that load and store float16 and compute in float; LayerNorm and cross-entropy run the float32 kernels
between casts (cuda_ops.py); the attention softmax and AdamW take float32 only.
This module never imports cupy: `kernels_for(cupy)` builds the kernels from the module it is handed, once, and
cupy compiles each one at its first launch.

The row kernels run one block of BLOCK threads per row: thread k handles entries k, k + BLOCK, k + 2*BLOCK, ... of
its row, and block_sum / block_max combine the threads' partial results through shared memory. The kernel sources
are plain ASCII CUDA C; every launch passes C-contiguous float32 arrays and numpy scalars of the exact C type.
"""
from collections import namedtuple

import numpy as np

BLOCK = 256  # threads per block of the row kernels; a power of two, because block_sum halves it down to 1

# ----------------------------------------------------------------------------------------------------------
# elementwise kernels: cupy.ElementwiseKernel(in_params, out_params, operation, name). In the operation, each
# non-raw parameter names this thread's element (outputs by reference, so `w = w * decay` updates w in place), a
# `raw` parameter is the whole array, and `i` is the element's flat index.

Elementwise = namedtuple("Elementwise", "in_params out_params operation name")

# GELU(x) = x·Φ(x), Φ(x) = ½(1 + erf(x/√2)): exact GELU, nanoGPT's approximate="none". erff is CUDA's float erf,
# accurate to 2 ulp (erf_fast on the CPU is good to ~7e-7 absolute).
GELU_FORWARD = Elementwise(
    "float32 x", "float32 y",
    """
    // 0.7071... = 1/sqrt(2)
    y = 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    """,
    "tinygrad_ed_gelu_forward")

# ∂GELU/∂x = Φ(x) + x·φ(x), φ(x) = e^(-x²/2)/√(2π) the normal density. Φ is recomputed from x rather than saved by
# the forward pass: one erff costs less than writing and reading back an array the size of x.
GELU_BACKWARD = Elementwise(
    "float32 x, float32 grad", "float32 grad_x",
    """
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    float pdf = expf(-0.5f * x * x) * 0.39894228040143268f;  // 0.3989... = 1/sqrt(2 pi)
    grad_x = grad * (cdf + x * pdf);
    """,
    "tinygrad_ed_gelu_backward")

# The same two for float16 arrays (the float16 run's compute dtype): each element is loaded as float16, the math is
# the float32 kernel's, in float, and the result is rounded to float16 once as it is stored. cupy's float16 type
# converts to float implicitly, and from float on assignment.
GELU_FORWARD_HALF = Elementwise(
    "float16 x", "float16 y",
    """
    float xf = x;
    y = 0.5f * xf * (1.0f + erff(xf * 0.70710678118654752f));
    """,
    "tinygrad_ed_gelu_forward_half")

GELU_BACKWARD_HALF = Elementwise(
    "float16 x, float16 grad", "float16 grad_x",
    """
    float xf = x;
    float cdf = 0.5f * (1.0f + erff(xf * 0.70710678118654752f));
    float pdf = expf(-0.5f * xf * xf) * 0.39894228040143268f;
    float g = grad;
    grad_x = g * (cdf + xf * pdf);
    """,
    "tinygrad_ed_gelu_backward_half")

# AdamW, optim/adamw.py's update_param in one pass (the host computes the step's constants):
#   θ ← θ·(1 − γλ)                                  decay = 1 − γλ
#   m ← β1·m + (1 − β1)·g
#   v ← β2·v + (1 − β2)·g²
#   m̂ = m / (1 − β1^t),  v̂ = v / (1 − β2^t)         bias_correction1, bias_correction2
#   θ ← θ − γ·m̂ / (√v̂ + ε)
ADAMW = Elementwise(
    "float32 grad, float32 lr, float32 decay, float32 beta1, float32 beta2, float32 one_minus_beta1, "
    "float32 one_minus_beta2, float32 bias_correction1, float32 bias_correction2, float32 eps",
    "float32 w, float32 m, float32 v",
    """
    w = w * decay;
    m = beta1 * m + one_minus_beta1 * grad;
    v = beta2 * v + one_minus_beta2 * (grad * grad);
    float m_hat = m / bias_correction1;
    float v_hat = v / bias_correction2;
    w = w - lr * (m_hat / (sqrtf(v_hat) + eps));
    """,
    "tinygrad_ed_adamw")

# ∂loss/∂logits[n, j] = (softmax[n, j] − [j = target_n]) · scale, scale = ∂loss/∂(mean loss) / count, and 0 for a
# row whose target is ignore_index. `probs` is (N, V) C-contiguous, so element i is in row n = i / V, column i mod V.
CROSS_ENTROPY_BACKWARD = Elementwise(
    "float32 probs, float32 scale, raw int64 targets, int64 vocab, int64 ignore_index", "float32 grad_logits",
    """
    long long n = i / vocab;
    long long j = i - n * vocab;
    long long t = targets[n];
    grad_logits = (t == ignore_index) ? 0.0f : (probs - (j == t ? 1.0f : 0.0f)) * scale;
    """,
    "tinygrad_ed_cross_entropy_backward")

# The loss scaler's unscale_ (optim/grad_scaler.py) over one flat buffer of every gradient (tinygrad_ed/fast/
# gradients.py), with its inf check folded in:
#   g <- g * (1/S);  all_finite[0] <- 0 if g is inf or NaN
# all_finite is a 1-element array set to 1 before the launch; every thread that sees a non-finite g writes the same 0.
# inf and NaN are the floats whose 8 exponent bits are all set.
UNSCALE_GRADIENTS = Elementwise(
    "float32 inverse_scale", "float32 grad, raw int32 all_finite",
    """
    grad = grad * inverse_scale;
    if ((__float_as_int(grad) & 0x7f800000) == 0x7f800000) all_finite[0] = 0;
    """,
    "tinygrad_ed_unscale_gradients")

# clip_grad_norm_'s scaling (optim/clip.py, step 4) over one flat buffer of every gradient, from the norm the dot
# product of the buffer with itself gave (a 1-element array, so nothing is read back):
#   factor = min(1, max_norm / (norm + 1e-6));  g <- factor * g
# written so that a NaN norm gives a NaN factor, as numpy's minimum does
CLIP_GRADIENTS = Elementwise(
    "raw float32 norm, float32 max_norm", "float32 grad",
    """
    float factor = max_norm / (norm[0] + 1e-6f);
    grad = grad * (factor > 1.0f ? 1.0f : factor);
    """,
    "tinygrad_ed_clip_gradients")

ELEMENTWISE_KERNELS = (GELU_FORWARD, GELU_BACKWARD, GELU_FORWARD_HALF, GELU_BACKWARD_HALF, ADAMW, CROSS_ENTROPY_BACKWARD,
                       UNSCALE_GRADIENTS, CLIP_GRADIENTS)

# ----------------------------------------------------------------------------------------------------------
# row kernels: one cupy.RawModule, one block of BLOCK threads per row, launched as kernel((rows,), (BLOCK,), args)

ROW_KERNELS = f"#define BLOCK {BLOCK}\n" + r"""
// -inf and NaN by their bit patterns: NVRTC compiles without <math.h>, so INFINITY and NAN are not defined
#define NEG_INF __int_as_float((int)0xff800000)
#define NOT_A_NUMBER __int_as_float(0x7fffffff)

// The sum of `value` over the block's BLOCK threads; every thread gets the total. A tree in shared memory: each
// round, the first `half` threads add in the partial sums of the other half, until thread 0 holds the total.
// Every thread of the block must call it (it contains __syncthreads).
__device__ float block_sum(float value, float* shared) {
    int k = threadIdx.x;
    shared[k] = value;
    __syncthreads();
    for (int half = BLOCK / 2; half > 0; half /= 2) {
        if (k < half) shared[k] += shared[k + half];
        __syncthreads();
    }
    float total = shared[0];
    __syncthreads();  // every thread has read the total before `shared` is written again
    return total;
}

// The maximum of `value` over the block's threads, as block_sum.
__device__ float block_max(float value, float* shared) {
    int k = threadIdx.x;
    shared[k] = value;
    __syncthreads();
    for (int half = BLOCK / 2; half > 0; half /= 2) {
        if (k < half) shared[k] = fmaxf(shared[k], shared[k + half]);
        __syncthreads();
    }
    float total = shared[0];
    __syncthreads();
    return total;
}

// LayerNorm over each row of C channels (block n normalises row n):
//   mean = sum(x) / C,  var = sum((x - mean)^2) / C (biased),  rstd = 1 / sqrt(var + eps)
//   x_hat = (x - mean) * rstd,  y = x_hat * weight + bias
// x_hat and rstd are written for the backward pass.
extern "C" __global__ void layer_norm_forward(const float* x, const float* weight, const float* bias, float* y,
                                              float* x_hat, float* rstd, int C, float eps) {
    __shared__ float shared[BLOCK];
    long long offset = (long long)blockIdx.x * C;
    float sum = 0.0f;
    for (int j = threadIdx.x; j < C; j += BLOCK) sum += x[offset + j];
    float mean = block_sum(sum, shared) / C;
    float squares = 0.0f;
    for (int j = threadIdx.x; j < C; j += BLOCK) {
        float centered = x[offset + j] - mean;
        squares += centered * centered;
    }
    float r = 1.0f / sqrtf(block_sum(squares, shared) / C + eps);
    for (int j = threadIdx.x; j < C; j += BLOCK) {
        float normalized = (x[offset + j] - mean) * r;
        x_hat[offset + j] = normalized;
        y[offset + j] = normalized * weight[j] + bias[j];
    }
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

// LayerNorm backward for x, row by row, with d_hat = grad * weight (the gradient reaching x_hat):
//   grad_x = rstd * (d_hat - mean(d_hat) - x_hat * mean(d_hat * x_hat))
//   term 1: the direct path; term 2: through the mean; term 3: through the variance
extern "C" __global__ void layer_norm_backward(const float* grad, const float* x_hat, const float* weight,
                                               const float* rstd, float* grad_x, int C) {
    __shared__ float shared[BLOCK];
    long long offset = (long long)blockIdx.x * C;
    float sum = 0.0f, dot = 0.0f;
    for (int j = threadIdx.x; j < C; j += BLOCK) {
        float d_hat = grad[offset + j] * weight[j];
        sum += d_hat;
        dot += d_hat * x_hat[offset + j];
    }
    float mean_d_hat = block_sum(sum, shared) / C;
    float mean_d_hat_x_hat = block_sum(dot, shared) / C;
    float r = rstd[blockIdx.x];
    for (int j = threadIdx.x; j < C; j += BLOCK) {
        float d_hat = grad[offset + j] * weight[j];
        grad_x[offset + j] = (d_hat - mean_d_hat - x_hat[offset + j] * mean_d_hat_x_hat) * r;
    }
}

// Cross-entropy forward for row n of V logits, with m = max_j logits[j] (so that exp cannot overflow):
//   probs[j] = exp(logits[j] - m) / sum_k exp(logits[k] - m)
//   losses[n] = -log probs[t] = log(sum_k exp(logits[k] - m)) - (logits[t] - m),  t = targets[n]
// and losses[n] = 0 where t == ignore_index. functional.cross_entropy has checked that every other t is in
// [0, V); an id outside it would give NaN here rather than a read outside the row.
extern "C" __global__ void cross_entropy_forward(const float* logits, const long long* targets, float* probs,
                                                 float* losses, int V, long long ignore_index) {
    __shared__ float shared[BLOCK];
    long long offset = (long long)blockIdx.x * V;
    float m = NEG_INF;
    for (int j = threadIdx.x; j < V; j += BLOCK) m = fmaxf(m, logits[offset + j]);
    m = block_max(m, shared);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < V; j += BLOCK) sum += expf(logits[offset + j] - m);
    sum = block_sum(sum, shared);
    for (int j = threadIdx.x; j < V; j += BLOCK) probs[offset + j] = expf(logits[offset + j] - m) / sum;
    if (threadIdx.x == 0) {
        long long t = targets[blockIdx.x];
        if (t == ignore_index) losses[blockIdx.x] = 0.0f;
        else if (t < 0 || t >= V) losses[blockIdx.x] = NOT_A_NUMBER;
        else losses[blockIdx.x] = logf(sum) - (logits[offset + t] - m);
    }
}

// Attention softmax, in place on the (B, H, T, T) scores S = q k^T: row n holds query position t = n mod T.
// With causal, key positions j > t are masked (the -inf of the plain code's mask), so only j <= t take part:
//   P[j] = exp(scale * S[j] - m) / sum_{k <= t} exp(scale * S[k] - m)  for j <= t,  m = max_{k <= t} scale * S[k]
//   P[j] = 0                                                           for j > t
extern "C" __global__ void attention_softmax_forward(float* scores, int T, float scale, int causal) {
    __shared__ float shared[BLOCK];
    long long offset = (long long)blockIdx.x * T;
    int visible = causal ? (int)(blockIdx.x % T) + 1 : T;  // how many keys this query may look at
    float m = NEG_INF;
    for (int j = threadIdx.x; j < visible; j += BLOCK) m = fmaxf(m, scores[offset + j] * scale);
    m = block_max(m, shared);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < visible; j += BLOCK) sum += expf(scores[offset + j] * scale - m);
    sum = block_sum(sum, shared);
    for (int j = threadIdx.x; j < T; j += BLOCK)
        scores[offset + j] = j < visible ? expf(scores[offset + j] * scale - m) / sum : 0.0f;
}

// Attention softmax backward, in place on dP = dL/dP, row by row (masked entries have P = 0, so they get 0):
//   dS[j] = scale * P[j] * (dP[j] - sum_k dP[k] * P[k])
extern "C" __global__ void attention_softmax_backward(float* grad, const float* probs, int T, float scale) {
    __shared__ float shared[BLOCK];
    long long offset = (long long)blockIdx.x * T;
    float dot = 0.0f;
    for (int j = threadIdx.x; j < T; j += BLOCK) dot += grad[offset + j] * probs[offset + j];
    dot = block_sum(dot, shared);
    for (int j = threadIdx.x; j < T; j += BLOCK)
        grad[offset + j] = (grad[offset + j] - dot) * probs[offset + j] * scale;
}
"""

ROW_KERNEL_NAMES = ("layer_norm_forward", "layer_norm_backward", "cross_entropy_forward",
                    "attention_softmax_forward", "attention_softmax_backward")

# ----------------------------------------------------------------------------------------------------------
# the launchers

_kernels = {}  # array module -> its CudaKernels


def kernels_for(cupy):
    """The kernels for arrays of module `cupy`, built at the first call and kept."""
    if cupy not in _kernels:
        _kernels[cupy] = CudaKernels(cupy)
    return _kernels[cupy]


class CudaKernels:
    """The kernels above, compiled by cupy at first use, behind methods that take and return cupy arrays."""

    def __init__(self, cupy):
        self.xp = cupy
        self._elementwise = {spec.name: cupy.ElementwiseKernel(*spec) for spec in ELEMENTWISE_KERNELS}
        self._module = cupy.RawModule(code=ROW_KERNELS)
        self._functions = {}  # name -> the compiled row kernel
        self._constants = {}  # (value, size) -> a vector of it, never written to (the kernels read them only)

    def _launch_rows(self, name, rows, *args):
        """One block of BLOCK threads per row; nothing to launch for zero rows (a grid of 0 blocks is an error)."""
        if rows == 0:
            return
        if name not in self._functions:
            self._functions[name] = self._module.get_function(name)
        self._functions[name]((rows,), (BLOCK,), args)

    def _constant(self, value, size):
        """A float32 vector of `size` entries equal to `value`, made once and kept: the LayerNorm kernels' weight and
        bias where the model has none (nanoGPT's bias=False, the GPU preset's), not a new array at every call."""
        key = (value, size)
        if key not in self._constants:
            self._constants[key] = self.xp.full(size, value, dtype=self.xp.float32)
        return self._constants[key]

    def _contiguous(self, array):
        return self.xp.ascontiguousarray(array, dtype=self.xp.float32)

    # ---- GELU: float32, or float16 stored and float computed ----
    def gelu_forward(self, x):
        half = x.dtype == np.float16
        return self._elementwise[(GELU_FORWARD_HALF if half else GELU_FORWARD).name](x)

    def gelu_backward(self, x, grad):
        half = x.dtype == np.float16
        return self._elementwise[(GELU_BACKWARD_HALF if half else GELU_BACKWARD).name](x, grad.astype(x.dtype,
                                                                                                       copy=False))

    # ---- AdamW ----
    def adamw_step(self, w, grad, m, v, lr, weight_decay, beta1, beta2, eps, step):
        """One AdamW update of w, m and v in place, at step t = `step` (counting from 1)."""
        self._elementwise[ADAMW.name](grad, lr, 1.0 - lr * weight_decay, beta1, beta2, 1.0 - beta1, 1.0 - beta2,
                                      1.0 - beta1 ** step, 1.0 - beta2 ** step, eps, w, m, v)

    # ---- the gradients, as one flat buffer (tinygrad_ed/fast/gradients.py) ----
    def unscale_gradients(self, flat, inverse_scale):
        """flat *= inverse_scale in place; returns a 1-element int32 array, 1 when every entry is finite, else 0."""
        all_finite = self.xp.ones(1, dtype=self.xp.int32)
        self._elementwise[UNSCALE_GRADIENTS.name](np.float32(inverse_scale), flat, all_finite)
        return all_finite

    def clip_gradients(self, flat, norm, max_norm):
        """Scale flat in place so that its norm, `norm` (a 0-d array, read on the device), is at most max_norm."""
        self._elementwise[CLIP_GRADIENTS.name](norm.reshape(1), np.float32(max_norm), flat)

    # ---- LayerNorm ----
    def layer_norm_forward(self, x, weight, bias, eps):
        """(y, x_hat, rstd) for x (..., C); a missing weight is ones and a missing bias zeros (same result)."""
        xp, x = self.xp, self._contiguous(x)
        C = x.shape[-1]
        rows = x.size // C if C else 0
        weight = self._constant(1.0, C) if weight is None else self._contiguous(weight)
        bias = self._constant(0.0, C) if bias is None else self._contiguous(bias)
        y, x_hat, rstd = xp.empty_like(x), xp.empty_like(x), xp.empty(rows, dtype=xp.float32)
        self._launch_rows("layer_norm_forward", rows, x, weight, bias, y, x_hat, rstd, np.int32(C), np.float32(eps))
        return y, x_hat, rstd

    def layer_norm_backward(self, grad, x_hat, weight, rstd):
        """grad_x for LayerNorm, from the forward pass's x_hat and rstd."""
        xp, grad = self.xp, self._contiguous(grad)
        C = grad.shape[-1]
        weight = self._constant(1.0, C) if weight is None else self._contiguous(weight)
        grad_x = xp.empty_like(grad)
        self._launch_rows("layer_norm_backward", rstd.size, grad, self._contiguous(x_hat), weight, rstd, grad_x,
                          np.int32(C))
        return grad_x

    # ---- cross-entropy ----
    def cross_entropy_forward(self, logits, targets, ignore_index):
        """(probs (N, V), losses (N,)) for logits (N, V) and integer targets (N,)."""
        xp, logits = self.xp, self._contiguous(logits)
        rows, V = logits.shape
        probs, losses = xp.empty_like(logits), xp.empty(rows, dtype=xp.float32)
        self._launch_rows("cross_entropy_forward", rows, logits, xp.ascontiguousarray(targets, dtype=xp.int64),
                          probs, losses, np.int32(V), np.int64(_no_ignore(ignore_index)))
        return probs, losses

    def cross_entropy_backward(self, probs, targets, ignore_index, scale):
        """grad_logits (N, V) = (probs − one_hot(targets)) · scale, 0 on ignored rows; scale a 0-d device array."""
        xp = self.xp
        return self._elementwise[CROSS_ENTROPY_BACKWARD.name](
            probs, xp.asarray(scale, dtype=xp.float32), xp.ascontiguousarray(targets, dtype=xp.int64),
            probs.shape[1], _no_ignore(ignore_index))

    # ---- attention softmax ----
    def attention_softmax_forward(self, scores, scale, causal):
        """softmax(scale · scores) over the last axis of the (..., T, T) scores, keys after the query masked when
        causal; in place when `scores` is a C-contiguous float32 array (matmul's result is), and returned either way."""
        scores = self._contiguous(scores)
        T = scores.shape[-1]
        self._launch_rows("attention_softmax_forward", scores.size // T if T else 0, scores, np.int32(T),
                          np.float32(scale), np.int32(bool(causal)))
        return scores

    def attention_softmax_backward(self, grad_probs, probs, scale):
        """The scores' gradient, scale · P ⊙ (dP − Σ dP⊙P), in place on grad_probs (when contiguous) and returned."""
        grad_probs = self._contiguous(grad_probs)
        T = grad_probs.shape[-1]
        self._launch_rows("attention_softmax_backward", grad_probs.size // T if T else 0, grad_probs,
                          self._contiguous(probs), np.int32(T), np.float32(scale))
        return grad_probs


def _no_ignore(ignore_index):
    """ignore_index for the kernels: None becomes -1, which no target can equal (ids are checked to be >= 0)."""
    return -1 if ignore_index is None else int(ignore_index)
