"""Batch-hard triplet loss on identity features (eq. 4)."""

from __future__ import annotations

import torch
from torch import Tensor

from reid.losses.checks import as_float, check_matrix, check_pids


def squared_distances(x: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances ``||x_i - x_j||^2`` of x [N, D] as [N, N] (clamped at 0)."""
    sq = (x * x).sum(dim=1)
    return (sq.view(-1, 1) + sq.view(1, -1) - 2.0 * (x @ x.t())).clamp_min(0.0)


def triplet_batch_hard(features: Tensor, pids: Tensor, margin: float, normalize: bool = False) -> Tensor:
    r"""Batch-hard triplet loss with squared Euclidean distances (eq. 4).

    Eq. 4: :math:`\mathcal{L}_{triplet} = \mathbb{E}_{(a,p,n)}[\max(\|f_a - f_p\|^2 - \|f_a - f_n\|^2 + m, 0)]`.
    Each sample is an anchor a; p is its **hardest positive** (the same identity, a different sample,
    largest distance) and n its **hardest negative** (another identity, smallest distance):

    .. math:: \frac{1}{|A|}\sum_{a \in A} \max(\max_{p} d_{ap} - \min_{n} d_{an} + m, 0)

    Anchors with no other sample of their identity, or with no sample of another identity, are
    excluded from A; when A is empty the loss is 0 (attached to the graph). Features are used as given, or
    L2-normalised first with ``normalize`` (squared distances then lie in [0, 4], on the scale of the margin).
    The batch sampler must deliver P identities x K >= 2 samples.

    features: [B, D]; pids: [B] integer identities. Returns a float32 scalar (float64 for float64 input).
    """
    check_matrix("triplet_batch_hard", "features", features)
    check_pids("triplet_batch_hard", pids, features.shape[0])
    x = as_float(features)
    dist = squared_distances(torch.nn.functional.normalize(x, dim=1) if normalize else x)
    same = pids.view(-1, 1) == pids.view(1, -1)
    eye = torch.eye(len(pids), dtype=torch.bool, device=features.device)
    positive = same & ~eye
    negative = ~same
    anchors = positive.any(dim=1) & negative.any(dim=1)
    if not bool(anchors.any()):
        return as_float(features).sum() * 0.0
    hardest_pos = dist.masked_fill(~positive, float("-inf")).amax(dim=1)
    hardest_neg = dist.masked_fill(~negative, float("inf")).amin(dim=1)
    losses = (hardest_pos - hardest_neg + margin).clamp_min(0.0)
    return losses[anchors].mean()
