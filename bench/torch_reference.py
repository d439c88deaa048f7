"""nanoGPT's model in PyTorch eager: the reference that bench/train_step.py times our engine against.

The same function as gpt/model.py, written the way nanoGPT's model.py writes it:
  token + position embedding → dropout → n_layer pre-LayerNorm blocks
  (x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))) → ln_f → lm_head (tied to wte) → cross-entropy.
Attention is torch.nn.functional.scaled_dot_product_attention(is_causal=True); the MLP is 4x wide with the exact
(erf) GELU. Parameter names are nanoGPT's, which are also ours, so our state_dict loads one to one.

PyTorch is only a reference: nothing in the package imports this file. tests/test_convert.py, where torch is
installed, loads the weights that gpt/exchange.py exports into it and compares its logits with ours.
Legend: B = batch size, T = time, C = channels (n_embd), H = heads, V = vocabulary size.
"""
import math
import time

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F


class LayerNorm(nn.Module):
    """nanoGPT's LayerNorm: nn.LayerNorm with an optional bias."""

    def __init__(self, size, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.c_attn = nn.Linear(spec["n_embd"], 3 * spec["n_embd"], bias=spec["bias"])
        self.c_proj = nn.Linear(spec["n_embd"], spec["n_embd"], bias=spec["bias"])
        self.resid_dropout = nn.Dropout(spec["dropout"])
        self.n_head, self.dropout = spec["n_head"], spec["dropout"]

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)                                  # 3 × (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)           # (B, H, T, D)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)           # (B, H, T, D)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)           # (B, H, T, D)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None,
                                           dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)                          # heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.c_fc = nn.Linear(spec["n_embd"], 4 * spec["n_embd"], bias=spec["bias"])
        self.gelu = nn.GELU()                                                     # exact: approximate="none"
        self.c_proj = nn.Linear(4 * spec["n_embd"], spec["n_embd"], bias=spec["bias"])
        self.dropout = nn.Dropout(spec["dropout"])

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))                 # (B, T, 4C) → (B, T, C)


class Block(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.ln_1 = LayerNorm(spec["n_embd"], spec["bias"])
        self.attn = CausalSelfAttention(spec)
        self.ln_2 = LayerNorm(spec["n_embd"], spec["bias"])
        self.mlp = MLP(spec)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """`spec` holds GPTConfig's fields as a dict (block_size, vocab_size, n_layer, n_head, n_embd, dropout, bias)."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(spec["vocab_size"], spec["n_embd"]),
            wpe=nn.Embedding(spec["block_size"], spec["n_embd"]),
            drop=nn.Dropout(spec["dropout"]),
            h=nn.ModuleList([Block(spec) for _ in range(spec["n_layer"])]),
            ln_f=LayerNorm(spec["n_embd"], spec["bias"]),
        ))
        self.lm_head = nn.Linear(spec["n_embd"], spec["vocab_size"], bias=False)
        self.transformer.wte.weight = self.lm_head.weight                         # weight tying, as nanoGPT

    def forward(self, idx, targets):
        B, T = idx.size()
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)              # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))   # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)                                                   # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss


def torch_weight_decay_groups(model, weight_decay):
    """nanoGPT's configure_optimizers: parameters with ndim >= 2 decay, biases and LayerNorm weights do not."""
    params = [p for _, p in model.named_parameters() if p.requires_grad]   # a tied weight is listed once
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


class TorchEngine:
    """The reference's training iteration, nanoGPT's, once: bench/train_step.py's worker, bench/gpu_bench.py and
    bench/train_run.py drive it. `init` is our model's state_dict (a dict, or an .npz file's path)."""

    name = "torch"

    def __init__(self, spec, device, init, threads, lr, betas, weight_decay, grad_clip):
        torch.set_num_threads(threads)
        self.device, self.grad_clip = device, grad_clip
        self.model = GPT(spec)
        init = dict(np.load(init)) if not isinstance(init, dict) else init
        names = [name for name, _ in self.model.named_parameters()]
        if sorted(names) != sorted(init):
            only_torch, only_ours = sorted(set(names) - set(init)), sorted(set(init) - set(names))
            raise KeyError(f"torch reference and our state_dict disagree on parameter names: only in torch "
                           f"{only_torch}, only in ours {only_ours}")
        with torch.no_grad():
            for name, param in self.model.named_parameters():
                param.copy_(torch.from_numpy(init[name]))
        self.model.to(device).train()
        self.optimizer = torch.optim.AdamW(torch_weight_decay_groups(self.model, weight_decay), lr=lr, betas=betas,
                                           fused=False)

    def batch(self, x, y):
        return torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)

    def step(self, x, y, lr=None, save=None):
        """One iteration: forward, backward, clip, AdamW (at `lr` when given), zero_grad; returns (loss, norm) as
        tensors. With `save`, the gradients before clipping and the updated weights go to save(stage, arrays)."""
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        _, loss = self.model(x, y)
        loss.backward()
        named = list(self.model.named_parameters()) if save else []
        if save:
            save("grads", {name: p.grad.detach().cpu().numpy() for name, p in named})
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        if save:
            save("new", {name: p.detach().cpu().numpy() for name, p in named})
        self.optimizer.zero_grad(set_to_none=True)
        return loss, norm

    def first_step(self, x, y, save):
        """step() with its intermediate results handed to save(stage, {name: numpy array}) for the cross-check."""
        loss, norm = self.step(x, y, save=save)
        return float(loss.item()), float(norm.item())

    def synchronize(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def matmul_seconds(self, m, k, n, reps):
        """Median seconds of one (m, k) @ (k, n) float32 matmul in torch, out= a preallocated result."""
        a = torch.randn(m, k, device=self.device)
        b = torch.randn(k, n, device=self.device)
        out = torch.empty(m, n, device=self.device)
        return _median_seconds(lambda: torch.matmul(a, b, out=out), self.synchronize, reps)

    def device_memory_bytes(self):
        return torch.cuda.max_memory_allocated() if self.device == "cuda" else None


def _median_seconds(fn, synchronize, reps):
    """Median wall time of fn() followed by synchronize(), over reps calls."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) if times else math.nan
