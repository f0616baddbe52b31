"""Masked image decoding (SAP-SAM strategies 3 and 4): the targets are MAE's normalised patches, each strategy
lowers its own loss on a fixed batch, the mask ratio holds, the discrete strategies are refused (the loss itself:
tests/losses/test_local.py)."""

from __future__ import annotations

import pytest
import torch
from transformers import ViTConfig, ViTModel

from reid.losses.local import masked_patch_mse
from reid.models.config import check_decoding_strategy
from reid.models.image_decoding import ImageDecoder, patch_targets, random_patch_mask

SIZE, PATCH, DIM, TEXT = (32, 16), 8, 32, 12


def _vit() -> ViTModel:
    config = ViTConfig(hidden_size=DIM, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       patch_size=PATCH, image_size=list(SIZE))
    return ViTModel(config, add_pooling_layer=False, use_mask_token=True)


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"pixels": torch.rand(4, 3, *SIZE, generator=g) * 2 - 1, "text": torch.randn(4, 6, TEXT, generator=g),
            "text_mask": torch.ones(4, 6, dtype=torch.long)}


def test_targets_are_per_patch_normalised_pixels_in_vit_order() -> None:
    pixels = torch.arange(3 * 16 * 8, dtype=torch.float32).view(1, 3, 16, 8)
    targets = patch_targets(pixels, 8)
    assert targets.shape == (1, 2, 3 * 64)
    raw = pixels[0, :, 8:16, 0:8].reshape(-1)  # the second patch (row 1) in channel, row, column order
    assert torch.allclose(targets[0, 1], (raw - raw.mean()) / raw.std(unbiased=False), atol=1e-5)
    assert torch.allclose(targets.mean(-1), torch.zeros(1, 2), atol=1e-5)


@pytest.mark.parametrize("strategy", ["after_pe", "after_vit"])
def test_each_strategy_lowers_its_own_loss_on_a_fixed_batch(strategy: str) -> None:
    torch.manual_seed(0)
    vit, decoder = _vit(), ImageDecoder(DIM, TEXT, 3 * PATCH * PATCH, heads=2)
    inputs = _inputs()
    masked = random_patch_mask(4, (SIZE[0] // PATCH) * (SIZE[1] // PATCH), 0.5, torch.Generator().manual_seed(1))
    targets = patch_targets(inputs["pixels"], PATCH)
    optimizer = torch.optim.Adam([*vit.parameters(), *decoder.parameters()], lr=3e-3)
    losses = []
    for _ in range(20):
        if strategy == "after_pe":
            tokens = vit(pixel_values=inputs["pixels"], bool_masked_pos=masked).last_hidden_state[:, 1:]
        else:
            tokens = decoder.mask_features(vit(pixel_values=inputs["pixels"]).last_hidden_state[:, 1:], masked)
        loss = masked_patch_mse(decoder(tokens, inputs["text"], inputs["text_mask"]), targets, masked)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    # after_vit decodes the masked patches from the caption alone (their ViT output is replaced), so it learns
    # the fixed batch more slowly than after_pe, whose ViT still sees the unmasked neighbours
    assert losses[-1] < (0.7 if strategy == "after_pe" else 0.9) * losses[0], losses


def test_the_mask_ratio_holds_on_every_row() -> None:
    masked = random_patch_mask(3, 10, 0.35, torch.Generator().manual_seed(0))
    assert masked.sum(1).tolist() == [4, 4, 4]
    assert random_patch_mask(2, 10, 0.01).sum(1).tolist() == [1, 1]  # at least one patch
    assert len({tuple(row) for row in masked.tolist()}) > 1  # chosen per row


def test_the_discrete_strategies_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="DALL-E VQ-VAE, which cannot be downloaded"):
        check_decoding_strategy("discrete")
    with pytest.raises(ValueError, match="must be one of"):
        check_decoding_strategy("pixels")
    assert check_decoding_strategy("after_pe") == "after_pe"
