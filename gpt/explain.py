"""One real training iteration, printed as the chapter's part 3 (steps 1-5) with the model's own numbers.

    python examples/train_char_gpt.py --explain [--lang zh] [--explain-param NAME[i,j]] [any TrainConfig flag]
    python examples/train_char_gpt.py --explain --resume --out-dir DIR    # DIR/ckpt.npz's next iteration

explain_iteration() runs iteration 0 of train() in gpt/training.py: the same initialise(config) (model, AdamW,
batches, DistributedDataParallel, on one rank), the same learning rate and the same train_step, which it watches through a
StepObserver; nothing of the update is computed beside it (what it adds, the norm after clipping and the ratios per
group, is measured on the step's own arrays). What it prints is train(config)'s first update, in order:

    the batch           X, Y = get_batch('train'): token ids and the text they stand for
    步骤1 forward        sample 0, position 0: top-5 scores, softmax, -log p; the mean loss against ln V (FAQ Q1)
    步骤2 accumulation   each micro-step's loss, loss / steps, and one weight's gradient adding up (+=)
    步骤3 backward       that weight's gradient, and what its sign says
    步骤4 clipping       the global gradient norm, the threshold, the factor
    步骤5 update         AdamW on that weight: m, v, m̂, v̂, the two terms, old and new value (read from the
                        optimizer's own step through optimizer.watch()/last_update(), not recomputed beside it)
    then the learning rate (warmup) and the update / parameter ratio per group (part 5's health check).

NOTE: unlike train(), there is no evaluation and no checkpoint; neither changes the update (tests/test_explain.py
checks the weights after it bit for bit against train()'s). With --resume the iteration is a checkpoint's next one
(its weights, AdamW's m and v, its batch stream), the update a resumed train() makes.
"""
import difflib
import json
import math
import os
import re
import unicodedata

import numpy as np

from gpt.checkpoint import CHECKPOINT_NAME
from gpt.data import CharDataset
from gpt.progress import update_ratio
from gpt.step import StepObserver, train_step
from gpt.training import _resume, initialise, scheduled_lr
from tinygrad_ed.distributed import ProcessGroup
from optim import clip_factor, global_grad_norm
from tinygrad_ed.device import to_device

DEFAULT_PARAM = "transformer.h.0.attn.c_attn.weight[0,0]"  # a weight of the first attention's q, k, v matmul
SHOWN_ROWS, SHOWN_COLUMNS, TOP_K = 4, 8, 5                  # the chapter's batch example is 4 rows × 8 positions
HEALTHY_RATIO = (1e-3, 1e-2)                                # part 5: an update is 0.001-0.01 of the parameter
HEALTHY_NORM = (0.1, 10.0)                                  # FAQ Q4: a gradient norm roughly in 0.1-10

