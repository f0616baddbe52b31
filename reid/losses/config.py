"""Loss settings (paper 3.2, 3.5): each term on or off with its hyper-parameters, and GradNorm."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class LossConfig:
    """Which loss terms are active and their hyper-parameters.

    ``triplet_normalize``: the batch-hard triplet of eq. 4 measures squared distances between L2-normalised
    identity features (in [0, 4], where the margin 0.3 is a margin); false uses the raw features, whose
    squared distances are hundreds of times the margin and whose gradient then swamps InfoNCE's (on the
    demo's split the image-only test R1 fell from 36 to 19).

    ``temperature`` is the tau of InfoNCE (eq. 3), of the clothing adversarial loss (eq. 1) and of the
    optional clothing-matching InfoNCE. ``hsic_sigma`` is the RBF bandwidth (None: median heuristic).
    ``gate_reg_weight`` is the constant weight of the gate regulariser, which is not a GradNorm task (eq. 6
    balances InfoNCE, triplet, adversarial and decoupling; ``gradnorm.include_gate_reg`` puts it back).

    ``clothing_moves_text``: whether the adversarial and clothing-matching terms may train the text tower
    and ``text_proj``, which also embed the queries. Off by default: eq. 1 exists to purge clothing from the
    *visual* features; with the text side free, the cheapest way to lower ``P_pos`` is to move clothing
    descriptions away from everything visual, which drags the query tower (whose captions are mostly
    clothing words) along. The paper is silent. ``adversarial`` and ``clothing_match`` cannot both be on:
    one lowers ``P_pos`` and the other raises it on the same pairs, so together they only pin ``P_pos``
    at 0.5 (their sum ``-log P - log(1 - P)`` is smallest there).

    ``image_only`` weighs a second InfoNCE inside the InfoNCE task, between the queries and the gallery
    embeddings of the same images without their descriptions (the fusion reads the image tokens alone). Without
    it the image-only gallery embedding is trained only on rows without a description; a gallery nobody
    described (new footage) is embedded that way. On a batch without any description ``gallery_emb`` is that
    embedding already and the term repeats eq. 3 on it (so the InfoNCE task then weighs ``1 + image_only``
    times InfoNCE, and every rank gathers the same tensors whichever rows it drew). 0 switches it off.
    ``image_description`` weighs a third one,
    between that images-alone embedding and the embedding of the image's own identity description (detached),
    so the image path learns what the description says it shows (build, height, skin, hair).

    ``gather_across_ranks``: on a data-parallel run the InfoNCE terms (eq. 3 and ``image_only``) rank each
    query against the gallery rows of every rank, not only its own: with 2 workers of batch 32 each query
    meets 63 candidates, as in one process of batch 64 (the gradient is the global-batch loss's; see
    :func:`~reid.losses.gather.gather_rows`). The triplet, clothing and decoupling terms stay per rank.

    SAP-SAM's terms: ``local_align`` is the weight of the local concept alignment InfoNCE, on when
    ``model.local_align.kind`` is not ``none``; ``image_decoding_weight`` the weight of the masked image
    decoding MSE, on when ``model.image_decoding.strategy`` is not ``none`` (the strategy and the mask ratio
    shape the model, so they live there). Under GradNorm each is a task of its own (its weight learned,
    starting at 1); the two weights apply with fixed weights (``gradnorm.enabled: false``) unless
    ``gradnorm.fixed_weights`` names the term.
    """

    infonce: bool = True
    image_only: float = 0.0
    image_description: float = 0.0
    gather_across_ranks: bool = True
    triplet: bool = True
    adversarial: bool = True
    clothing_match: bool = False
    hsic: bool = True
    gate_reg: bool = True
    temperature: float = 0.07
    triplet_margin: float = 0.3
    triplet_normalize: bool = True
    hsic_kernel: Literal["linear", "rbf"] = "linear"
    hsic_sigma: float | None = None
    gate_reg_weight: float = 1.0
    clothing_moves_text: bool = False
    local_align: float = 1.0
    image_decoding_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.adversarial and self.clothing_match:
            raise ValueError("loss.adversarial and loss.clothing_match cannot both be true: one lowers and the "
                             "other raises the same matching probability (together they pin it at 0.5); "
                             "switch one off")
        if self.image_only < 0 or self.image_description < 0:
            raise ValueError(f"loss.image_only and loss.image_description must be >= 0, got {self.image_only}, "
                             f"{self.image_description}")
        if not self.image_decoding_weight > 0:
            raise ValueError(f"loss.image_decoding_weight must be > 0, got {self.image_decoding_weight}")
        if not self.gate_reg_weight >= 0:
            raise ValueError(f"loss.gate_reg_weight must be >= 0, got {self.gate_reg_weight}")
        if not self.temperature > 0:
            raise ValueError(f"loss.temperature must be > 0, got {self.temperature}")
        if not self.triplet_margin >= 0:
            raise ValueError(f"loss.triplet_margin must be >= 0, got {self.triplet_margin}")
        if self.hsic_sigma is not None and not self.hsic_sigma > 0:
            raise ValueError(f"loss.hsic_sigma must be > 0 or null, got {self.hsic_sigma}")


@dataclass(frozen=True)
class GradNormConfig:
    """GradNorm task balancing (paper eqs. 5-6, section 4.2); ``enabled: false`` keeps fixed weights.

    ``reference`` picks G_ref of eq. 5: ``"mean"`` is the mean weighted gradient norm over tasks (the
    original GradNorm, the default: it converges where ``"first"`` drifts, see :class:`GradNorm`),
    ``"first"`` the first task's (the paper's wording). ``include_gate_reg`` makes the gate regulariser a
    GradNorm task too (default: a fixed-weight term, ``loss.gate_reg_weight``; its gradient on the shared
    layer is ~15x smaller than InfoNCE's, so GradNorm's balance point gave it the largest weight).
    ``update_every`` updates the weights
    every n-th step only (each update costs one partial backward per task). ``fixed_weights`` are the
    constant weights used when ``enabled`` is false (tasks not named get 1.0).
    """

    enabled: bool = True
    alpha: float = 1.5
    lr: float = 0.025
    clip_min: float = 1e-4
    clip_max: float = 10.0
    log_reg: float = 1e-3
    reference: Literal["first", "mean"] = "mean"
    update_every: int = 1
    include_gate_reg: bool = False
    fixed_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"gradnorm.lr must be > 0, got {self.lr}")
        if not 0 < self.clip_min <= 1.0 <= self.clip_max:
            # weights sum to the task count, so their mean is 1: the clip range must contain 1
            raise ValueError(f"gradnorm needs 0 < clip_min <= 1 <= clip_max, got {self.clip_min}, {self.clip_max}")
        if self.log_reg < 0 or self.alpha < 0:
            raise ValueError(f"gradnorm.alpha and gradnorm.log_reg must be >= 0, got {self.alpha}, {self.log_reg}")
        if self.update_every < 1:
            raise ValueError(f"gradnorm.update_every must be >= 1, got {self.update_every}")
        for name, value in self.fixed_weights.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"gradnorm.fixed_weights.{name} must be a finite number, got {value!r}")
