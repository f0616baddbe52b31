"""Contrastive losses: multi-positive identity InfoNCE (eq. 3) and the optional clothing-matching InfoNCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reid.losses.checks import as_float, check_pair, check_pids, valid_rows


def multi_positive_cross_entropy(logits: Tensor, positives: Tensor) -> Tensor:
    """Mean over rows of ``-1/|P_i| sum_{j in P_i} log softmax_j(logits_i)``.

    logits: [B, C]; positives: [B, C] bool, at least one True per row. Returns a scalar.
    """
    log_prob = F.log_softmax(as_float(logits), dim=1)
    pos = positives.to(log_prob.dtype)
    per_row = -(log_prob * pos).sum(dim=1) / pos.sum(dim=1)
    return per_row.mean()


def infonce(query: Tensor, gallery: Tensor, pids: Tensor, temperature: float) -> Tensor:
    r"""Multi-positive, symmetric InfoNCE between query (text) and gallery (image) embeddings (eq. 3).

    Eq. 3 reads :math:`\mathcal{L}_{info} = -\log \frac{\exp(v^\top t_i/\tau)}{\sum_j \exp(v^\top t_j/\tau)}`
    with one positive per row. Here every pair of the same identity in the batch is a positive. With
    :math:`s_{ij} = \hat q_i^\top \hat g_j / \tau` (L2-normalised rows) and :math:`P_i = \{j : pid_j = pid_i\}`:

    .. math::
        \mathcal{L}_{t \to i} = \frac{1}{B}\sum_i \frac{-1}{|P_i|}\sum_{j \in P_i}
            \log \frac{\exp s_{ij}}{\sum_{k} \exp s_{ik}}, \qquad
        \mathcal{L}_{info} = \tfrac12 (\mathcal{L}_{t \to i} + \mathcal{L}_{i \to t})

    where :math:`\mathcal{L}_{i \to t}` is the same on :math:`s^\top`. This is the cross-entropy between the
    softmax over the batch and the uniform distribution over the anchor's positives (the mean of the
    log-probabilities, not the log of their sum). Every row has a positive: pair (i, i) itself.

    query: [B, E]; gallery: [B, E]; pids: [B] integer identity of pair i.
    Returns a float32 scalar (float64 for float64 input).
    """
    check_pair("infonce", query, gallery, ("query", "gallery"))
    check_pids("infonce", pids, query.shape[0])
    q = F.normalize(as_float(query), dim=1)
    g = F.normalize(as_float(gallery), dim=1)
    logits = q @ g.t() / temperature
    positives = pids.view(-1, 1) == pids.view(1, -1)
    return 0.5 * (multi_positive_cross_entropy(logits, positives)
                  + multi_positive_cross_entropy(logits.t(), positives.t()))


def clothing_match(clo_visual: Tensor, clo_text: Tensor, temperature: float,
                   valid: Tensor | None = None) -> Tensor:
    r"""Symmetric InfoNCE pulling each projected clothing feature to its own clothing description.

    Optional term (paper 4.3 names a matching loss beside the adversarial one for the clothing branch).
    With :math:`s_{ij} = \hat c_i^\top \hat t_j / \tau` over the valid rows only, the positive of row i is
    column i: :math:`\tfrac12 [CE(s, \mathrm{diag}) + CE(s^\top, \mathrm{diag})]`.

    clo_visual: [B, E] projected clothing features; clo_text: [B, E] clothing-description embeddings;
    valid: [B] bool, whether sample i has a clothing description (None: all). Fewer than two valid
    rows give 0 (still attached to the graph). Returns a float32 scalar (float64 for float64 input).
    """
    check_pair("clothing_match", clo_visual, clo_text, ("clo_visual", "clo_text"))
    keep = valid_rows("clothing_match", valid, clo_visual.shape[0], clo_visual.device)
    if int(keep.sum()) < 2:
        return as_float(clo_visual).sum() * 0.0
    v = F.normalize(as_float(clo_visual[keep]), dim=1)
    t = F.normalize(as_float(clo_text[keep]), dim=1)
    logits = v @ t.t() / temperature
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
