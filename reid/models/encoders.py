"""Hugging Face image (ViT) and text (BERT-family) encoders returning token sequences (paper 3.1-3.2)."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel, ViTConfig, ViTModel

from reid.models.image_backbone import ImageBackbone
from reid.pretrained import resolve_name_or_path

logger = logging.getLogger(__name__)

# Keys of a saved Hugging Face config that describe its origin, not the architecture.
_PROVENANCE_KEYS = ("_name_or_path", "architectures", "transformers_version", "auto_map", "dtype")


class ImageEncoder(ImageBackbone):
    """A ViT returning every token: ``[B, 3, H, W]`` normalised pixels -> ``[B, L, D]`` (L = 1 + patches; the
    [CLS] token first)."""

    prefix_tokens = 1
    default_mean = (0.5, 0.5, 0.5)  # ViT-B/16 (google) normalisation
    default_std = (0.5, 0.5, 0.5)

    def __init__(self, vit: ViTModel) -> None:
        super().__init__()
        self.vit = vit

    @property
    def hidden_size(self) -> int:
        return int(self.vit.config.hidden_size)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.vit.embeddings.patch_embeddings.image_size)  # type: ignore[return-value]

    @property
    def final_norm(self) -> nn.LayerNorm:
        """The LayerNorm applied to every output token: the last layer all image-side losses share."""
        return self.vit.layernorm

    @property
    def patch_size(self) -> tuple[int, int]:
        """``(p_h, p_w)`` pixels per patch."""
        return _patch_size(self.vit.config)

    def architecture(self) -> dict[str, Any]:
        return architecture_dict(self)

    def add_mask_token(self) -> None:
        """Give the patch embedding a learnable mask token (zero-init), so :meth:`forward` can mask patches."""
        if self.vit.embeddings.mask_token is None:
            self.vit.embeddings.mask_token = nn.Parameter(torch.zeros(1, 1, self.hidden_size))

    def forward(self, pixel_values: torch.Tensor, masked_patches: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens ``[B, 1 + L, D]``; ``masked_patches [B, L]`` bool replaces those patches' embeddings by the mask
        token right after the patch embedding (before position embeddings are added; :meth:`add_mask_token`)."""
        if masked_patches is not None and self.vit.embeddings.mask_token is None:
            raise ValueError("masking patches needs the mask token: call add_mask_token() when building the model")
        return self.vit(pixel_values=pixel_values, bool_masked_pos=masked_patches).last_hidden_state


class TextEncoder(nn.Module):
    """A BERT-family encoder: ``input_ids, attention_mask [B, T]`` -> tokens ``[B, T, Dt]``, pooled ``[B, Dt]``.

    ``pooling="mean"`` averages the unmasked tokens; ``"cls"`` takes the first token. Rows whose mask is
    all zero (an absent description) are encoded as if their first token were visible, so they stay
    finite; callers ignore them through their ``has_*`` flags.
    """

    def __init__(self, model: PreTrainedModel, pooling: Literal["mean", "cls"] = "mean") -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"text pooling must be 'mean' or 'cls', got {pooling!r}")
        self.model = model
        self.pooling = pooling

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
            raise ValueError(
                f"text input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} "
                "must both be [B, T]"
            )
        mask = attention_mask.long()
        empty = (mask.sum(dim=1, keepdim=True) == 0).long()  # [B, 1]; no host sync
        mask = torch.cat([mask[:, :1] | empty, mask[:, 1:]], dim=1)
        tokens = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            return tokens, tokens[:, 0]
        weights = mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1)
        return tokens, pooled


def build_image_encoder(
    name_or_path: str | None, config: dict[str, Any], image_size: tuple[int, int],
    stem: Literal["patch", "conv"] = "patch",
) -> ImageEncoder:
    """A ViT at ``image_size`` (H, W): pretrained from ``name_or_path``, else random-init from ``config``.

    With a name, ``config`` entries override the pretrained config (e.g. dropout). When the pretrained
    position grid differs from ``image_size // patch`` (224x224 weights used at 384x128), the position
    embeddings are resampled once, bicubically, so the returned model is native at ``image_size``.
    ``stem="conv"`` replaces the patch projection by a :class:`~reid.models.conv_stem.ConvStem` (same token
    grid; for from-scratch training: with pretrained weights the new stem starts untrained).
    """
    if stem not in ("patch", "conv"):
        raise ValueError(f"model.vision_stem must be 'patch' or 'conv', got {stem!r}")
    height, width = _check_image_size(image_size)
    if name_or_path:
        overrides = {k: v for k, v in config.items() if k != "image_size"}
        vit = ViTModel.from_pretrained(
            resolve_name_or_path(name_or_path), add_pooling_layer=False, dtype=torch.float32, **overrides
        )
        _set_vit_image_size(vit, height, width)
        logger.info("vision encoder %s at %dx%d", name_or_path, height, width)
    else:
        vit_config = _make_config(config, "vit")
        if not isinstance(vit_config, ViTConfig):
            raise ValueError(f"model.vision_config: model_type must be 'vit', got {vit_config.model_type!r}")
        vit_config.image_size = [height, width]
        vit = ViTModel(vit_config, add_pooling_layer=False)
    patch = _patch_size(vit.config)
    if height % patch[0] or width % patch[1]:
        raise ValueError(f"data.image_size {height}x{width} is not a multiple of the ViT patch size {patch}")
    if stem == "conv":
        from reid.models.conv_stem import ConvStem

        if patch[0] != patch[1]:
            raise ValueError(f"a convolutional stem needs a square patch, got {patch}")
        if name_or_path:
            logger.warning("model.vision_stem conv: the pretrained patch projection of %s is replaced by an "
                           "untrained convolutional stem", name_or_path)
        vit.embeddings.patch_embeddings.projection = ConvStem(int(vit.config.hidden_size), patch[0],
                                                              int(vit.config.num_channels))
    return ImageEncoder(vit)


