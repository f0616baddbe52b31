"""Causal depthwise convolution + SiLU on CPU: a torch.autograd.Function around the numba kernels."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from reid.models.mamba import conv_kernel
from reid.models.mamba.kernel_io import as_array, compute_dtype, run_items
from reid.models.mamba.scan import DEFAULT_BLOCK


class CausalConvSiluFn(torch.autograd.Function):
    """Forward and hand-written backward of :func:`causal_conv1d_silu`."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, block: int) -> Tensor:
        dtype = compute_dtype(x, weight, bias)
        width = x.shape[2]
        xa = as_array(x, dtype)
        wt = as_array(weight[:, 0, :].t(), dtype)
        ba = as_array(bias, dtype) if bias is not None else torch.zeros(width, dtype=dtype).numpy()
        out = torch.empty(x.shape, dtype=dtype)
        items = x.shape[0] * math.ceil(width / block)
        run_items(conv_kernel.conv_silu_forward, items, xa, wt, ba, out.numpy(), block)
        ctx.save_for_backward(torch.from_numpy(xa), torch.from_numpy(wt), torch.from_numpy(ba))
        ctx.block = block
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, wt, bias = ctx.saved_tensors
        nbatch, _, width = x.shape
        gout = grad_out.detach().to(x.dtype).contiguous()
        gx = torch.empty_like(x)
        gw = torch.empty(nbatch, wt.shape[0], width, dtype=x.dtype)
        gb = torch.empty(nbatch, width, dtype=x.dtype)
        items = nbatch * math.ceil(width / ctx.block)
        run_items(conv_kernel.conv_silu_backward, items, x.numpy(), wt.numpy(), bias.numpy(), gout.numpy(),
                  gx.numpy(), gw.numpy(), gb.numpy(), ctx.block)
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        grad_w = gw.sum(0).t().unsqueeze(1).to(w_dtype)
        grad_b = gb.sum(0).to(b_dtype) if b_dtype is not None else None
        return gx.to(x_dtype), grad_w, grad_b, None


def causal_conv1d_silu(x: Tensor, weight: Tensor, bias: Tensor | None = None, *, block: int = DEFAULT_BLOCK) -> Tensor:
    """``silu(conv(x))`` for a causal depthwise convolution over time, channels-last, on CPU.

    ``x: [Bsz, L, D]``, ``weight: [D, 1, K]`` and ``bias: [D]`` as in ``nn.Conv1d(D, D, K, groups=D,
    padding=K - 1)``: ``a_t = bias + sum_k weight[:, 0, k] * x_{t - K + 1 + k}`` (zeros before the start).
    Returns ``[Bsz, L, D]``.
    """
    if x.dim() != 3 or weight.dim() != 3 or weight.shape[0] != x.shape[2] or weight.shape[1] != 1:
        raise ValueError(f"causal_conv1d_silu: x must be [Bsz, L, D] and weight [D, 1, K]; got x "
                         f"{tuple(x.shape)}, weight {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (x.shape[2],):
        raise ValueError(f"causal_conv1d_silu: bias must be [D={x.shape[2]}]; got {tuple(bias.shape)}")
    return CausalConvSiluFn.apply(x, weight, bias, block)
