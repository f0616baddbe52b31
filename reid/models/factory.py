"""Build a :class:`ReidModel` from a :class:`ModelConfig` (every ablation switch of paper tables 1-2)."""

from __future__ import annotations

import logging

from reid.models.bdam import Bdam
from reid.models.config import ModelConfig
from reid.models.encoders import build_image_encoder, build_text_encoder, count_parameters
from reid.models.fusion import build_fusion
from reid.models.reid_model import ReidModel

logger = logging.getLogger(__name__)


def human_count(n: int) -> str:
    """``275.4M``, ``84.2K`` or ``512``: a parameter count at a glance."""
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.1f}K" if n >= 1e3 else str(n)


def build_model(cfg: ModelConfig, image_size: tuple[int, int], max_text_length: int) -> ReidModel:
    """The model for images of ``image_size`` (H, W) and texts of up to ``max_text_length`` tokens.

    ``cfg.bdam.enabled=False`` gives the table-1 baseline (pooled encoder feature, no clothing branch);
    ``cfg.bdam.cross_attention``/``gate``/``blocks`` the other table-1 rows; ``cfg.fusion.kind`` and
    ``cfg.fusion.align`` the table-2 rows.
    """
    image_encoder = build_image_encoder(cfg.vision_name_or_path, cfg.vision_config, image_size, cfg.vision_stem)
    text_encoder = build_text_encoder(cfg.text_name_or_path, cfg.text_config, max_text_length, cfg.text_pooling)
    dim = image_encoder.hidden_size
    bdam = None
    if cfg.bdam.enabled:
        b = cfg.bdam
        bdam = Bdam(dim, b.blocks, b.heads, b.ffn_ratio, b.dropout, b.cross_attention, b.gate)
    fusion = build_fusion(cfg.fusion, dim, text_encoder.hidden_size, cfg.embed_dim, cfg.dropout)
    model = ReidModel(
        image_encoder, text_encoder, bdam, fusion, cfg.embed_dim, image_size,
        image_mean=cfg.image_mean, image_std=cfg.image_std, fusion_uses_text=cfg.fusion.kind != "none",
        description_dropout=cfg.fusion.description_dropout,
    )
    logger.info(
        "model: %s parameters (vision %s, text %s, bdam %s, fusion %s %s)", human_count(count_parameters(model)),
        human_count(count_parameters(image_encoder)), human_count(count_parameters(text_encoder)),
        human_count(count_parameters(bdam)) if bdam is not None else "none", cfg.fusion.kind,
        human_count(count_parameters(fusion)),
    )
    return model
