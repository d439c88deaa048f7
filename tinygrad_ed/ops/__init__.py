"""The ops: one Function per operation, forward and backward side by side, grouped by kind.

elementwise  + - * / neg pow exp log sqrt tanh relu where cast
reduce       sum max
matmul       batched, broadcasting matrix product
movement     reshape permute getitem cat stack
activations  gelu softmax log_softmax
layers       linear cross_entropy layer_norm embedding dropout attention
"""
