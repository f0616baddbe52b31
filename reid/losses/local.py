"""SAP-SAM's losses: local concept alignment (Table 6), InfoNCE between images and phrases of one part class, and
the masked image decoding MSE (Table 4)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def local_alignment_loss(scores: Sequence[Tensor], temperature: float, reference: Tensor,
                         positives: Sequence[Tensor] | None = None) -> Tensor:
    r"""Mean over part classes with at least two present parts of the symmetric InfoNCE on their pair scores:

    .. math::
        \mathcal{L}_{loc} = \frac{1}{|C'|} \sum_{c \in C'}
            \tfrac12 \left[ CE(S_c / \tau, P_c) + CE(S_c^\top / \tau, P_c^\top) \right]

    with :math:`S_c` = ``scores[c]`` ``[P_c, P_c]`` the cosine scores of image i's part c against phrase j's
    (the model's :class:`~reid.models.local_align.PartScores`) and :math:`P_c` its positives: the diagonal (the
    same image), and with ``positives`` (bool ``[P_c, P_c]`` per class) every pair marked there (the same
    phrase), averaged as in eq. 3's multi-positive form (:func:`reid.losses.contrastive.
    multi_positive_cross_entropy`). An image without part c appears in no :math:`S_c`, so it adds no term for
    that part. With no class of two present parts the loss is 0, attached to ``reference``'s graph (so every
    step backpropagates alike).
    """
    from reid.losses.contrastive import multi_positive_cross_entropy

    terms = []
    for c, pair_scores in enumerate(scores):
        if pair_scores.shape[0] < 2:
            continue
        logits = pair_scores.float() / temperature
        matches = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        if positives is not None:
            matches = matches | positives[c].to(logits.device)
        terms.append(0.5 * (multi_positive_cross_entropy(logits, matches)
                            + multi_positive_cross_entropy(logits.t(), matches.t())))
    if not terms:
        return reference.float().sum() * 0.0
    return torch.stack(terms).mean()


def masked_patch_mse(predicted: Tensor, targets: Tensor, masked: Tensor) -> Tensor:
    r"""Mean over masked patches of the per-patch MSE (SAP-SAM's :math:`\ell_{MSE}` of :math:`L_{dec-i}`):

    .. math:: \mathcal{L}_{dec} = \frac{\sum_{b,l} m_{bl} \, \lVert \hat x_{bl} - x_{bl} \rVert^2 / d}{\sum m_{bl}}

    ``predicted``, ``targets`` [B, L, d] (d = 3 p^2, MAE-normalised pixels), ``masked`` [B, L] bool.
    """
    error = F.mse_loss(predicted.float(), targets.float(), reduction="none").mean(-1)
    mask = masked.to(error.dtype)
    return (error * mask).sum() / mask.sum().clamp_min(1)