# Every sentence the explanation prints, per language. Numbers arrive already formatted, so both languages show
# the same digits; the step headings are the chapter's own.
LABELS = {
    "en": {
        "header": "One training iteration, as the chapter's part 3 (第三部分：GPT训练的完整流程) walks through it: "
                  "iteration {it} of train(), with the real model, data and optimizer",
        "config": "config: {config}",
        "model": "model: {n_params} parameters, a vocabulary of {vocab} characters; seed {seed}: the same weights "
                 "and batches as train() with this seed",
        "batch_title": "The batch: X, Y = get_batch('train')  (假设我们已经完成数据加载)",
        "x_shape": "X.shape = {shape}   # batch_size = {B}, block_size = {T}: {B} windows of {T} characters",
        "y_shape": "Y.shape = {shape}   # Y[b, t] = X[b, t+1]: the target is always the next character",
        "shown": "(the first {rows} of {B} rows and {cols} of {T} positions; the text each row of ids stands for "
                 "on the right)",
        "shown_all": "(on the right: the text each row of ids stands for)",
        "forward_title": "Step 1: forward pass (步骤1：前向传播)  logits, loss = model(X, Y)",
        "logits_shape": "logits.shape = {shape}   # (B, T, V): a score for each of the V = {V} characters at "
                        "every position",
        "position": "sample 0, position 0: input X[0, 0] = {x_id} {x_char}, target Y[0, 0] = {y_id} {y_char}",
        "embedding": "inside: X[0, 0] = {x_id} → transformer.wte.weight[{x_id}] = [{tok}, …] ({C} numbers) + "
                     "transformer.wpe.weight[0] = [{pos}, …] (position 0); the transformer blocks (n_layer = "
                     "{n_layer}), ln_f and lm_head turn that vector into {V} scores",
        "top_header": "the {k} largest of its {V} scores logits[0, 0], and their softmax probabilities:",
        "top_row": "{rank}. {char} (id {id}): score {score}  →  p = {p}{mark}",
        "is_target": "  ← the target",
        "target": "the target {char} (id {id}): score {score}, rank {rank} of {V}, p = {p}",
        "ideal": "(ideal: p = 1 for the target, 0 for the other {others} characters)",
        "position_loss": "loss at this position = -log(p) = -log({p}) = {loss}",
        "mean_loss": "mean over all B × T = {n} positions: loss = {loss}   (the mean of every position's -log p, "
                     "recomputed from the logits: {check})",
        "faq1": "at initialisation the model guesses almost uniformly: loss ≈ -log(1/V) = ln {V} = {ln_v} "
                "(FAQ Q1: 为什么loss一开始很高？); near, not equal, because the random scores are small but not "
                "all the same",
        "accum_title": "Step 2: gradient accumulation (步骤2：梯度累积)",
        "accum_many": "gradient_accumulation_steps = {steps}: each micro-step divides its loss by {steps} before "
                      "backward, so the gradients that add up (+=) are the mean over the micro-batches, not their "
                      "sum ({steps}× too large)",
        "accum_one": "gradient_accumulation_steps = 1: one micro-batch per update, nothing to add up (try "
                     "--gradient-accumulation-steps 4 to watch the gradient accumulate)",
        "accum_weight": "w = {name}[{index}]; each row: forward, loss / {steps}, the next batch, backward",
        "col_step": "micro-step", "col_loss": "loss", "col_scaled": "loss / {steps}", "col_added": "w.grad added",
        "col_running": "accumulated w.grad",
        "accum_total": "the update uses the gradient of the mean loss ({terms}) / {steps} = {loss}",
        "backward_title": "Step 3: backward pass (步骤3：反向传播)  loss.backward()",
        "chain": "the chain rule carries ∂loss/∂loss = 1 back through lm_head, the transformer blocks "
                 "(n_layer = {n_layer}) and the embeddings to all {n_params} weights. One of them:",
        "weight": "w = {name}[{index}]   (a tensor of shape {shape}, in the {group} group)",
        "value": "current value  w = {w}",
        "loss_now": "loss           {loss}",
        "grad": "gradient       ∂loss/∂w = {grad}",
        "grad_negative": "meaning: the gradient is negative, so increasing w lowers the loss",
        "grad_positive": "meaning: the gradient is positive, so increasing w raises the loss; decreasing w lowers it",
        "grad_zero": "meaning: the gradient is 0: to first order w does not change this loss",
        "estimate": "  w + 0.001 → the loss changes by ≈ ∂loss/∂w × 0.001 = {delta} (first-order estimate)",
        "descent_up": "so gradient descent increases w: w − lr × ∂loss/∂w moves against the gradient's sign",
        "descent_down": "so gradient descent decreases w: w − lr × ∂loss/∂w moves against the gradient's sign",
        "clip_title": "Step 4: gradient clipping (步骤4：梯度裁剪)  clip_grad_norm_(model.parameters(), grad_clip)",
        "norm": "global gradient norm ‖g‖ = sqrt(Σ g²) over all {n} gradient entries = {norm}",
        "threshold": "threshold grad_clip = {clip}",
        "no_scale": "‖g‖ ≤ grad_clip: no scaling, factor = min(1, {clip} / ({norm} + 1e-6)) = 1",
        "scale": "‖g‖ > grad_clip: every gradient × min(1, {clip} / ({norm} + 1e-6)) = {factor}; the direction is "
                 "kept, the norm becomes {new_norm}",
        "clip_off": "grad_clip = 0: clipping is off; the norm is only measured",
        "clipped": "w's gradient after clipping: {grad}",
        "update_title": "Step 5: parameter update (步骤5：参数更新)  optimizer.step(), AdamW",
        "history_first": "the first update: m and v start at 0",
        "history_resumed": "m and v carry the {earlier} updates before this one, from the checkpoint",
        "hyper": "t = {t} ({history}), lr = {lr} (the schedule's, see below), "
                 "β1 = {b1}, β2 = {b2}, ε = {eps}, weight_decay = {wd} ({group} group)",
        "read": "every value below is read from the optimizer's own step (optimizer.watch / last_update):",
        "g": "g  = {g}   (the gradient after clipping)",
        "m": "m  = β1·m + (1−β1)·g  = {b1} × {m_before} + {c1} × g  = {m}",
        "v": "v  = β2·v + (1−β2)·g² = {b2} × {v_before} + {c2} × g² = {v}",
        "m_hat": "m̂ = m / (1 − β1^t) = m / {d1} = {m_hat}",
        "v_hat": "v̂ = v / (1 − β2^t) = v / {d2} = {v_hat}",
        "wd_term": "weight decay term = lr × weight_decay × w  = {term}",
        "adam_term": "Adam term         = lr × m̂ / (√v̂ + ε)    = {term}",
        "new": "w_new = w − weight decay term − Adam term = {old} − ({wd_term}) − ({adam_term}) = {new}",
        "first_step": "at t = 1, m̂ = g and v̂ = g², so the Adam term is lr × g / (|g| + ε) ≈ ±lr: every weight "
                      "moves by about lr whatever its gradient's size (here {multiple} × lr)",
        "lr_title": "Learning rate (总结图 2.1：调整学习率)  lr = get_lr(iter_num)",
        "lr_warmup": "iteration {it} is in the warmup (warmup_iters = {warmup}): lr = learning_rate × (it + 1) / "
                     "(warmup_iters + 1) = {peak} × {it1}/{w1} = {lr}",
        "lr_decay": "iteration {it} is past the warmup (warmup_iters = {warmup}): lr follows the cosine from {peak} "
                    "down to min_lr = {min_lr} at iteration {decay_iters}: lr = {lr}",
        "lr_warmup_why": "why: the first gradients come from a random model and AdamW's m, v have seen one of them, "
                         "yet each weight moves by ≈ lr; so lr starts small, rises linearly to {peak} at iteration "
                         "{warmup}, then follows a cosine down to min_lr = {min_lr} at iteration {decay_iters}",
        "lr_no_warmup": "no warmup (warmup_iters = 0): iteration 0 starts the cosine decay at lr = learning_rate "
                        "= {lr}",
        "lr_constant": "decay_lr is off: lr = learning_rate = {lr} at every iteration",
        "health_title": "Health check (第五部分：监控训练健康度)",
        "health_norm": "gradient norm {norm}: {verdict}",
        "norm_ok": "in 0.1-10, healthy (FAQ Q4)",
        "norm_small": "below 0.1: small gradients (FAQ Q4 calls 0.1-10 healthy)",
        "norm_large": "above 10: large gradients, clipping matters (FAQ Q4 calls 0.1-10 healthy)",
        "health_intro": "update / parameter ratio ‖Δp‖/‖p‖ per group (part 5: an update should be 0.001-0.01 of "
                        "the parameter):",
        "health_row": "{group}: {count} tensors, {entries} entries, weight_decay {wd}: ‖Δp‖/‖p‖ = {ratio}, "
                      "{verdict}",
        "ratio_ok": "healthy (0.001-0.01)",
        "ratio_small": "below 0.001: small steps",
        "ratio_small_warmup": "below 0.001: small steps, as expected in the warmup (lr is {percent} of "
                              "learning_rate)",
        "ratio_large": "above 0.01: large steps, a risk of instability (lower learning_rate)",
        "ratio_none": "all zeros (fresh biases): no size to compare the step with",
        "ratio_log": "train()'s log line shows update/param = {ratio}: there ‖Δp‖/‖p‖ is taken per tensor and "
                     "averaged over the {n} tensors that are not all zeros, so it differs from the group ratios above",
        "group_decay": "decay", "group_no_decay": "no-decay",
        "done": "That was iteration {it} of train(config), ended by zero_grad() (总结图 2.5：清空梯度); next come the log "
                "line and iteration {next} with the next batch. Explain mode saves no checkpoint.",
    },
    "zh": {
        "header": "一次训练迭代，按本章第三部分（GPT训练的完整流程）的步骤展开：train() 的第{it}次迭代，"
                  "用真实的模型、数据和优化器",
        "config": "配置：{config}",
        "model": "模型：{n_params} 个参数，词表 {vocab} 个字符；随机种子 {seed}：与用同一种子的 train() "
                 "相同的初始参数和批次",
        "batch_title": "批次数据：X, Y = get_batch('train')（假设我们已经完成数据加载）",
        "x_shape": "X.shape = {shape}   # batch_size = {B}, block_size = {T}：{B} 段、每段 {T} 个字符",
        "y_shape": "Y.shape = {shape}   # Y[b, t] = X[b, t+1]：目标永远是下一个字符",
        "shown": "（只显示 {B} 行中的前 {rows} 行、{T} 个位置中的前 {cols} 个；右边是这行ID对应的文字）",
        "shown_all": "（右边是这行ID对应的文字）",
        "forward_title": "步骤1：前向传播（Forward Pass）  logits, loss = model(X, Y)",
        "logits_shape": "logits.shape = {shape}   # (B, T, V)：每个位置对 V = {V} 个字符各给一个分数",
        "position": "第一个样本的第一个位置：输入 X[0, 0] = {x_id} {x_char}，目标 Y[0, 0] = {y_id} {y_char}",
        "embedding": "模型内部：X[0, 0] = {x_id} → transformer.wte.weight[{x_id}] = [{tok}, …]（{C} 维向量）+ "
                     "transformer.wpe.weight[0] = [{pos}, …]（位置 0）；再经过 {n_layer} 个 Transformer 层、ln_f "
                     "和 lm_head，变成 {V} 个分数",
        "top_header": "logits[0, 0] 的 {V} 个分数中最大的 {k} 个，及其 softmax 概率：",
        "top_row": "{rank}. {char}（ID {id}）：分数 {score}  →  p = {p}{mark}",
        "is_target": "  ← 正确答案",
        "target": "正确答案 {char}（ID {id}）：分数 {score}，在 {V} 个中排第 {rank}，p = {p}",
        "ideal": "（理想情况：正确答案 p = 1，其余 {others} 个字符 p = 0）",
        "position_loss": "这个位置的损失 = -log(P(正确答案)) = -log({p}) = {loss}",
        "mean_loss": "对所有 B × T = {n} 个位置求平均：loss = {loss}   （由 logits 重新计算每个位置的 -log p "
                     "再求平均：{check}）",
        "faq1": "刚初始化的模型几乎在均匀乱猜：loss ≈ -log(1/V) = ln {V} = {ln_v}（常见问题 Q1：为什么loss一开始很高？）；"
                "只是接近而不相等，因为随机分数虽小，却不完全相同",
        "accum_title": "步骤2：梯度累积（Gradient Accumulation）",
        "accum_many": "gradient_accumulation_steps = {steps}：每个微步先把 loss 除以 {steps} 再反向传播，"
                      "这样累加（+=）起来的梯度是各微批次的平均，而不是总和（否则大 {steps} 倍）",
        "accum_one": "gradient_accumulation_steps = 1：每次更新只有一个微批次，没有可累加的（试试 "
                     "--gradient-accumulation-steps 4 观察梯度累积）",
        "accum_weight": "w = {name}[{index}]；每一行：前向传播、loss / {steps}、取下一批、反向传播",
        "col_step": "微步", "col_loss": "loss", "col_scaled": "loss / {steps}", "col_added": "本步加上的 w.grad",
        "col_running": "累积梯度 w.grad",
        "accum_total": "参数更新用的是平均 loss 的梯度：({terms}) / {steps} = {loss}",
        "backward_title": "步骤3：反向传播（Backward Pass）  loss.backward()",
        "chain": "链式法则从 ∂loss/∂loss = 1 开始，经过 lm_head、Transformer 层（n_layer = {n_layer}）和嵌入层，"
                 "算出全部 {n_params} 个参数的梯度。看其中一个：",
        "weight": "w = {name}[{index}]   （所在张量形状 {shape}，属于{group}）",
        "value": "当前值  w = {w}",
        "loss_now": "loss    {loss}",
        "grad": "梯度    ∂loss/∂w = {grad}",
        "grad_negative": "含义：梯度为负，增加 w 会让 loss 减少",
        "grad_positive": "含义：梯度为正，增加 w 会让 loss 增加；减小 w 才会让 loss 减少",
        "grad_zero": "含义：梯度为 0：一阶近似下 w 不影响这个 loss",
        "estimate": "  w 增加 0.001 → loss 变化 ≈ ∂loss/∂w × 0.001 = {delta}（一阶估计）",
        "descent_up": "所以梯度下降会增加 w：w − lr × ∂loss/∂w 朝梯度符号的反方向走",
        "descent_down": "所以梯度下降会减小 w：w − lr × ∂loss/∂w 朝梯度符号的反方向走",
        "clip_title": "步骤4：梯度裁剪（Gradient Clipping）  clip_grad_norm_(model.parameters(), grad_clip)",
        "norm": "所有梯度的总范数 ‖g‖ = sqrt(Σ g²)，共 {n} 个梯度分量 = {norm}",
        "threshold": "阈值 grad_clip = {clip}",
        "no_scale": "‖g‖ ≤ grad_clip：不缩放，因子 = min(1, {clip} / ({norm} + 1e-6)) = 1",
        "scale": "‖g‖ > grad_clip：所有梯度乘以 min(1, {clip} / ({norm} + 1e-6)) = {factor}；方向不变，"
                 "范数变为 {new_norm}",
        "clip_off": "grad_clip = 0：不裁剪，只测量范数",
        "clipped": "裁剪后 w 的梯度：{grad}",
        "update_title": "步骤5：参数更新（Optimizer Step）  optimizer.step()，AdamW",
        "history_first": "第1步：m 和 v 从 0 开始",
        "history_resumed": "m 和 v 带着 checkpoint 中此前 {earlier} 次更新的记忆",
        "hyper": "t = {t}（{history}），lr = {lr}（学习率调度给出，见下文），β1 = {b1}，"
                 "β2 = {b2}，ε = {eps}，weight_decay = {wd}（{group}）",
        "read": "下面每个值都取自优化器自己的这一步（optimizer.watch / last_update）：",
        "g": "g  = {g}   （裁剪后的梯度）",
        "m": "m  = β1·m + (1−β1)·g  = {b1} × {m_before} + {c1} × g  = {m}",
        "v": "v  = β2·v + (1−β2)·g² = {b2} × {v_before} + {c2} × g² = {v}",
        "m_hat": "m̂ = m / (1 − β1^t) = m / {d1} = {m_hat}   （偏差修正）",
        "v_hat": "v̂ = v / (1 − β2^t) = v / {d2} = {v_hat}",
        "wd_term": "权重衰减项 = lr × weight_decay × w = {term}",
        "adam_term": "Adam 项    = lr × m̂ / (√v̂ + ε)    = {term}",
        "new": "新的 w = w − 权重衰减项 − Adam 项 = {old} − ({wd_term}) − ({adam_term}) = {new}",
        "first_step": "t = 1 时 m̂ = g、v̂ = g²，所以 Adam 项 = lr × g / (|g| + ε) ≈ ±lr：不管梯度多大，"
                      "每个参数都移动约 lr（这里是 {multiple} × lr）",
        "lr_title": "学习率（总结图 2.1：调整学习率）  lr = get_lr(iter_num)",
        "lr_warmup": "第{it}次迭代处在预热阶段（warmup_iters = {warmup}）：lr = learning_rate × (it + 1) / "
                     "(warmup_iters + 1) = {peak} × {it1}/{w1} = {lr}",
        "lr_decay": "第{it}次迭代已过预热阶段（warmup_iters = {warmup}）：lr 沿余弦从 {peak} 降到第 {decay_iters} 次迭代的 "
                    "min_lr = {min_lr}，lr = {lr}",
        "lr_warmup_why": "原因：最初的梯度来自随机模型，AdamW 的 m、v 也只见过一个梯度，而每个参数都会移动约 lr；"
                         "所以 lr 从很小开始，线性升到第 {warmup} 次迭代的 {peak}，再按余弦降到第 {decay_iters} "
                         "次迭代的 min_lr = {min_lr}",
        "lr_no_warmup": "没有预热（warmup_iters = 0）：第0次迭代从余弦衰减的起点开始，lr = learning_rate = {lr}",
        "lr_constant": "decay_lr 关闭：每次迭代 lr = learning_rate = {lr}",
        "health_title": "健康检查（第五部分：监控训练健康度）",
        "health_norm": "梯度范数 {norm}：{verdict}",
        "norm_ok": "在 0.1-10 之间，正常（常见问题 Q4）",
        "norm_small": "小于 0.1：梯度很小（常见问题 Q4：0.1-10 为正常）",
        "norm_large": "大于 10：梯度很大，裁剪很重要（常见问题 Q4：0.1-10 为正常）",
        "health_intro": "每组参数的更新比例 ‖Δp‖/‖p‖（第五部分：更新量应该是参数值的 0.001-0.01 倍）：",
        "health_row": "{group}：{count} 个张量，{entries} 个分量，weight_decay {wd}：‖Δp‖/‖p‖ = {ratio}，"
                      "{verdict}",
        "ratio_ok": "正常（0.001-0.01）",
        "ratio_small": "小于 0.001：步子很小",
        "ratio_small_warmup": "小于 0.001：步子很小，预热阶段正常如此（lr 只有 learning_rate 的 {percent}）",
        "ratio_large": "大于 0.01：步子太大，训练可能不稳定（调小 learning_rate）",
        "ratio_none": "全为 0（新初始化的偏置）：没有大小可比",
        "ratio_log": "train() 的日志行显示 update/param = {ratio}：那里 ‖Δp‖/‖p‖ 按张量计算，再对 {n} 个非零张量求平均，"
                     "所以与上面按组计算的比例不同",
        "group_decay": "权重衰减组", "group_no_decay": "不衰减组",
        "done": "以上就是 train(config) 的第{it}次迭代，最后一步是 zero_grad()（总结图 2.5：清空梯度）；接下来是日志行，"
                "然后用下一批数据进行第{next}次迭代。explain 模式不保存 checkpoint。",
    },
}


