"""A character GPT with nanoGPT's architecture, parameter names, shapes and initialisation.

The same function as nanoGPT's model.py (chapter part 3, step 1: "logits, loss = model(X, Y)"):
  token embedding + position embedding → dropout
  → n_layer blocks of  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))   (pre-LayerNorm)
  → final LayerNorm → lm_head (tied to the token embedding) → logits → cross-entropy.

Legend: B = batch size, T = time (sequence length), C = channels (n_embd), H = heads, D = head size (C / H),
V = vocabulary size.
"""
import math
from dataclasses import dataclass

import numpy as np

from tinygrad_ed import Tensor, no_grad
from tinygrad_ed import functional as F
from tinygrad_ed.device import array_module
from tinygrad_ed.nn import Dropout, Embedding, LayerNorm, Linear, Module


@dataclass
class GPTConfig:
    block_size: int = 256    # the longest context: how many previous characters the model can look at
    vocab_size: int = 65     # number of distinct tokens (65 characters in tiny Shakespeare)
    n_layer: int = 6         # number of transformer blocks
    n_head: int = 6          # attention heads per block; n_embd must divide evenly among them
    n_embd: int = 384        # width of every token's vector (C)
    dropout: float = 0.0     # probability of zeroing an activation in training (0 for small data / debugging)
    bias: bool = True        # biases in Linear layers and LayerNorms, as GPT-2
    dtype: str = "float32"   # parameter dtype; float64 for gradient checks

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"GPTConfig.{name} must be an integer, got {value!r} ({type(value).__name__})")
            if value < 1:
                raise ValueError(f"GPTConfig.{name} must be positive, got {value}")
        if not isinstance(self.dropout, (int, float, np.floating)) or isinstance(self.dropout, bool) \
                or not 0 <= self.dropout < 1:
            raise ValueError(f"GPTConfig.dropout must be a number in [0, 1), got {self.dropout!r}")
        if not isinstance(self.bias, (bool, np.bool_)):
            raise TypeError(f"GPTConfig.bias must be True or False, got {self.bias!r}")
        if self.dtype not in ("float16", "float32", "float64"):
            raise ValueError(f"GPTConfig.dtype must be 'float16', 'float32' or 'float64', got {self.dtype!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


def residual_std(config):
    """GPT-2's init for the projections that write into the residual stream (the c_proj of attention and MLP):
    n_layer blocks each add two of them, so their std shrinks with depth to keep the stream's variance in check."""
    return 0.02 / math.sqrt(2 * config.n_layer)


class CausalSelfAttention(Module):
    def __init__(self, config, generator, dropout_generator, device):
        C, dtype = config.n_embd, config.dtype
        self.c_attn = Linear(C, 3 * C, config.bias, 0.02, generator, device, dtype)     # q, k, v in one matmul
        self.c_proj = Linear(C, C, config.bias, residual_std(config), generator, device, dtype)
        self.resid_dropout = Dropout(config.dropout, dropout_generator)
        # NOTE: as in nanoGPT, attention's own dropout (on the attention weights) is a probability here, applied
        # inside the fused attention op, while resid_dropout (and MLP's dropout) are Dropout modules
        self.n_head, self.dropout, self.dropout_generator = config.n_head, config.dropout, dropout_generator

    def forward(self, x):
        B, T, C = x.shape
        H = self.n_head
        q, k, v = self.c_attn(x).split(C, axis=2)                        # 3 × (B, T, C)
        q = q.reshape(B, T, H, C // H).transpose(1, 2)                   # (B, H, T, D)
        k = k.reshape(B, T, H, C // H).transpose(1, 2)                   # (B, H, T, D)
        v = v.reshape(B, T, H, C // H).transpose(1, 2)                   # (B, H, T, D)
        # softmax(q kᵀ / √D) over positions ≤ t, then a weighted sum of v: (B, H, T, T) @ (B, H, T, D)
        y = F.scaled_dot_product_attention(q, k, v, causal=True, dropout_p=self.dropout if self.training else 0.0,
                                           generator=self.dropout_generator)
        y = y.transpose(1, 2).reshape(B, T, C)                           # heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(Module):
    def __init__(self, config, generator, dropout_generator, device):
        C, dtype = config.n_embd, config.dtype
        self.c_fc = Linear(C, 4 * C, config.bias, 0.02, generator, device, dtype)
        self.c_proj = Linear(4 * C, C, config.bias, residual_std(config), generator, device, dtype)
        self.dropout = Dropout(config.dropout, dropout_generator)

    def forward(self, x):
        return self.dropout(self.c_proj(self.c_fc(x).gelu()))            # (B, T, 4C) → GELU → (B, T, C)


class Block(Module):
    def __init__(self, config, generator, dropout_generator, device):
        self.ln_1 = LayerNorm(config.n_embd, config.bias, device=device, dtype=config.dtype)
        self.attn = CausalSelfAttention(config, generator, dropout_generator, device)
        self.ln_2 = LayerNorm(config.n_embd, config.bias, device=device, dtype=config.dtype)
        self.mlp = MLP(config, generator, dropout_generator, device)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))   # tokens exchange information
        x = x + self.mlp(self.ln_2(x))    # each token thinks on its own
        return x


class Transformer(Module):
    """nanoGPT's `transformer` ModuleDict: wte, wpe, drop, h, ln_f."""

    def __init__(self, config, generator, dropout_generator, device):
        self.wte = Embedding(config.vocab_size, config.n_embd, 0.02, generator, device, config.dtype)
        self.wpe = Embedding(config.block_size, config.n_embd, 0.02, generator, device, config.dtype)
        self.drop = Dropout(config.dropout, dropout_generator)
        self.h = [Block(config, generator, dropout_generator, device) for _ in range(config.n_layer)]
        self.ln_f = LayerNorm(config.n_embd, config.bias, device=device, dtype=config.dtype)


class GPT(Module):
    def __init__(self, config, device="cpu", seed=1337):
        self.config, self.device = config, device
        generator = np.random.default_rng(seed)                        # initial weights: same seed, same model
        dropout_generator = array_module(device).random.default_rng(seed + 1)
        self.dropout_generator = dropout_generator
        self.transformer = Transformer(config, generator, dropout_generator, device)
        # weight tying, as GPT-2 and nanoGPT: lm_head reads scores with the token embedding itself. (Its own random
        # weight is drawn, then replaced, so the generator's stream matches a model built without the tie.)
        self.lm_head = Linear(config.n_embd, config.vocab_size, False, 0.02, generator, device, config.dtype)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx, targets=None):
        """idx (B, T) token ids → logits (B, T, V) and, with targets (B, T), the mean cross-entropy loss.
        Without targets only the last position's logits are computed (B, 1, V): all generation needs."""
        self._check_tokens("idx", idx)
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(f"targets shape {targets.shape} must equal idx shape {idx.shape}")
            self._check_tokens("targets", targets)
        positions = Tensor(idx.xp.arange(T), device=idx.device)                        # (T,)
        positions.id_range = (0, T - 1)                                                # known: nothing to read back
        tok_emb = self.transformer.wte(idx)                                            # (B, T, C)
        pos_emb = self.transformer.wpe(positions)                                      # (T, C), broadcast over B
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)                                                               # (B, T, C)
        x = self.transformer.ln_f(x)
        if targets is None:
            return self.lm_head(x[:, T - 1:T, :]), None                                # (B, 1, V)
        logits = self.lm_head(x)                                                       # (B, T, V)
        return logits, F.cross_entropy(logits, targets)

    def flops_per_token(self):
        """FLOPs of one token's forward and backward pass, nanoGPT's estimate_mfu count (PaLM appendix B): 6N for the N
        weights (2 per multiply-add forward, 4 backward) plus 12·L·H·Q·T for attention over T positions (L layers,
        H heads, Q head size). N leaves out the position embeddings, as nanoGPT does: a lookup is not a matmul."""
        cfg = self.config
        N = self.num_parameters() - self.transformer.wpe.weight.size
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.block_size
        return 6 * N + 12 * L * H * Q * T

    def _check_tokens(self, name, tokens):
        if not isinstance(tokens, Tensor):
            raise TypeError(f"{name} must be a 2-D Tensor of integer token ids (B, T), got a "
                            f"{type(tokens).__module__}.{type(tokens).__name__} {getattr(tokens, 'shape', '')} "
                            f"{getattr(tokens, 'dtype', '')}: wrap it, Tensor({name})")
        if tokens.ndim != 2 or tokens.dtype.kind not in "iu":
            raise TypeError(f"{name} must be a 2-D Tensor of integer token ids (B, T), got "
                            f"{getattr(tokens, 'shape', type(tokens))} {getattr(tokens, 'dtype', '')}")
        if tokens.device != self.device:
            raise RuntimeError(f"{name} is on {tokens.device!r} but the model is on {self.device!r}")
        if tokens.shape[1] == 0:
            raise ValueError(f"{name} has shape {tokens.shape}: a sequence needs at least one token")
        # token ids outside [0, vocab_size) are caught by the embedding and the loss, which name the id

    @no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
        """Append max_new_tokens sampled tokens to idx (B, T), one at a time, feeding each back in."""
        self._check_tokens("idx", idx)
        if not isinstance(max_new_tokens, (int, np.integer)) or isinstance(max_new_tokens, bool) \
                or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
        if not (isinstance(temperature, (int, float, np.floating)) and math.isfinite(temperature)
                and temperature > 0):
            raise ValueError(f"temperature must be positive, got {temperature!r} (a finite number > 0)")
        if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
            raise ValueError(f"top_k must be an integer >= 1 (or None for no limit), got {top_k!r}")
        generator = generator if generator is not None else np.random.default_rng()
        tokens = idx.numpy()
        for _ in range(max_new_tokens):
            context = tokens[:, -self.config.block_size:]                 # crop to the last block_size tokens
            context_ids = Tensor(context, device=self.device)
            context_ids.id_range = int(context.min()), int(context.max())  # on the host, before the copy
            logits, _ = self(context_ids)
            logits = logits.numpy()[:, -1, :].astype(np.float64) / temperature   # (B, V)
            if top_k is not None:
                kth_largest = np.sort(logits, axis=-1)[:, -min(top_k, logits.shape[-1]), None]
                logits = np.where(logits < kth_largest, -np.inf, logits)  # keep only the top_k choices
            probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
            probs /= probs.sum(axis=-1, keepdims=True)
            next_tokens = [generator.choice(len(p), p=p) for p in probs]
            tokens = np.concatenate([tokens, np.array(next_tokens, dtype=tokens.dtype)[:, None]], axis=1)
        return Tensor(tokens, device=self.device)
