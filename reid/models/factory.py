"""Build a :class:`ReidModel` from a :class:`ModelConfig` (every ablation switch of paper tables 1-2)."""

from __future__ import annotations

import logging

from reid.models.bdam import Bdam
from reid.models.config import ModelConfig
from reid.models.encoders import build_image_encoder, build_text_encoder, count_parameters
from reid.models.fusion import build_fusion
from reid.models.reid_model import ReidModel

logger = logging.getLogger(__name__)


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
        "model: %.1fM parameters (vision %.1fM, text %.1fM, bdam %.1fM, fusion %s %.1fM)",
        count_parameters(model) / 1e6, count_parameters(image_encoder) / 1e6,
        count_parameters(text_encoder) / 1e6, count_parameters(bdam) / 1e6 if bdam is not None else 0.0,
        cfg.fusion.kind, count_parameters(fusion) / 1e6,
    )
    return model