def parse_param_spec(spec, model):
    """'NAME' or 'NAME[i,j,...]' → (name, parameter Tensor, index tuple) of one entry of a weight of `model`.

    Without an index the entry is [0, 0, ...]. 'lm_head.weight' is tied to 'transformer.wte.weight' and names it.
    """
    params = dict(model.named_parameters())
    match = re.fullmatch(r"\s*([\w.]+)\s*(?:\[([^\]]*)\])?\s*", spec)
    if match is None:
        raise ValueError(f"cannot read {spec!r}: expected NAME or NAME[i,j], e.g. {DEFAULT_PARAM}")
    name, index_text = match.groups()
    if name == "lm_head.weight":  # weight tying: one tensor, listed under its first name
        name = "transformer.wte.weight"
    if name not in params:
        # the names outside the blocks and those of block 0 (every other block repeats block 0's)
        examples = [f"{key} {params[key].shape}" for key in params if not re.match(r"transformer\.h\.[1-9]", key)]
        close = difflib.get_close_matches(name, list(params), n=3)
        raise ValueError(f"unknown parameter {name!r}" + (f" (did you mean {' or '.join(close)}?)" if close else "")
                         + f"; the model's {len(params)} parameters include {', '.join(examples)}"
                         + _other_blocks(model.config.n_layer))
    param = params[name]
    if index_text is None:
        return name, param, (0,) * param.ndim
    try:
        index = tuple(int(part) for part in index_text.split(",")) if index_text.strip() else ()
    except ValueError:
        raise ValueError(f"index [{index_text}] of {name}: expected {param.ndim} integers separated by commas "
                         f"(the tensor has shape {param.shape})") from None
    if len(index) != param.ndim or any(not -n <= i < n for i, n in zip(index, param.shape)):
        raise ValueError(f"index {list(index)} does not name one entry of {name}, which has shape {param.shape}: "
                         f"give {param.ndim} indices, the k-th in [0, shape[k])")
    return name, param, tuple(i % n for i, n in zip(index, param.shape))


