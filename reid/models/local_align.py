"""Local concept alignment (SAP-SAM, supplementary section 5 and Table 6): body-part phrases against the image
regions their parts cover, by one of four aggregations.

Inputs per image: patch tokens ``[B, L, D]``, a soft mask per part class ``[B, C, L]`` (the share of each patch
the part covers), and per part class the phrase's tokens ``[B, C, T, Dt]`` with their mask ``[B, C, T]``. A
part is *present* for image b when its mask covers some patch and it has a phrase.

- ``avgpool``: ``f_v^i = avgPool(f_v^i)``, ``f_t^i = avgPool(f_t^i)`` (mask-weighted means), projected.
- ``conv1d``: a 1-d convolution over the (projected) token sequence in place of the average, then the same
  masked mean over its outputs (the supplementary gives no more than "instead of average pooling").
- ``mhsa``: ``f_v^i = MHSA([v, f_v^i])``, ``f_t^i = MHSA([t, f_t^i])`` with learnable tokens ``v``, ``t``; the
  output at the learnable token is the local feature (tokens outside the part are masked out of the keys).
- ``elca``: **a reconstruction** (the main SAP-SAM paper, which defines ELCA, is not available here). The
  supplementary says ELCA aligns explicitly at the token level, "interacting with fine-grained features" and
  without pooling before matching, and beats MHSA (which pools through a learnable token). So here each phrase
  token attends over the part's region tokens (multi-head cross-attention, ``MCA(f_t^i, f_v^i, f_v^i)``), and
  the score of an (image, phrase) pair is the mean over phrase tokens of the cosine between the token and what
  it gathered from the region, a late interaction computed for every pair of the batch's present parts of the
  class. Replace :class:`ElcaScorer` when the definition is known; the loss only needs its pair scores.

Every kind returns pair scores ``[C][P_c, P_c]`` over the present parts of each class (row: image, column:
phrase), which :func:`reid.losses.local.local_alignment_loss` turns into InfoNCE.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOCAL_ALIGN_KINDS = ("none", "avgpool", "conv1d", "mhsa", "elca")


@dataclass
class PartScores:
    """Per part class: the batch rows where the part is present ``[P_c]`` and their pair scores ``[P_c, P_c]``
    (cosine similarities; row i's image against column j's phrase). ``positives`` (optional, bool ``[P_c, P_c]``
    per class) marks the pairs that count as matches besides the diagonal: two images of one outfit carry the
    same phrase, so neither should be pushed from the other's phrase."""

    rows: list[Tensor]
    scores: list[Tensor]
    positives: list[Tensor] | None = field(default=None)


def present_parts(part_masks: Tensor, phrase_mask: Tensor) -> Tensor:
    """``[B, C]`` bool: the part covers some patch and has a phrase token."""
    return (part_masks.sum(-1) > 0) & phrase_mask.bool().any(-1)


def _masked_mean(x: Tensor, weights: Tensor) -> Tensor:
    """``x [..., N, E]`` averaged with ``weights [..., N]`` -> ``[..., E]`` (zeros when the weights are)."""
    weights = weights.to(x.dtype)
    return (x * weights.unsqueeze(-1)).sum(-2) / weights.sum(-1, keepdim=True).clamp_min(1e-6)


class _PerClassScorer(nn.Module):
    """Projects patch and phrase tokens to ``dim`` and scores, class by class, every pair of the batch's present
    parts with :meth:`class_scores` (a class with fewer than two present parts gets an empty or 1 x 1 zero block:
    nothing to contrast)."""

    def __init__(self, image_dim: int, text_dim: int, dim: int) -> None:
        super().__init__()
        self.image_proj, self.text_proj = nn.Linear(image_dim, dim), nn.Linear(text_dim, dim)

    def class_scores(self, region: Tensor, weights: Tensor, phrases: Tensor, phrase_mask: Tensor) -> Tensor:
        """``[P, P]`` scores of image i (``region [P, L, dim]``, its part's patch ``weights [P, L]``) against
        phrase j (``phrases [P, T, dim]``, ``phrase_mask [P, T]``)."""
        raise NotImplementedError

    def forward(self, patch_tokens: Tensor, part_masks: Tensor, phrase_tokens: Tensor, phrase_mask: Tensor
                ) -> PartScores:
        present = present_parts(part_masks, phrase_mask)
        image, text = self.image_proj(patch_tokens), self.text_proj(phrase_tokens)
        rows, scores = [], []
        for c in range(part_masks.shape[1]):
            idx = present[:, c].nonzero().flatten()
            rows.append(idx)
            if len(idx) < 2:  # no pair to contrast: no term (see local_alignment_loss)
                scores.append(patch_tokens.new_zeros(len(idx), len(idx)))
            else:
                scores.append(self.class_scores(image[idx], part_masks[idx, c], text[idx, c], phrase_mask[idx, c]))
        return PartScores(rows, scores)


