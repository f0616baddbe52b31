"""Build a :class:`ReidModel` from a :class:`ModelConfig` (every ablation switch of paper tables 1-2)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from reid.models.bdam import Bdam
from reid.models.config import ModelConfig, check_decoding_strategy
from reid.models.encoders import build_text_encoder, count_parameters
from reid.models.fusion import build_fusion
from reid.models.image_backbone import create_image_backbone
from reid.models.image_decoding import ImageDecoder
from reid.models.local_align import build_local_aligner
from reid.models.reid_model import ReidModel

if TYPE_CHECKING:
    from reid.config import Config

logger = logging.getLogger(__name__)


def human_count(n: int) -> str:
    """``275.4M``, ``84.2K`` or ``512``: a parameter count at a glance."""
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.1f}K" if n >= 1e3 else str(n)


def create_model(config: Config) -> ReidModel:
    """The model a :class:`~reid.config.Config` describes: ``model.*`` at ``data.image_size`` and
    ``data.max_text_length``. Every job, export and evaluation builds through this call, so a model setting
    reaches all of them at once."""
    return build_model(config.model, tuple(config.data.image_size), config.data.max_text_length)


def pretrained_prefixes(cfg: ModelConfig, image_encoder: object) -> tuple[str, ...]:
    """Parameter-name prefixes of the parts whose weights were loaded pretrained (``optim.pretrained_lr_ratio``)."""
    prefixes = []
    if getattr(image_encoder, "pretrained", False):
        prefixes.append("image_encoder.trunk.")
    elif cfg.vision_name_or_path:
        prefixes.append("image_encoder.vit.")
    if cfg.text_name_or_path:
        prefixes.append("text_encoder.")
    return tuple(prefixes)


def build_model(cfg: ModelConfig, image_size: tuple[int, int], max_text_length: int) -> ReidModel:
    """The model for images of ``image_size`` (H, W) and texts of up to ``max_text_length`` tokens.

    ``cfg.bdam.enabled=False`` gives the table-1 baseline (pooled encoder feature, no clothing branch);
    ``cfg.bdam.cross_attention``/``gate``/``blocks`` the other table-1 rows; ``cfg.fusion.kind`` and
    ``cfg.fusion.align`` the table-2 rows; ``cfg.local_align.kind`` SAP-SAM's Table 6 rows and
    ``cfg.image_decoding`` (strategy and mask ratio) its Table 4 rows.
    """
    image_encoder = create_image_backbone(cfg.vision_name_or_path, cfg.vision_config, image_size, cfg.vision_stem)
    decoding = cfg.image_decoding
    if decoding.strategy == "after_pe":
        image_encoder.add_mask_token()
    text_encoder = build_text_encoder(cfg.text_name_or_path, cfg.text_config, max_text_length, cfg.text_pooling)
    dim = image_encoder.hidden_size
    bdam = None
    if cfg.bdam.enabled:
        b = cfg.bdam
        bdam = Bdam(dim, b.blocks, b.heads, b.ffn_ratio, b.dropout, b.cross_attention, b.gate)
    fusion = build_fusion(cfg.fusion, dim, text_encoder.hidden_size, cfg.embed_dim, cfg.dropout)
    local = cfg.local_align
    aligner = build_local_aligner(local.kind, dim, text_encoder.hidden_size, local.dim, local.heads)
    decoder = None
    if check_decoding_strategy(decoding.strategy) != "none":
        patch = image_encoder.patch_size
        if patch[0] != patch[1]:
            raise ValueError(f"model.image_decoding needs square token cells, got {patch}")
        decoder = ImageDecoder(dim, text_encoder.hidden_size, 3 * patch[0] * patch[1],
                               heads=next(h for h in (8, 4, 2, 1) if dim % h == 0))
    model = ReidModel(
        image_encoder, text_encoder, bdam, fusion, cfg.embed_dim, image_size,
        image_mean=cfg.image_mean or image_encoder.default_mean, image_std=cfg.image_std or image_encoder.default_std,
        fusion_uses_text=cfg.fusion.kind != "none", description_dropout=cfg.fusion.description_dropout,
        local_aligner=aligner, image_decoder=decoder, image_decoding=decoding.strategy,
        mask_ratio=decoding.mask_ratio, gallery_flip=cfg.gallery_flip,
    )
    model.pretrained_prefixes = pretrained_prefixes(cfg, image_encoder)
    logger.info(
        "model: %s parameters (vision %s %s, text %s, bdam %s, fusion %s %s)", human_count(count_parameters(model)),
        image_encoder.architecture().get("model_type", "vit"), human_count(count_parameters(image_encoder)),
        human_count(count_parameters(text_encoder)),
        human_count(count_parameters(bdam)) if bdam is not None else "none", cfg.fusion.kind,
        human_count(count_parameters(fusion)),
    )
    return model