def _other_blocks(n_layer):
    """How the blocks after h.0 are named, for the error message."""
    if n_layer == 1:
        return ""
    blocks = "transformer.h.1" if n_layer == 2 else f"transformer.h.1 … h.{n_layer - 1}"
    return f", and {blocks} repeat the names of h.0"


def explain_iteration(config, param_spec=DEFAULT_PARAM, lang="en", dataset=None, out=print):
    """Run iteration 0 of train(config) and print it as the chapter's steps; returns the values printed.

    config      a TrainConfig (float32); its seed fixes weights and batches as in train(). With init_from='resume'
                the iteration is the checkpoint's next one (out_dir/ckpt.npz: its weights, AdamW's m and v, its
                batches), as a resumed train() would run it: a model trained by nanoGPT, converted by
                examples/convert_checkpoint.py, is walked through the same way
    param_spec  the weight to follow, 'NAME[i,j]' (see parse_param_spec)
    lang        'en' or 'zh'
    dataset     a CharDataset; tiny Shakespeare by default
    out         called with each printed line
    """
    if lang not in LABELS:
        raise ValueError(f"lang must be one of {sorted(LABELS)}, got {lang!r}")
    if config.dtype != "float32":
        raise ValueError("explain runs in float32: float16's loss scaling would add steps that the chapter's "
                         "part 3 does not have; use --dtype float32")
    config = config.resolved()  # as train() runs it
    writer = _Writer(lang, out)

    # ---- 1. initialisation, train()'s own; AdamW records the followed entry's m, v, m̂, v̂, ... as it updates it
    dataset = dataset if dataset is not None else CharDataset()
    tokenizer = dataset.tokenizer
    # on one rank: DistributedDataParallel computes the same function at every world size, and one process can
    # print every number of the step (with several, each would hold its slice's share until the gradients meet)
    raw_model, model, optimizer, scaler, batches = initialise(config, dataset, ProcessGroup())
    iter_num = 0
    if config.init_from == "resume":  # the checkpoint's next iteration, as train(config) would run it
        iter_num, _ = _resume(os.path.join(config.out_dir, CHECKPOINT_NAME), raw_model, optimizer, scaler, batches,
                              dataset)
    name, param, index = parse_param_spec(param_spec, raw_model)
    watch_key = optimizer.watch(param, index)
    group = next(g for g in optimizer.param_groups if any(param is p for p in g["params"]))  # w's group
    weight = dict(name=name, index=", ".join(map(str, index)),
                  group=writer.text("group_decay" if group is optimizer.param_groups[0] else "group_no_decay"))
    X, Y = batches.next()
    _print_header(writer, config, raw_model, tokenizer, iter_num)
    _print_batch(writer, tokenizer, X, Y)

    # ---- 2. iteration 0: train()'s step, watched; the forward of micro-step 0 is the chapter's step 1
    lr = scheduled_lr(config, iter_num)
    watcher = _Watcher(writer, raw_model, tokenizer, param, index)
    step = train_step(model, optimizer, (X, Y), batches.next, lr, config.gradient_accumulation_steps,
                      config.grad_clip, measure_norm=True, observer=watcher)
    update = optimizer.last_update(watch_key)

    steps, micro_losses, running = config.gradient_accumulation_steps, watcher.micro_losses, watcher.running
    mean_loss = sum(micro_losses) / steps
    _print_accumulation(writer, weight, micro_losses, running, steps, mean_loss)
    grad = running[-1]
    _print_backward(writer, config, raw_model, weight, param.shape, update["old"], mean_loss, grad)
    writer.say("clip_title", 0)
    grad_norm = step.grad_norm.item()
    factor = _print_clipping(writer, config, grad_norm, watcher.entries, watcher.clipped_norm)
    writer.say("clipped", grad=_e(watcher.clipped_grad))
    writer.line()
    _print_update(writer, group, weight, update)
    _print_lr(writer, config, lr, iter_num)
    params = raw_model.parameters()
    group_ratios, log_ratio = _print_health(writer, config, optimizer, params, watcher.weights_before, grad_norm, lr)
    writer.say("done", 0, it=iter_num, next=iter_num + 1)
    return dict(iter_num=iter_num, param=name, index=index, lr=lr, micro_losses=micro_losses, loss=mean_loss, running_grads=running,
                grad=grad, grad_norm=grad_norm, clip_factor=factor, grad_clipped=watcher.clipped_grad, update=update,
                old=update["old"], new=update["new"], group_ratios=group_ratios, update_ratio=log_ratio,
                model=raw_model, optimizer=optimizer, **watcher.forward)


