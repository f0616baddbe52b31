"""The ViT's convolutional stem: the same token grid as the patch projection, power-of-two patches only, and
a checkpoint that rebuilds it."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from reid.models.conv_stem import ConvStem
from reid.models.encoders import build_image_encoder
from reid.models.export import load_inference_checkpoint, save_inference_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from test_export import _config, _embeddings, _model  # noqa: E402

VIT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.mark.parametrize("patch,size", [(16, (128, 64)), (8, (32, 16))])
def test_conv_stem_keeps_the_token_grid_and_replaces_the_projection(patch: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    patchify = build_image_encoder(None, {**VIT, "patch_size": patch}, size)
    conv = build_image_encoder(None, {**VIT, "patch_size": patch}, size, stem="conv")
    pixels = torch.randn(2, 3, *size)
    assert conv(pixels).shape == patchify(pixels).shape == (2, 1 + (size[0] // patch) * (size[1] // patch), 32)
    stem = conv.vit.embeddings.patch_embeddings.projection
    assert isinstance(stem, ConvStem) and isinstance(patchify.vit.embeddings.patch_embeddings.projection,
                                                     torch.nn.Conv2d)
    strides = [m.stride for m in stem.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(strides) == {16: 4, 8: 3}[patch] and all(s == (2, 2) for s in strides)


def test_conv_stem_refuses_a_patch_that_is_not_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        ConvStem(32, 12)
    with pytest.raises(ValueError, match="must be 'patch' or 'conv'"):
        build_image_encoder(None, {**VIT, "patch_size": 8}, (32, 16), stem="cnn")


def test_a_checkpoint_with_a_conv_stem_rebuilds_it(tmp_path: Path) -> None:
    config = _config()
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, vision_stem="conv"))
    model = _model(config)
    save_inference_checkpoint(model, config, str(tmp_path / "ckpt"))
    loaded, loaded_config = load_inference_checkpoint(str(tmp_path / "ckpt"))
    assert loaded_config.model.vision_stem == "conv"
    for before, after in zip(_embeddings(model), _embeddings(loaded), strict=True):
        assert torch.equal(before, after)
