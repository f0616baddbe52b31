"""Mamba's selective scan on CPU: a torch.autograd.Function around the fused numba kernels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from reid.models.mamba import scan_kernel
from reid.models.mamba.kernel_io import as_array, compute_dtype, kernel_threads, run_items

DEFAULT_CHUNK = 32
"""Time steps between stored states; the backward pass recomputes one chunk at a time."""
DEFAULT_BLOCK = 256
"""Channels per work item; the innermost (vectorised) loop runs over them."""


def _check_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
                  z: Tensor | None, delta_bias: Tensor | None) -> None:
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be [Bsz, L, Din]; got shape {tuple(u.shape)}")
    nbatch, length, width = u.shape
    if A.dim() != 2 or A.shape[0] != width:
        raise ValueError(f"selective_scan: A must be [Din={width}, N]; got shape {tuple(A.shape)}")
    expected = {"delta": (nbatch, length, width), "z": (nbatch, length, width), "B": (nbatch, length, A.shape[1]),
                "C": (nbatch, length, A.shape[1]), "D": (width,), "delta_bias": (width,)}
    given = {"delta": delta, "z": z, "B": B, "C": C, "D": D, "delta_bias": delta_bias}
    for name, tensor in given.items():
        if tensor is not None and tuple(tensor.shape) != expected[name]:
            raise ValueError(f"selective_scan: {name} must have shape {expected[name]}; got {tuple(tensor.shape)}")


class SelectiveScanFn(torch.autograd.Function):
    """Forward and hand-written backward of :func:`selective_scan` (see there for shapes).

    Computes in float64 when any input is float64, else float32. Saved for backward (only when ``track``,
    i.e. grad mode is on and an input requires grad): the inputs, ``dt`` and the state every ``chunk``
    steps, ``[Bsz, ceil(L / chunk), N, Din]``; never ``[Bsz, L, Din, N]``.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk, block, track):
        dtype = compute_dtype(u, delta, A, B, C, D, z, delta_bias)
        nbatch, length, width = u.shape
        nstate = A.shape[1]
        x = delta.detach().to(dtype)
        if delta_bias is not None:
            x = x + delta_bias.detach().to(dtype)
        dt = F.softplus(x) if delta_softplus else x.contiguous()
        arrays = {
            "u": as_array(u, dtype), "dt": as_array(dt, dtype), "At": as_array(A.t(), dtype),
            "B": as_array(B, dtype), "C": as_array(C, dtype),
            "D": as_array(D, dtype) if D is not None else torch.zeros(width, dtype=dtype).numpy(),
            "z": as_array(z, dtype) if z is not None else torch.empty(0, 0, 0, dtype=dtype).numpy(),
        }
        needs_grad = track and any(ctx.needs_input_grad[:8])
        ckpt = torch.empty((nbatch, math.ceil(length / chunk), nstate, width) if needs_grad else (0, 0, 0, 0),
                           dtype=dtype)
        out = torch.empty(nbatch, length, width, dtype=dtype)
        items = nbatch * math.ceil(width / block)
        run_items(scan_kernel.scan_forward, items, *arrays.values(), out.numpy(), ckpt.numpy(), chunk, block)
        if needs_grad:
            ctx.save_for_backward(*(torch.from_numpy(a) for a in arrays.values()), ckpt)
            ctx.settings = (bool(delta_softplus), chunk, block)
            ctx.present = (D is not None, z is not None, delta_bias is not None)
            ctx.dtypes = tuple(None if t is None else t.dtype for t in (u, delta, A, B, C, D, z, delta_bias))
        return out.to(u.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        u, dt, At, B, C, D, z, ckpt = ctx.saved_tensors
        softplus, chunk, block = ctx.settings
        nbatch, length, width = u.shape
        nstate = At.shape[0]
        ngroups = min(math.ceil(width / block), max(1, math.ceil(4 * kernel_threads() / nbatch)))
        gout = grad_out.detach().to(u.dtype).contiguous()
        gu, gdelta = torch.empty_like(u), torch.empty_like(u)
        gz = torch.empty_like(z)
        gA = torch.empty(nbatch, nstate, width, dtype=u.dtype)
        gD = torch.empty(nbatch, width, dtype=u.dtype)
        gB = torch.zeros(nbatch, ngroups, length, nstate, dtype=u.dtype)
        gC = torch.zeros_like(gB)
        run_items(
            scan_kernel.scan_backward, nbatch * ngroups,
            *(t.numpy() for t in (u, dt, At, B, C, D, z, ckpt, gout)), softplus, chunk, block, ngroups,
            *(t.numpy() for t in (gu, gdelta, gz, gA, gB, gC, gD)),
        )
        has_d, has_z, has_bias = ctx.present
        grads = (gu, gdelta, gA.sum(0).t(), gB.sum(1), gC.sum(1), gD.sum(0) if has_d else None,
                 gz if has_z else None, gdelta.sum((0, 1)) if has_bias else None)
        wanted = ctx.needs_input_grad[:8]
        grads = [g.to(dtype) if need and g is not None else None
                 for g, need, dtype in zip(grads, wanted, ctx.dtypes, strict=True)]
        return (*grads, None, None, None, None)


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = True,
    *,
    chunk: int = DEFAULT_CHUNK,
    block: int = DEFAULT_BLOCK,
) -> Tensor:
    """Mamba's selective scan on CPU (mamba-ssm's ``selective_scan_fn`` maths), channels-last.

    ``u, delta, z: [Bsz, L, Din]``, ``A: [Din, N]``, ``B, C: [Bsz, L, N]``, ``D, delta_bias: [Din]`` ->
    ``[Bsz, L, Din]``. With ``dt = softplus(delta + delta_bias)``: ``h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t``,
    ``out_t = (C_t . h_t + D u_t) * silu(z_t)``; equal to :func:`selective_scan_reference`.
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    if chunk < 1 or block < 1:
        raise ValueError(f"selective_scan: chunk and block must be >= 1; got chunk={chunk}, block={block}")
    tensors = (u, delta, A, B, C, D, z, delta_bias)
    track = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    return SelectiveScanFn.apply(*tensors, delta_softplus, chunk, block, track)