class _Watcher(StepObserver):
    """What explain_iteration needs from inside train_step: micro-step 0's forward (printed then, while the weights
    are still the old ones), each micro-step's loss, the followed entry's gradient as it accumulates and after
    clipping, and the weights before the update."""

    def __init__(self, writer, raw_model, tokenizer, param, index):
        self.writer, self.raw_model, self.tokenizer, self.param, self.index = writer, raw_model, tokenizer, param, index
        self.micro_losses, self.running = [], []

    def after_backward(self, index, X, Y, logits, loss):
        if index == 0:
            self.forward = _print_forward(self.writer, self.raw_model, self.tokenizer, X, Y, logits, loss)
        self.micro_losses.append(loss.item())
        self.running.append(float(self.param.grad[self.index]))  # the gradients add up (+=) across micro-steps

    def before_update(self, model, grad_norm):
        params = model.parameters()
        self.entries = sum(p.size for p in params if p.grad is not None)
        self.clipped_norm = global_grad_norm(params).item()
        self.clipped_grad = float(self.param.grad[self.index])
        self.weights_before = [p.data.copy() for p in params]


class _Writer:
    """The labels of one language, printed through `out`, two spaces of indent per level."""

    def __init__(self, lang, out):
        self.labels, self.out = LABELS[lang], out

    def text(self, key, **values):
        return self.labels[key].format(**values)

    def say(self, key, indent=1, **values):
        self.out("  " * indent + self.text(key, **values))

    def line(self, text="", indent=0):
        self.out("  " * indent + text if text else "")


