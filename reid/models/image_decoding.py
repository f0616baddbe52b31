"""Masked image decoding guided by the caption (SAP-SAM supplementary section 3, Table 4), linear strategies.

A share ``mask_ratio`` of the patches is masked; the masked tokens are decoded with multi-head cross-attention to
the caption's text tokens, ``f'_v = MCA(f'_v, f_t, f_t)``, and an MLP predicts each masked patch's pixels,
normalised per patch as MAE does (zero mean, unit variance over the patch's ``3 p^2`` values); the loss is the
MSE over masked patches only.

- ``after_pe`` (strategy 3, the supplementary's best): patches are masked right after the patch embedding (the
  ViT's own mask token takes their place) and the masked sequence runs through the ViT.
- ``after_vit`` (strategy 4): the ViT's output tokens at the masked positions are replaced by a learnable
  mask token before decoding.

Strategies 1-2 quantise the image with a pretrained DALL-E VQ-VAE, whose weights cannot be downloaded here:
asking for them is refused (:func:`reid.models.config.check_decoding_strategy`). The settings are
``model.image_decoding`` (:class:`reid.models.config.ImageDecodingConfig`); the loss is
:func:`reid.losses.local.masked_patch_mse`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def patch_targets(pixels: Tensor, patch: int) -> Tensor:
    """Normalised pixels per patch ``[B, L, 3 p^2]`` of images ``[B, 3, H, W]`` (row-major patches, as the ViT)."""
    b, c, h, w = pixels.shape
    x = pixels.reshape(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    x = x.reshape(b, (h // patch) * (w // patch), c * patch * patch)
    return (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()


def random_patch_mask(batch: int, patches: int, ratio: float, generator: torch.Generator | None = None,
                      device: torch.device | None = None) -> Tensor:
    """``[B, L]`` bool with ``round(ratio L)`` (at least one) masked patches per row, chosen uniformly."""
    count = max(1, round(ratio * patches))
    noise = torch.rand(batch, patches, generator=generator, device=device)
    order = noise.argsort(dim=1)
    mask = torch.zeros(batch, patches, dtype=torch.bool, device=device)
    mask.scatter_(1, order[:, :count], True)
    return mask


class ImageDecoder(nn.Module):
    """``MCA(f'_v, f_t, f_t)`` then an MLP to a patch's pixels (the loss on them is
    :func:`reid.losses.local.masked_patch_mse`)."""

    def __init__(self, image_dim: int, text_dim: int, patch_pixels: int, heads: int = 4) -> None:
        super().__init__()
        self.text_proj = nn.Linear(text_dim, image_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, image_dim))  # used by after_vit
        self.norm = nn.LayerNorm(image_dim)
        self.cross = nn.MultiheadAttention(image_dim, heads, batch_first=True)
        self.head = nn.Sequential(nn.Linear(image_dim, image_dim), nn.GELU(), nn.Linear(image_dim, patch_pixels))

    def mask_features(self, tokens: Tensor, masked: Tensor) -> Tensor:
        """``after_vit``: the ViT's patch tokens ``[B, L, D]`` with the masked ones replaced by the mask token."""
        return torch.where(masked.unsqueeze(-1), self.mask_token.to(tokens.dtype).expand_as(tokens), tokens)

    def forward(self, patch_tokens: Tensor, text_tokens: Tensor, text_mask: Tensor) -> Tensor:
        """Predicted pixels ``[B, L, 3 p^2]`` of patch tokens ``[B, L, D]`` decoded against the caption's tokens
        ``[B, T, Dt]`` (``text_mask [B, T]``): ``head(f'_v + MCA(norm(f'_v), f_t, f_t))``."""
        keys = self.text_proj(text_tokens)
        decoded, _ = self.cross(self.norm(patch_tokens), keys, keys, key_padding_mask=~text_mask.bool(),
                                need_weights=False)
        return self.head(patch_tokens + decoded)