def build_text_encoder(
    name_or_path: str | None,
    config: dict[str, Any],
    max_text_length: int,
    pooling: Literal["mean", "cls"] = "mean",
) -> TextEncoder:
    """A BERT-family encoder: pretrained from ``name_or_path`` (``pkg:NAME`` works offline), else from ``config``."""
    if name_or_path:
        model = AutoModel.from_pretrained(resolve_name_or_path(name_or_path), dtype=torch.float32, **config)
        logger.info("text encoder %s", name_or_path)
    else:
        model = AutoModel.from_config(_make_config(config, "bert"))
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # the NSP pooler is unused: drop it so every parameter receives a gradient
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_text_length > limit:
        raise ValueError(f"data.max_text_length {max_text_length} exceeds the text encoder's {limit} positions")
    return TextEncoder(model, pooling)


def architecture_dict(encoder: ImageEncoder | TextEncoder) -> dict[str, Any]:
    """The encoder's Hugging Face config as plain JSON types, enough to rebuild it without its weights (for a
    ViT: ``model.vision_config`` with its ``model_type``)."""
    model = encoder.vit if isinstance(encoder, ImageEncoder) else encoder.model
    data = json.loads(model.config.to_json_string(use_diff=True))
    for key in _PROVENANCE_KEYS:
        data.pop(key, None)
    return data


def resample_position_embeddings(
    pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]
) -> torch.Tensor:
    """Bicubic resampling of ViT position embeddings ``[1, 1 + h0*w0, D]`` -> ``[1, 1 + h1*w1, D]``.

    The [CLS] position is kept as is; the patch positions are treated as an ``h0 x w0`` image.
    """
    (h0, w0), (h1, w1) = old_grid, new_grid
    if pos.shape[1] != 1 + h0 * w0:
        raise ValueError(f"position embeddings hold {pos.shape[1]} tokens, expected 1 + {h0}x{w0}")
    cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
    dim = pos.shape[-1]
    grid = patch_pos.reshape(1, h0, w0, dim).permute(0, 3, 1, 2)
    grid = nn.functional.interpolate(grid, size=(h1, w1), mode="bicubic", align_corners=False)
    return torch.cat([cls_pos, grid.permute(0, 2, 3, 1).reshape(1, h1 * w1, dim)], dim=1)


def _set_vit_image_size(vit: ViTModel, height: int, width: int) -> None:
    embeddings = vit.embeddings
    patch = _patch_size(vit.config)
    old_size = tuple(embeddings.patch_embeddings.image_size)
    if old_size == (height, width):
        return
    old_grid = (old_size[0] // patch[0], old_size[1] // patch[1])
    new_grid = (height // patch[0], width // patch[1])
    with torch.no_grad():
        pos = resample_position_embeddings(embeddings.position_embeddings.data, old_grid, new_grid)
    embeddings.position_embeddings = nn.Parameter(pos.contiguous())
    embeddings.patch_embeddings.image_size = (height, width)
    embeddings.patch_embeddings.num_patches = new_grid[0] * new_grid[1]
    embeddings.image_size = (height, width)
    vit.config.image_size = [height, width]
    logger.info("resampled ViT position embeddings from %s to %s", old_grid, new_grid)


def _make_config(config: dict[str, Any], default_type: str) -> PretrainedConfig:
    data = {k: v for k, v in config.items() if k not in _PROVENANCE_KEYS}
    model_type = data.pop("model_type", default_type)
    return AutoConfig.for_model(model_type, **data)


def _patch_size(config: PretrainedConfig) -> tuple[int, int]:
    patch = config.patch_size
    return (patch, patch) if isinstance(patch, int) else (int(patch[0]), int(patch[1]))


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    if len(image_size) != 2 or any(int(s) <= 0 or int(s) != s for s in image_size):
        raise ValueError(f"image_size must be (H, W) positive integers, got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def count_parameters(module: nn.Module) -> int:
    """The number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = [
    "ImageEncoder", "TextEncoder", "architecture_dict", "build_image_encoder", "build_text_encoder",
    "count_parameters", "resample_position_embeddings",
]
