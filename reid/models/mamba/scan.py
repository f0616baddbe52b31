"""Mamba's selective scan on CPU: a torch.autograd.Function around the fused numba kernels."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from reid.models.mamba import scan_kernel
from reid.models.mamba.kernel_io import TASKS_PER_THREAD, as_array, compute_dtype, kernel_threads, run_items

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
    i.e. grad mode is on and an input requires grad): the inputs and the state every ``chunk`` steps,
    ``[Bsz, ceil(L / chunk), N, Din]``; never ``[Bsz, L, Din, N]``.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk, block, track):
        dtype = compute_dtype(u, delta, A, B, C, D, z, delta_bias)
        nbatch, length, width = u.shape
        nstate = A.shape[1]
        zeros = torch.zeros(width, dtype=dtype).numpy()
        arrays = (
            as_array(u, dtype), as_array(delta, dtype),
            as_array(delta_bias, dtype) if delta_bias is not None else zeros,
            as_array(A.t(), dtype), as_array(B, dtype), as_array(C, dtype),
            as_array(D, dtype) if D is not None else zeros,
            as_array(z, dtype) if z is not None else torch.empty(0, 0, 0, dtype=dtype).numpy(),
        )
        needs_grad = track and any(ctx.needs_input_grad[:8])
        ckpt = torch.empty((nbatch, math.ceil(length / chunk), nstate, width) if needs_grad else (0, 0, 0, 0),
                           dtype=dtype)
        out = torch.empty(nbatch, length, width, dtype=dtype)
        run_items(scan_kernel.scan_forward, nbatch * math.ceil(width / block), *arrays, out.numpy(), ckpt.numpy(),
                  bool(delta_softplus), chunk, block)
        if needs_grad:
            ctx.save_for_backward(*(torch.from_numpy(a) for a in arrays), ckpt)
            ctx.settings = (bool(delta_softplus), chunk, block)
            ctx.dtypes = tuple(None if t is None else t.dtype for t in (u, delta, A, B, C, D, z, delta_bias))
        return out.to(u.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        u, delta, bias, At, B, C, D, z, ckpt = ctx.saved_tensors
        softplus, chunk, block = ctx.settings
        nbatch, length, width = u.shape
        nstate = At.shape[0]
        ngroups = min(math.ceil(width / block), max(1, math.ceil(TASKS_PER_THREAD * kernel_threads() / nbatch)))
        gout = grad_out.detach().to(u.dtype).contiguous()
        gu, gdelta, gz = torch.empty_like(u), torch.empty_like(u), torch.empty_like(z)
        gA = torch.empty(nbatch, nstate, width, dtype=u.dtype)
        gD, gbias = torch.empty(nbatch, width, dtype=u.dtype), torch.empty(nbatch, width, dtype=u.dtype)
        gB = torch.zeros(nbatch, ngroups, length, nstate, dtype=u.dtype)
        gC = torch.zeros_like(gB)
        run_items(
            scan_kernel.scan_backward, nbatch * ngroups,
            *(t.numpy() for t in (u, delta, bias, At, B, C, D, z, ckpt, gout)), softplus, chunk, block, ngroups,
            *(t.numpy() for t in (gu, gdelta, gz, gA, gB, gC, gD, gbias)),
        )
        grads = (gu, gdelta, gA.sum(0).t(), gB.sum(1), gC.sum(1), gD.sum(0), gz, gbias.sum(0))
        grads = [g.to(dtype) if need else None
                 for g, need, dtype in zip(grads, ctx.needs_input_grad[:8], ctx.dtypes, strict=True)]
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
    ``out_t = (C_t . h_t + D u_t) * silu(z_t)``; equal to :func:`selective_scan_reference`. Everything,
    softplus, skip and gate included, runs in the numba kernels (one pass forward, one backward).
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    if chunk < 1 or block < 1:
        raise ValueError(f"selective_scan: chunk and block must be >= 1; got chunk={chunk}, block={block}")
    tensors = (u, delta, A, B, C, D, z, delta_bias)
    track = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    return SelectiveScanFn.apply(*tensors, delta_softplus, chunk, block, track)
