"""The ops: one Function per operation, forward and backward side by side, grouped by kind.

elementwise  + - * / neg pow exp log sqrt tanh sigmoid abs clamp relu where cast
reduce       sum mean max min logsumexp
matmul       batched, broadcasting matrix product (1-D operands as torch.matmul, in tensor.py)
movement     reshape permute getitem expand cat stack
activations  gelu softmax log_softmax
layers       linear cross_entropy (with label smoothing) layer_norm embedding dropout attention

Built in tensor.py from these, so they need no backward of their own: var, std, squeeze, unsqueeze, flatten,
split, tril, triu; argmax, argmin and comparisons give integer or bool tensors outside the graph.
"""