# ---- the sections, in the order they print; each returns what explain_iteration reports ----

def _print_header(writer, config, model, tokenizer, iter_num):
    writer.say("header", 0, it=iter_num)
    keys = ("device", "n_layer", "n_head", "n_embd", "block_size", "batch_size", "gradient_accumulation_steps",
            "dropout", "bias", "learning_rate", "decay_lr", "warmup_iters", "lr_decay_iters", "min_lr",
            "weight_decay", "beta1", "beta2", "grad_clip", "seed")
    writer.say("config", config=", ".join(f"{key}={getattr(config, key)}" for key in keys))
    writer.say("model", n_params=f"{model.num_parameters():,}", vocab=tokenizer.vocab_size, seed=config.seed)
    writer.line()


def _print_batch(writer, tokenizer, X, Y):
    writer.say("batch_title", 0)
    B, T = X.shape
    writer.say("x_shape", shape=list(X.shape), B=B, T=T)
    writer.say("y_shape", shape=list(Y.shape))
    rows, cols = min(SHOWN_ROWS, B), min(SHOWN_COLUMNS, T)
    width = len(str(tokenizer.vocab_size - 1))
    more = "…" if cols < T else ""
    for label, ids in (("X", X.numpy()[:rows, :cols]), ("Y", Y.numpy()[:rows, :cols])):
        writer.line(f"{label} = [", 1)
        for row in ids:
            numbers = ", ".join(f"{i:>{width}d}" for i in row.tolist()) + (", …" if more else "")
            text = json.dumps(tokenizer.decode(row), ensure_ascii=False)  # quoted, with \n shown as \n
            writer.line(f"[{numbers}],  # {text[:-1]}{more}\"", 3)
        if rows < B:
            writer.line("…", 3)
        writer.line("]", 1)
    writer.say("shown" if (rows, cols) != (B, T) else "shown_all", rows=rows, B=B, cols=cols, T=T)
    writer.line()


