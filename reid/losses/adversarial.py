"""Clothing adversarial loss (eq. 1): lower the matching probability of visual clothing features and text."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reid.losses.checks import as_float, check_pair, valid_rows


def clothing_adversarial(clo_visual: Tensor, clo_text: Tensor, temperature: float,
                         valid: Tensor | None = None) -> Tensor:
    r"""Clothing adversarial loss (eq. 1): :math:`\mathcal{L}_{adv} = \mathbb{E}_i[-\log(1 - P_{pos}(i))]`.

    With L2-normalised rows and :math:`s_{ij} = \hat c_i^\top \hat t_j / \tau` over the valid samples,
    :math:`P_{pos}(i) = \exp s_{ii} / \sum_j \exp s_{ij}` is the softmax-over-batch probability that the
    projected clothing feature of image i matches its own clothing description. Minimising the loss
    pushes :math:`s_{ii}` down. Computed stably as

    .. math:: \log(1 - P_{pos}(i)) = \operatorname{logsumexp}_{j \ne i} s_{ij} - \operatorname{logsumexp}_j s_{ij}

    which stays finite even when :math:`P_{pos}(i) \to 1`.

    clo_visual: [B, E] clothing features projected to the text width; clo_text: [B, E] clothing-
    description embeddings; valid: [B] bool, whether sample i has a clothing description (None: all).
    Rows and columns of invalid samples are dropped; fewer than two valid samples give 0 (attached to
    the graph). Returns a float32 scalar (float64 for float64 input).
    """
    check_pair("clothing_adversarial", clo_visual, clo_text, ("clo_visual", "clo_text"))
    keep = valid_rows("clothing_adversarial", valid, clo_visual.shape[0], clo_visual.device)
    if int(keep.sum()) < 2:
        return as_float(clo_visual).sum() * 0.0
    v = F.normalize(as_float(clo_visual[keep]), dim=1)
    t = F.normalize(as_float(clo_text[keep]), dim=1)
    logits = v @ t.t() / temperature
    eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    log_all = torch.logsumexp(logits, dim=1)
    log_others = torch.logsumexp(logits.masked_fill(eye, float("-inf")), dim=1)
    return -(log_others - log_all).mean()
