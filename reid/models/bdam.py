"""Bidirectional Decoupling Alignment Module: identity and clothing branches, cross-attention, gate (paper 3.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class BdamOutput:
    """What BDAM hands on. Shapes: B batch, L tokens, D width.

    ``id_tokens`` ``[B, L, D]``: identity tokens times the gate, broadcast over L (what fusion reads).
    ``f_id``, ``f_clo`` ``[B, D]``: the pooled branches (the paper's hat f_id, hat f_clo).
    ``f_id_gate = g * f_id``, ``f_clo_gate = (1 - g) * f_clo`` ``[B, D]``; ``gate`` is g, None without a gate.
    """

    id_tokens: torch.Tensor
    f_id: torch.Tensor
    f_clo: torch.Tensor
    f_id_gate: torch.Tensor
    f_clo_gate: torch.Tensor
    gate: torch.Tensor | None


class PreNormAttention(nn.Module):
    """``x + Dropout(MHA(LN(x), LN_c(c), LN_c(c)))``; self-attention when ``cross=False`` (c = x)."""

    def __init__(self, dim: int, heads: int, dropout: float, cross: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.context_norm = nn.LayerNorm(dim) if cross else None
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, L, D]``, ``context [B, S, D]`` (cross only) -> ``[B, L, D]``."""
        query = self.norm(x)
        if self.context_norm is None:
            keys = query
        else:
            if context is None:
                raise ValueError("cross-attention needs a context sequence")
            keys = self.context_norm(context)
        out, _ = self.attn(query, keys, keys, need_weights=False)
        return x + self.dropout(out)


class PreNormFeedForward(nn.Module):
    """``x + Dropout(W2 Dropout(GELU(W1 LN(x))))``."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, dim), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class BdamBlock(nn.Module):
    """One block: per branch self-attention, then bidirectional cross-attention, then feed-forward.

    Cross-attention is simultaneous: identity queries the clothing tokens and clothing queries the
    identity tokens, both as they were after self-attention.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, cross_attention: bool) -> None:
        super().__init__()
        self.id_self = PreNormAttention(dim, heads, dropout, cross=False)
        self.clo_self = PreNormAttention(dim, heads, dropout, cross=False)
        self.id_cross = PreNormAttention(dim, heads, dropout, cross=True) if cross_attention else None
        self.clo_cross = PreNormAttention(dim, heads, dropout, cross=True) if cross_attention else None
        self.id_ffn = PreNormFeedForward(dim, ffn_dim, dropout)
        self.clo_ffn = PreNormFeedForward(dim, ffn_dim, dropout)

    def forward(self, x_id: torch.Tensor, x_clo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_id, x_clo [B, L, D]`` -> updated ``(x_id, x_clo)``."""
        x_id, x_clo = self.id_self(x_id), self.clo_self(x_clo)
        if self.id_cross is not None and self.clo_cross is not None:
            x_id, x_clo = self.id_cross(x_id, x_clo), self.clo_cross(x_clo, x_id)
        return self.id_ffn(x_id), self.clo_ffn(x_clo)


class Bdam(nn.Module):
    """Decouple image tokens into identity and clothing features (paper 3.2).

    ``f'_id = W_id f_i``, ``f'_clo = W_clo f_i``; N blocks; final LayerNorm and global average pooling
    give hat f_id, hat f_clo ``[B, D]``; ``g = sigmoid(W_g [hat f_id; hat f_clo] + b_g)`` ``[B, D]``;
    ``f_id_gate = g * hat f_id``, ``f_clo_gate = (1 - g) * hat f_clo``. With ``gate=False``, g = 1 for the
    identity side and ``f_clo_gate = hat f_clo``.
    """

    def __init__(
        self,
        dim: int,
        blocks: int = 4,
        heads: int = 8,
        ffn_ratio: float = 4.0,
        dropout: float = 0.1,
        cross_attention: bool = True,
        gate: bool = True,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"BDAM width {dim} is not divisible by bdam.heads={heads}")
        self.to_identity = nn.Linear(dim, dim)
        self.to_clothing = nn.Linear(dim, dim)
        ffn_dim = max(1, round(dim * ffn_ratio))
        self.blocks = nn.ModuleList(
            BdamBlock(dim, heads, ffn_dim, dropout, cross_attention) for _ in range(blocks)
        )
        self.id_norm = nn.LayerNorm(dim)
        self.clo_norm = nn.LayerNorm(dim)
        self.gate = nn.Linear(2 * dim, dim) if gate else None

    def forward(self, tokens: torch.Tensor) -> BdamOutput:
        """``tokens [B, L, D]`` (encoder output) -> :class:`BdamOutput`."""
        x_id, x_clo = self.to_identity(tokens), self.to_clothing(tokens)
        for block in self.blocks:
            x_id, x_clo = block(x_id, x_clo)
        x_id, x_clo = self.id_norm(x_id), self.clo_norm(x_clo)
        f_id, f_clo = x_id.mean(dim=1), x_clo.mean(dim=1)
        if self.gate is None:
            return BdamOutput(x_id, f_id, f_clo, f_id, f_clo, None)
        g = torch.sigmoid(self.gate(torch.cat([f_id, f_clo], dim=-1)))
        return BdamOutput(x_id * g.unsqueeze(1), f_id, f_clo, g * f_id, (1 - g) * f_clo, g)