def _print_forward(writer, model, tokenizer, X, Y, logits, loss):
    """Sample 0, position 0 of the forward pass, then the mean loss; returns the numbers shown."""
    writer.say("forward_title", 0)
    V = logits.shape[-1]
    writer.say("logits_shape", shape=list(logits.shape), V=V)
    x_id, y_id = int(X.numpy()[0, 0]), int(Y.numpy()[0, 0])
    writer.say("position", x_id=x_id, x_char=_char(tokenizer, x_id), y_id=y_id, y_char=_char(tokenizer, y_id))
    token_vector = to_device(model.transformer.wte.weight.data[x_id, :3], "cpu")  # the first 3 of C numbers
    position_vector = to_device(model.transformer.wpe.weight.data[0, :3], "cpu")
    writer.say("embedding", x_id=x_id, tok=", ".join(f"{v:+.4f}" for v in token_vector.tolist()),
          pos=", ".join(f"{v:+.4f}" for v in position_vector.tolist()), C=model.config.n_embd,
          n_layer=model.config.n_layer, V=V)
    scores_all = to_device(logits.data, "cpu").astype(np.float64)                  # (B, T, V)
    log_probs = scores_all - scores_all.max(axis=-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(axis=-1, keepdims=True))             # log softmax, (B, T, V)
    scores, probs = scores_all[0, 0], np.exp(log_probs[0, 0])                      # (V,), (V,)
    order = np.argsort(-scores, kind="stable")                                     # ids, largest score first
    top = [(int(i), float(scores[i]), float(probs[i])) for i in order[:TOP_K]]
    writer.say("top_header", k=TOP_K, V=V)
    for rank, (i, score, p) in enumerate(top, start=1):
        writer.say("top_row", 2, rank=rank, char=_char(tokenizer, i), id=i, score=f"{score:+.4f}", p=_p(p),
              mark=writer.text("is_target") if i == y_id else "")
    p_correct = float(probs[y_id])
    rank = int(np.flatnonzero(order == y_id)[0]) + 1
    writer.say("target", char=_char(tokenizer, y_id), id=y_id, score=f"{scores[y_id]:+.4f}", rank=rank, V=V,
          p=_p(p_correct))
    writer.say("ideal", others=V - 1)
    position_loss = -math.log(p_correct)
    writer.say("position_loss", p=f"{p_correct:.4f}", loss=f"{position_loss:.4f}")
    B, T = X.shape
    recomputed = float(-np.take_along_axis(log_probs, Y.numpy()[..., None], axis=-1).mean())
    writer.say("mean_loss", n=B * T, loss=f"{loss.item():.4f}", check=f"{recomputed:.4f}")
    writer.say("faq1", V=V, ln_v=f"{math.log(V):.4f}")
    writer.line()
    return dict(x_id=x_id, y_id=y_id, top=top, p_correct=p_correct, target_rank=rank, position_loss=position_loss)


def _print_accumulation(writer, weight, micro_losses, running, steps, mean_loss):
    writer.say("accum_title", 0)
    writer.say("accum_many" if steps > 1 else "accum_one", steps=steps)
    writer.say("accum_weight", steps=steps, **weight)
    columns = ("col_step", "col_loss", "col_scaled", "col_added", "col_running")
    header = [writer.text(key, steps=steps) for key in columns]
    rows = [[str(k + 1), f"{loss:.4f}", f"{loss / steps:.4f}", _e(grad - (running[k - 1] if k else 0.0)), _e(grad)]
            for k, (loss, grad) in enumerate(zip(micro_losses, running))]
    for line in _table([header] + rows):
        writer.line(line, 2)
    if steps > 1:
        writer.say("accum_total", terms=" + ".join(f"{loss:.4f}" for loss in micro_losses), steps=steps,
                   loss=f"{mean_loss:.4f}")
    writer.line()


def _print_backward(writer, config, model, weight, shape, value, loss, grad):
    writer.say("backward_title", 0)
    writer.say("chain", n_layer=config.n_layer, n_params=f"{model.num_parameters():,}")
    writer.say("weight", shape=shape, **weight)
    writer.say("value", w=_w(value))
    writer.say("loss_now", loss=f"{loss:.4f}")
    writer.say("grad", grad=_e(grad))
    if grad == 0:
        writer.say("grad_zero")
    else:
        writer.say("grad_negative" if grad < 0 else "grad_positive")
        writer.say("estimate", delta=_e(grad * 0.001))
        writer.say("descent_up" if grad < 0 else "descent_down")
    writer.line()


def _print_clipping(writer, config, grad_norm, entries, clipped_norm):
    """The norm, the threshold and the factor clip_grad_norm_ applied (None when clipping is off)."""
    writer.say("norm", n=f"{entries:,}", norm=f"{grad_norm:.4f}")
    if config.grad_clip == 0.0:
        writer.say("clip_off")
        return None
    writer.say("threshold", clip=config.grad_clip)
    factor = float(clip_factor(np, grad_norm, config.grad_clip))  # what clip_grad_norm_ multiplied by
    if factor < 1.0:
        writer.say("scale", clip=config.grad_clip, norm=f"{grad_norm:.4f}", factor=f"{factor:.4f}",
                   new_norm=f"{clipped_norm:.4f}")
    else:
        writer.say("no_scale", clip=config.grad_clip, norm=f"{grad_norm:.4f}")
    return factor