class PooledAligner(_PerClassScorer):
    """``avgpool``, ``conv1d`` or ``mhsa``: one local feature per (image, part) and per (phrase, part), projected
    to ``dim``; scores are their cosines."""

    def __init__(self, kind: str, image_dim: int, text_dim: int, dim: int = 256, heads: int = 4) -> None:
        super().__init__(image_dim, text_dim, dim)
        if kind not in ("avgpool", "conv1d", "mhsa"):
            raise ValueError(f"pooled local alignment kind must be avgpool, conv1d or mhsa, got {kind!r}")
        self.kind = kind
        if kind == "conv1d":
            self.image_conv = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
            self.text_conv = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        if kind == "mhsa":
            self.image_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
            self.text_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
            self.image_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
            self.text_attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def aggregate(self, tokens: Tensor, weights: Tensor, side: str) -> Tensor:
        """``tokens [N, S, dim]`` with ``weights [N, S]`` (0 outside the part) -> ``[N, dim]``."""
        if self.kind == "avgpool":
            return _masked_mean(tokens, weights)
        if self.kind == "conv1d":
            conv = self.image_conv if side == "image" else self.text_conv
            out = F.gelu(conv((tokens * weights.unsqueeze(-1)).transpose(1, 2))).transpose(1, 2)
            return _masked_mean(out, weights)
        token = (self.image_token if side == "image" else self.text_token).expand(len(tokens), -1, -1)
        attn = self.image_attn if side == "image" else self.text_attn
        keys = torch.cat([token, tokens], dim=1)
        ignore = torch.cat([torch.zeros_like(weights[:, :1], dtype=torch.bool), weights <= 0], dim=1)
        out, _ = attn(keys, keys, keys, key_padding_mask=ignore, need_weights=False)
        return out[:, 0]

    def class_scores(self, region: Tensor, weights: Tensor, phrases: Tensor, phrase_mask: Tensor) -> Tensor:
        v = F.normalize(self.aggregate(region, weights, "image"), dim=-1)
        t = F.normalize(self.aggregate(phrases, phrase_mask.float(), "text"), dim=-1)
        return v @ t.t()


class ElcaScorer(_PerClassScorer):
    """The reconstructed ELCA (module docstring): phrase tokens attend over region tokens, the pair score is
    the mean token-wise cosine between each phrase token and what it gathered. ``[P, P]`` per class."""

    def __init__(self, image_dim: int, text_dim: int, dim: int = 256, heads: int = 4) -> None:
        super().__init__(image_dim, text_dim, dim)
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True)

    def class_scores(self, region: Tensor, weights: Tensor, phrases: Tensor, phrase_mask: Tensor) -> Tensor:
        p = len(region)
        # every phrase j against every image i: queries [P_j x P_i, T, dim] over keys [.., L, dim]
        queries = phrases.unsqueeze(1).expand(p, p, -1, -1).reshape(p * p, *phrases.shape[1:])
        keys = region.unsqueeze(0).expand(p, p, -1, -1).reshape(p * p, *region.shape[1:])
        ignore = (weights <= 0).unsqueeze(0).expand(p, p, -1).reshape(p * p, -1)
        gathered, _ = self.cross(queries, keys, keys, key_padding_mask=ignore, need_weights=False)
        cosine = F.cosine_similarity(queries, gathered, dim=-1)  # [P_j * P_i, T]
        token_mask = phrase_mask.bool().unsqueeze(1).expand(p, p, -1).reshape(p * p, -1)
        pair = _masked_mean(cosine.unsqueeze(-1), token_mask).squeeze(-1).view(p, p)  # [phrase j, image i]
        return pair.t()  # [image i, phrase j]


def build_local_aligner(kind: str, image_dim: int, text_dim: int, dim: int = 256, heads: int = 4) -> nn.Module | None:
    """The aligner of ``model.local_align.kind`` (None for ``none``)."""
    if kind not in LOCAL_ALIGN_KINDS:
        raise ValueError(f"local alignment kind must be one of {LOCAL_ALIGN_KINDS}, got {kind!r}")
    if kind == "none":
        return None
    if kind == "elca":
        return ElcaScorer(image_dim, text_dim, dim, heads)
    return PooledAligner(kind, image_dim, text_dim, dim, heads)
