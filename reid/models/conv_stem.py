"""A convolutional stem for the ViT: stride-2 3x3 convolutions in place of the one-shot patch projection.

"Early convolutions help transformers see better" (Xiao et al., 2021): replacing the ViT's
``Conv2d(3, D, P, stride=P)`` patchify stem by a few stride-2 3x3 convolutions keeps the token grid and the
transformer unchanged but gives the first layer locality, which a from-scratch ViT otherwise has to learn
from data. Here it is what makes a small random-init ViT generalise from a few hundred images: on the
demo's synthetic pedestrians a supervised upper-garment-colour probe reached 0.78 test accuracy with it and
0.19 (below the 0.28 majority rate) with the patchify stem, after 300 steps (``docs/benchmarks.md``).
"""

from __future__ import annotations

import math

from torch import Tensor, nn


class ConvStem(nn.Module):
    """``[B, 3, H, W] -> [B, D, H / P, W / P]``: log2(P) blocks of Conv3x3(stride 2) + GELU, then a 1x1 conv.

    Channels double towards ``dim`` (``max(16, dim / 2^(n-1-i))`` for block i of n). ``patch`` must be a
    power of two >= 2. ``weight`` is the first convolution's, so that code reading the patch projection's
    dtype (transformers' ViT casts pixels to it) keeps working.

    Weights are He-initialised (fan-in, zero bias) so that the stem keeps its input's scale: PyTorch's default
    convolution init divides the variance by ~3 per layer (~6 with the GELU), which left the tokens of a
    five-layer stem at ~2 % of the input's scale, below the ViT's position embeddings, so every image gave
    nearly the same tokens and contrastive training collapsed (InfoNCE stuck at log B for 1,000 steps).
    """

    def __init__(self, dim: int, patch: int, channels: int = 3) -> None:
        super().__init__()
        blocks = round(math.log2(patch)) if patch >= 2 else 0
        if patch < 2 or 2**blocks != patch:
            raise ValueError(f"a convolutional stem needs a patch size that is a power of two >= 2, got {patch}")
        layers: list[nn.Module] = []
        width_in = channels
        for i in range(blocks):
            width = max(16, dim >> (blocks - 1 - i))
            layers += [nn.Conv2d(width_in, width, kernel_size=3, stride=2, padding=1), nn.GELU()]
            width_in = width
        layers.append(nn.Conv2d(width_in, dim, kernel_size=1))
        self.layers = nn.Sequential(*layers)
        for layer in self.layers:
            if isinstance(layer, nn.Conv2d):
                last = layer is layers[-1]
                nn.init.kaiming_normal_(layer.weight, nonlinearity="linear" if last else "relu")
                nn.init.zeros_(layer.bias)

    @property
    def weight(self) -> Tensor:
        return self.layers[0].weight

    def forward(self, pixels: Tensor) -> Tensor:
        return self.layers(pixels)