def _print_update(writer, group, weight, update):
    """AdamW on the watched entry (of parameter group `group`), every number from optimizer.last_update()."""
    writer.say("update_title", 0)
    beta1, beta2 = group["betas"]
    t = update["step"]
    history = writer.text("history_first") if t == 1 else writer.text("history_resumed", earlier=t - 1)
    writer.say("hyper", t=t, history=history, lr=_lr(update["lr"]), b1=beta1, b2=beta2, eps=group["eps"],
               wd=update["weight_decay"], group=weight["group"])
    writer.say("read")
    writer.say("g", 2, g=_e(update["grad"]))
    # m and v before this update: 0 at the first one (m_0 = v_0 = 0), a resumed run's saved values after
    m_before, v_before = ("0", "0") if t == 1 else (_e(update["m_before"]), _e(update["v_before"]))
    writer.say("m", 2, b1=beta1, c1=f"{1 - beta1:g}", m_before=m_before, m=_e(update["m"]))
    writer.say("v", 2, b2=beta2, c2=f"{1 - beta2:g}", v_before=v_before, v=_e(update["v"]))
    writer.say("m_hat", 2, d1=f"{1 - beta1 ** t:g}", m_hat=_e(update["m_hat"]))
    writer.say("v_hat", 2, d2=f"{1 - beta2 ** t:g}", v_hat=_e(update["v_hat"]))
    writer.say("wd_term", 2, term=_e(update["weight_decay_term"]))
    writer.say("adam_term", 2, term=_e(update["adam_term"]))
    writer.say("new", 2, old=_w(update["old"]), wd_term=_e(update["weight_decay_term"]),
               adam_term=_e(update["adam_term"]), new=_w(update["new"]))
    if t == 1 and update["lr"] > 0:
        writer.say("first_step", multiple=f"{update['adam_term'] / update['lr']:+.4f}")
    writer.line()


def _print_lr(writer, config, lr, iter_num):
    writer.say("lr_title", 0)
    if not config.decay_lr:
        writer.say("lr_constant", lr=_lr(lr))
    elif iter_num < config.warmup_iters:
        writer.say("lr_warmup", it=iter_num, warmup=config.warmup_iters, peak=f"{config.learning_rate:g}",
                   it1=iter_num + 1, w1=config.warmup_iters + 1, lr=_lr(lr))
        if iter_num == 0:   # the why speaks of the first gradients
            writer.say("lr_warmup_why", peak=f"{config.learning_rate:g}", warmup=config.warmup_iters,
                       min_lr=f"{config.min_lr:g}", decay_iters=config.decay_iters)
    elif iter_num == 0:
        writer.say("lr_no_warmup", lr=_lr(lr))
    else:
        writer.say("lr_decay", it=iter_num, warmup=config.warmup_iters, peak=f"{config.learning_rate:g}",
                   min_lr=f"{config.min_lr:g}", decay_iters=config.decay_iters, lr=_lr(lr))
    writer.line()


def _print_health(writer, config, optimizer, params, weights_before, grad_norm, lr):
    """Part 5's checks: the gradient norm, and ‖Δp‖/‖p‖ per optimizer group and as train()'s log line has it."""
    writer.say("health_title", 0)
    low, high = HEALTHY_NORM
    verdict = "norm_small" if grad_norm < low else "norm_large" if grad_norm > high else "norm_ok"
    writer.say("health_norm", norm=f"{grad_norm:.4f}", verdict=writer.text(verdict))
    writer.say("health_intro")
    before = {id(p): old for p, old in zip(params, weights_before)}
    xp = params[0].xp
    ratios = {}
    warmup_share = lr / config.learning_rate if config.decay_lr and config.warmup_iters > 0 else None
    for key, group in zip(("decay", "no_decay"), optimizer.param_groups):
        if not group["params"]:
            continue
        size = math.sqrt(sum(float(xp.linalg.norm(before[id(p)])) ** 2 for p in group["params"]))      # ‖p‖
        step = math.sqrt(sum(float(xp.linalg.norm(p.data - before[id(p)])) ** 2 for p in group["params"]))  # ‖Δp‖
        ratio = step / size if size > 0 else None
        ratios[key] = ratio
        writer.say("health_row", 2, group=writer.text("group_" + key), count=len(group["params"]),
                   entries=f"{sum(p.size for p in group['params']):,}", wd=group["weight_decay"],
                   ratio="-" if ratio is None else f"{ratio:.2e}", verdict=_ratio_verdict(writer, ratio, warmup_share))
    log_ratio = update_ratio(params, weights_before)  # the number on train()'s log line
    nonzero = sum(1 for old in weights_before if float(xp.linalg.norm(old)) > 0)
    writer.say("ratio_log", ratio=f"{log_ratio:.1e}", n=nonzero)
    writer.line()
    return ratios, log_ratio


def _ratio_verdict(writer, ratio, warmup_share):
    """Part 5's verdict on ‖Δp‖/‖p‖; warmup_share is lr / learning_rate during the warmup, else None."""
    low, high = HEALTHY_RATIO
    if ratio is None:
        return writer.text("ratio_none")
    if ratio < low:
        return writer.text("ratio_small") if warmup_share is None else \
            writer.text("ratio_small_warmup", percent=f"{warmup_share:.2%}")
    return writer.text("ratio_large" if ratio > high else "ratio_ok")


# ---- formatting: one format per kind of number, so every section shows a value the same way ----

def _char(tokenizer, i):
    """A character as Python writes it: 'e', ' ', '\\n'."""
    return repr(tokenizer.chars[i])


def _p(p):
    return f"{p:.4f} ({p:.2%})"


def _e(x):
    """Gradients, moments and update terms: small numbers of any size."""
    return f"{x:+.4e}"


def _w(x):
    """A weight's value: enough decimals to see a step of about lr."""
    return f"{x:+.8f}"


def _lr(x):
    return f"{x:.3e}"


def _table(rows):
    """Rows of cells as aligned lines; a wide (CJK) character counts as two columns."""
    def width(text):
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    widths = [max(width(row[k]) for row in rows) for k in range(len(rows[0]))]
    return ["   ".join(cell + " " * (widths[k] - width(cell)) for k, cell in enumerate(row)).rstrip()
            for row in rows]
