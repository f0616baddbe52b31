"""The objective: model outputs + batch -> named losses of the enabled terms, and their weighted sum."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from reid.losses.adversarial import clothing_adversarial
from reid.losses.config import GradNormConfig, LossConfig
from reid.losses.contrastive import clothing_match, infonce
from reid.losses.decoupling import hsic
from reid.losses.gate import gate_regularization
from reid.losses.gradnorm import FixedWeights, GradNorm, build_balancer
from reid.losses.local import local_alignment_loss, masked_patch_mse
from reid.losses.triplet import triplet_batch_hard

TERMS = ("infonce", "triplet", "adversarial", "clothing_match", "hsic", "gate_reg", "local_align", "image_decoding")
BDAM_TERMS = frozenset({"adversarial", "clothing_match", "hsic", "gate_reg"})


def _switched_on(cfg: LossConfig, name: str) -> bool:
    return bool(getattr(cfg, "image_decoding_weight" if name == "image_decoding" else name))


def enabled_terms(cfg: LossConfig, bdam: bool = True, gate: bool = True, local_align: bool = False,
                  image_decoding: bool = False) -> list[str]:
    """Names :func:`compute_losses` returns, in :data:`TERMS` order, for a model with or without BDAM
    and with or without the BDAM gate (``model.bdam.enabled``, ``model.bdam.gate``), local alignment
    (``model.local_align.kind`` not ``none``) and image decoding (``model.image_decoding.strategy`` not ``none``).

    Without BDAM there are no clothing features or gate, so only InfoNCE and triplet remain (and SAP-SAM's
    terms, which need no BDAM); without the gate there is no gate regularisation. :func:`create_balancer`
    splits them into balanced and fixed.
    """
    present = {name for name in TERMS if bdam or name not in BDAM_TERMS}
    if not gate:
        present.discard("gate_reg")
    if not local_align:
        present.discard("local_align")
    if not image_decoding:
        present.discard("image_decoding")
    return [name for name in TERMS if _switched_on(cfg, name) and name in present]


def create_balancer(loss: LossConfig, gradnorm: GradNormConfig, bdam: bool = True, gate: bool = True,
                    local_align: bool = False, image_decoding: bool = False) -> GradNorm | FixedWeights:
    """The task balancer of a run: GradNorm over the paper's tasks (eq. 6: InfoNCE, triplet, adversarial
    or clothing matching, decoupling) and SAP-SAM's (local alignment, image decoding) when on, with the gate
    regulariser as a fixed-weight term (``loss.gate_reg_weight``) unless ``gradnorm.include_gate_reg``;
    fixed weights without GradNorm (SAP-SAM's terms at ``loss.local_align`` and ``loss.image_decoding_weight``)."""
    names = enabled_terms(loss, bdam=bdam, gate=gate, local_align=local_align, image_decoding=image_decoding)
    fixed = {}
    if "gate_reg" in names and not gradnorm.include_gate_reg:
        names.remove("gate_reg")
        fixed["gate_reg"] = loss.gate_reg_weight
    if not gradnorm.enabled:
        for name, weight in (("local_align", loss.local_align), ("image_decoding", loss.image_decoding_weight)):
            if name in names:
                names.remove(name)
                fixed[name] = weight
    return build_balancer(gradnorm, names, fixed)


def compute_losses(outputs: Mapping[str, Any], batch: Mapping[str, Any], cfg: LossConfig,
                   gather: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor]:
    """Named scalar losses of the enabled terms (paper 3.2, 3.5).

    Reads from ``outputs`` (the model's forward dict): ``query_emb`` [B, E] and ``gallery_emb`` [B, E]
    (required); ``f_id_gate`` [B, D] (the pooled encoder feature without BDAM); the BDAM tensors
    ``f_clo_gate``, ``bdam_gate`` [B, D], ``clo_proj``, ``clo_text_emb`` [B, E] and ``has_clo_desc``
    [B] bool (absent or None without BDAM, gate or clothing descriptions). Reads ``pids`` [B] long
    from ``batch``. A term whose model-side inputs are None is skipped (no BDAM: no ``clo_proj``,
    ``f_clo_gate``; no gate: no ``bdam_gate``), so the keys are the same on every step and equal
    :func:`enabled_terms`. A batch without clothing descriptions (``clo_text_emb`` None, or
    ``has_clo_desc`` with fewer than two True) gives 0 for the clothing terms, still attached to the graph.

    - ``infonce``: eq. 3 multi-positive on (query_emb, gallery_emb), plus ``cfg.image_only`` times the same on
      (query_emb, gallery_emb_image), the embedding of the images alone (the gallery of a new camera, which no
      MLLM has described, is embedded that way; ``gallery_emb`` itself when the batch had no description, which
      is then that embedding). With ``gather`` (:func:`~reid.losses.gather.gather_rows` on a data-parallel
      run with ``cfg.gather_across_ranks``) both are computed on every rank's rows, the global batch; plus
      ``cfg.image_description`` times the same between each image's identity description (``id_text_emb``,
      detached: a target the text side learns from the captions) and that embedding, over this rank's rows
      with a description;
    - ``triplet``: eq. 4 batch-hard on f_id_gate (gallery_emb when that is None);
    - ``adversarial``: eq. 1 on (clo_proj, clo_text_emb), rows with a clothing description;
    - ``clothing_match``: symmetric InfoNCE on the same pairs (both with ``clo_text_emb`` detached unless
      ``cfg.clothing_moves_text``, so that they train the visual clothing branch and not the query tower);
    - ``hsic``: eq. 2 between f_id_gate and f_clo_gate;
    - ``gate_reg``: squared distance of bdam_gate from 0.5;
    - ``local_align``: SAP-SAM's per-part-class InfoNCE on the pair ``scores`` and ``positives`` of
      ``outputs["local_parts"]`` (the model's :class:`~reid.models.local_align.PartScores`), when it computed them;
    - ``image_decoding``: the masked-patch MSE of ``decoded`` against ``decoded_target`` [B, L, 3 p^2] over
      ``decoded_mask`` [B, L], when the model decoded.
    """
    query, gallery = _required(outputs, "query_emb", "outputs"), _required(outputs, "gallery_emb", "outputs")
    pids = _required(batch, "pids", "batch").to(query.device)
    f_id, f_clo, gate = outputs.get("f_id_gate"), outputs.get("f_clo_gate"), outputs.get("bdam_gate")
    clo_proj, clo_text = outputs.get("clo_proj"), outputs.get("clo_text_emb")
    valid = outputs.get("has_clo_desc")
    losses: dict[str, Tensor] = {}
    if cfg.infonce:
        rows = gather or (lambda tensor: tensor)
        every_query, every_pid = rows(query), rows(pids)
        losses["infonce"] = infonce(every_query, rows(gallery), every_pid, cfg.temperature)
        alone = outputs.get("gallery_emb_image")
        if cfg.image_only > 0:
            images_alone = rows(alone if alone is not None else gallery)
            losses["infonce"] = losses["infonce"] + cfg.image_only * infonce(every_query, images_alone, every_pid,
                                                                             cfg.temperature)
        described, has = outputs.get("id_text_emb"), outputs.get("has_id_desc")
        if cfg.image_description > 0 and alone is not None and described is not None and int(has.sum()) > 1:
            keep = has.to(alone.device)  # this rank's rows only: ranks may differ in having any
            term = infonce(described[keep].detach(), alone[keep], pids[keep], cfg.temperature)
            losses["infonce"] = losses["infonce"] + cfg.image_description * term
    if cfg.triplet:
        losses["triplet"] = triplet_batch_hard(f_id if f_id is not None else gallery, pids, cfg.triplet_margin,
                                               normalize=cfg.triplet_normalize)
    if clo_proj is not None and clo_text is None:  # no clothing description in this batch
        clo_text, valid = torch.zeros_like(clo_proj), torch.zeros(len(clo_proj), dtype=torch.bool)
    if clo_text is not None and not cfg.clothing_moves_text:
        clo_text = clo_text.detach()
    if cfg.adversarial and clo_proj is not None:
        losses["adversarial"] = clothing_adversarial(clo_proj, clo_text, cfg.temperature, valid)
    if cfg.clothing_match and clo_proj is not None:
        losses["clothing_match"] = clothing_match(clo_proj, clo_text, cfg.temperature, valid)
    if cfg.hsic and f_id is not None and f_clo is not None:
        losses["hsic"] = hsic(f_id, f_clo, kernel=cfg.hsic_kernel, sigma=cfg.hsic_sigma)
    if cfg.gate_reg and gate is not None:
        losses["gate_reg"] = gate_regularization(gate)
    if (parts := outputs.get("local_parts")) is not None:
        losses["local_align"] = local_alignment_loss(parts.scores, cfg.temperature, query, parts.positives)
    if outputs.get("decoded") is not None:
        losses["image_decoding"] = masked_patch_mse(outputs["decoded"], outputs["decoded_target"],
                                                    outputs["decoded_mask"])
    return losses


def weighted_total(losses: Mapping[str, Tensor], weights: Mapping[str, float | Tensor]) -> Tensor:
    """``sum_k w_k * L_k`` over the named losses; every loss needs a weight (a float or a scalar tensor)."""
    if not losses:
        raise ValueError("weighted_total: no losses to sum")
    missing = sorted(set(losses) - set(weights))
    if missing:
        raise KeyError(f"weighted_total: no weight for loss '{missing[0]}' (weights given: {sorted(weights)})")
    terms = [torch.as_tensor(weights[name]).to(loss.device, loss.dtype) * loss for name, loss in losses.items()]
    return sum(terms[1:], terms[0])


def _required(source: Mapping[str, Any], key: str, where: str) -> Tensor:
    value = source.get(key)
    if value is None:
        raise KeyError(f"compute_losses: {where}['{key}'] is missing or None (have: {sorted(source)})")
    return value
