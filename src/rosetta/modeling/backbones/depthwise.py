"""A depthwise convolution whose CPU weight gradient is computed one kernel row at a time.

oneDNN (3.x, the one torch ships) has a JIT depthwise weight-gradient kernel for 3x3 filters over maps at
least as high as the filter; a 5x5 filter (six of MobileNetV3-large's fifteen blocks), or a 3x3 one over a
lower map, falls back to a GEMM over unfolded patches, 5-15x slower than the forward pass: a fifth of a
training step. The gradient of each 1 x k kernel row is a cheap convolution of its own
(rows that only ever meet padding get zero), so training takes those; forward, the input gradient,
evaluation and export run ``nn.Conv2d``'s own code, and the weights stay ``nn.Conv2d``'s.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def depthwise_weight_grad(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                          stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """The gradient of a depthwise convolution's (C, 1, kh, kw) weight, row by row of the kernel."""
    channels, height = x.shape[1], x.shape[2]
    out_height = grad_out.shape[2]
    kh, kw = weight.shape[2:]
    (sh, sw), (ph, pw) = stride, padding
    grad = torch.zeros_like(weight)  # the weight's strides too: DDP's buckets copy a gradient laid out otherwise
    row_weight = x.new_empty(channels, 1, 1, kw)  # only its shape is read
    for i in range(kh):
        offset = i - ph  # kernel row i meets input row sh * h + offset for output row h
        first = max(0, -(offset // sh))
        last = min(out_height, (height - 1 - offset) // sh + 1)
        if last <= first:
            continue  # a row that only ever meets padding
        rows = x[:, :, sh * first + offset: sh * (last - 1) + offset + 1: sh]
        grad[:, :, i:i + 1] = torch.ops.aten.convolution_backward(
            grad_out[:, :, first:last], rows, row_weight, None, [1, sw], [0, pw], [1, 1], False, [0, 0], channels,
            [False, True, False])[1]
    return grad


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, list(ctx.stride), list(ctx.padding), [1, 1], False, [0, 0],
                weight.shape[0], [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = depthwise_weight_grad(grad_out, x, weight, ctx.stride, ctx.padding)
        return grad_x, grad_w, None, None


def rows_are_faster(kernel_size: tuple[int, int], height: int) -> bool:
    """Where oneDNN has no JIT kernel for the weight gradient (measured in the module docstring)."""
    return kernel_size[0] > 3 or height < kernel_size[0]


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(c, c, k, groups=c, bias=False)``; on the CPU in training, the row-wise weight gradient."""

    def __init__(self, channels: int, kernel_size: int, stride=1, padding: int = 0):
        super().__init__(channels, channels, kernel_size, stride=stride, padding=padding, groups=channels,
                         bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and torch.is_grad_enabled() and self.weight.requires_grad
                and not torch.jit.is_tracing() and not torch.compiler.is_compiling()
                and not torch.is_autocast_enabled("cpu") and rows_are_faster(self.kernel_size, x.shape[2])):
            return _DepthwiseConv.apply(x, self.weight, self.stride, self.padding)
        return super().forward(x)
