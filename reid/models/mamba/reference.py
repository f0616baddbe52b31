"""Sequential reference selective scan (pure PyTorch, a loop over time); the ground truth for the fast kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def selective_scan_reference(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = True,
) -> Tensor:
    """Mamba's selective scan, one time step at a time, in the dtype of ``u`` (use float64 for checks).

    Channels-last layout: ``u, delta, z: [Bsz, L, Din]``, ``A: [Din, N]``, ``B, C: [Bsz, L, N]``,
    ``D, delta_bias: [Din]``. With ``dt = softplus(delta + delta_bias)``:
    ``h_t = exp(dt_t A) * h_{t-1} + dt_t u_t B_t`` (``h: [Bsz, Din, N]``, ``h_0 = 0``),
    ``y_t = h_t C_t + D u_t``, output ``y_t * silu(z_t)``. Returns ``[Bsz, L, Din]``; differentiable.
    """
    dt = delta if delta_bias is None else delta + delta_bias
    if delta_softplus:
        dt = F.softplus(dt)
    state = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    outputs = []
    for t in range(u.shape[1]):
        decay = torch.exp(dt[:, t, :, None] * A)
        state = decay * state + (dt[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        outputs.append((state * C[:, t, None, :]).sum(-1))
    y = torch.stack(outputs, dim=1)
    if D is not None:
        y = y + u * D
    if z is not None:
        y = y * F.silu(z)
    return y
