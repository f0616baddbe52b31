"""A bidirectional Mamba layer: a forward and a reversed selective scan over the real tokens of each row."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reid.models.mamba.mixer import MambaMixerLayer


def reverse_real_tokens(x: Tensor, mask: Tensor) -> Tensor:
    """Reverse each row's real tokens in place of order, padding left where it is.

    ``x [B, L, W]``; ``mask [B, L]`` bool with every row's real tokens first and its padding last. Row b
    with n_b real tokens gets positions ``n_b - 1, ..., 0, n_b, ..., L - 1``; applying it twice is the identity.
    """
    length = x.shape[1]
    positions = torch.arange(length, device=x.device).expand(x.shape[0], length)
    real = mask.sum(1, keepdim=True)
    index = torch.where(positions < real, real - 1 - positions, positions)
    return torch.gather(x, 1, index.unsqueeze(-1).expand_as(x))


class BidirectionalMamba(nn.Module):
    """``fwd(x) + R(bwd(R(x)))`` for ``x [B, L, W]``: two Mamba mixers with their own weights, one scanning
    the sequence left to right and one right to left (R reverses each row's real tokens), as vision
    Mamba models (Vim) do. Every position then depends on every real token of its row.

    A causal scan with padding last never lets padding reach a real token; R keeps padding last for the
    reversed scan, so the output at real positions is independent of how much padding follows. Each
    mixer keeps its own forward paths (CPU kernel, mamba-ssm CUDA kernels, library fallback; see
    :class:`MambaMixerLayer`), so both directions run on whichever the input's device selects.
    """

    def __init__(self, width: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 allow_slow: bool = False) -> None:
        super().__init__()
        options = {"d_state": d_state, "d_conv": d_conv, "expand": expand, "allow_slow": allow_slow}
        self.forward_mixer = MambaMixerLayer(width, **options)
        self.backward_mixer = MambaMixerLayer(width, **options)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x [B, L, W]``, ``mask [B, L]`` bool (real first, padding last) -> ``[B, L, W]``."""
        backward = reverse_real_tokens(self.backward_mixer(reverse_real_tokens(x, mask)), mask)
        return self.forward_mixer(x) + backward
