"""Part label maps -> per-patch region weights of each part class (SAP-SAM Table 1 merges), on the model's device."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reid.data.parts import FINE_LABELS, merge_table, origin_labels


def part_coverage(labels: Tensor, patch: tuple[int, int]) -> Tensor:
    """``[B, C, L]`` share of each patch (row-major, as the ViT's tokens) inside each part class's region.

    ``labels`` [B, H, W] holds fine labels (:data:`reid.data.parts.FINE_LABELS`); a class's region is the union
    of its merged fine labels (:data:`reid.data.parts.PART_MERGES`), and it is all zero in an image where the
    class's own label does not occur (a face alone is not a hair region of a bald person).
    """
    if labels.dim() != 3:
        raise ValueError(f"part_labels must be [B, H, W], got {tuple(labels.shape)}")
    b, h, w = labels.shape
    if h % patch[0] or w % patch[1]:
        raise ValueError(f"part_labels {h}x{w} is not a multiple of the patch size {patch}")
    labels = labels.long()
    merge = torch.as_tensor(merge_table(), device=labels.device)  # [F, C]
    one_hot = F.one_hot(labels.clamp(0, len(FINE_LABELS) - 1), len(FINE_LABELS)).float()  # [B, H, W, F]
    regions = (one_hot @ merge).permute(0, 3, 1, 2)  # [B, C, H, W]
    coverage = F.avg_pool2d(regions, kernel_size=patch, stride=patch).flatten(2)  # [B, C, L]
    origin = torch.as_tensor(origin_labels(), device=labels.device)  # [C]
    present = (labels.flatten(1).unsqueeze(-1) == origin).any(1)  # [B, C]
    return coverage * present.unsqueeze(-1).to(coverage.dtype)
