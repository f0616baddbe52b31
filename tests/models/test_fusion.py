"""FusionModule: every kind x alignment x gate, modality weights, missing descriptions, padding, both modalities."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from reid.models.config import FusionConfig
from reid.models.fusion import FUSION_KINDS, FusionModule, build_fusion
from reid.models.mamba import BidirectionalMamba, MambaMixerLayer

IMAGE_DIM, TEXT_DIM, WIDTH, OUT = 20, 12, 16, 8
MIXING_KINDS = ("mamba", "transformer", "mlp")


def fusion(kind: str, align: bool = True, gate: bool = True, seed: int = 0) -> FusionModule:
    torch.manual_seed(seed)
    module = FusionModule(kind, IMAGE_DIM, TEXT_DIM, width=WIDTH, layers=2, d_state=4, align=align, gate=gate,
                          dropout=0.0, out_dim=OUT, heads=2)
    return module.double().eval()


def batch(seed: int = 0, nbatch: int = 3, length: int = 7, text_len: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(nbatch, text_len, dtype=torch.bool)
    mask[0, 3:] = False
    mask[-1, 1:] = False
    return {
        "image_tokens": torch.randn(nbatch, length, IMAGE_DIM, generator=g, dtype=torch.float64),
        "text_tokens": torch.randn(nbatch, text_len, TEXT_DIM, generator=g, dtype=torch.float64),
        "text_mask": mask,
        "has_text": torch.ones(nbatch, dtype=torch.bool),
    }


@pytest.mark.parametrize("kind,align,gate", list(itertools.product(FUSION_KINDS, [True, False], [True, False])))
def test_every_variant_runs_forward_backward_with_finite_outputs(kind: str, align: bool, gate: bool) -> None:
    module = fusion(kind, align, gate).train()
    inputs = batch()
    image = inputs["image_tokens"].requires_grad_()
    text = inputs["text_tokens"].requires_grad_()
    out = module(**inputs)
    assert out["embedding"].shape == (3, OUT) and torch.isfinite(out["embedding"]).all()
    assert torch.allclose(out["w_img"] + out["w_txt"], torch.ones(3, dtype=torch.float64))
    out["embedding"].square().sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0 and torch.isfinite(image.grad).all()
    if kind == "none":
        assert text.grad is None and torch.equal(out["w_img"], torch.ones(3, dtype=torch.float64))
    else:
        assert text.grad is not None and text.grad.abs().sum() > 0 and torch.isfinite(text.grad).all()
    assert all(p.grad is not None for p in module.parameters()), "every parameter takes part in the graph"
    assert isinstance(module.image_align, nn.Sequential if align else nn.Linear)
    if not gate and kind != "none":
        assert torch.equal(out["w_txt"], torch.full((3,), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("kind", MIXING_KINDS)
def test_embedding_follows_the_description_tokens(kind: str) -> None:
    module = fusion(kind)
    inputs = batch()
    changed = dict(inputs, text_tokens=inputs["text_tokens"] + torch.randn_like(inputs["text_tokens"]))
    a, b = module(**inputs)["embedding"], module(**changed)["embedding"]
    assert ((a - b).abs().sum(1) > 1e-6).all()


@pytest.mark.parametrize("kind", MIXING_KINDS)
def test_without_a_description_the_image_alone_decides(kind: str) -> None:
    module = fusion(kind)
    inputs = batch()
    inputs["has_text"] = torch.tensor([True, False, True])
    out = module(**inputs)
    assert out["w_img"][1] == 1.0 and out["w_txt"][1] == 0.0
    assert (out["w_txt"][[0, 2]] > 0).all()
    other_text = dict(inputs, text_tokens=torch.randn_like(inputs["text_tokens"]) * 5)
    again = module(**other_text)["embedding"]
    assert torch.allclose(again[1], out["embedding"][1], atol=1e-12, rtol=0)
    assert not torch.allclose(again[0], out["embedding"][0])
    image_only = module(inputs["image_tokens"], None, None, None)
    assert torch.allclose(image_only["embedding"][1], out["embedding"][1], atol=1e-12, rtol=0)
    assert torch.equal(image_only["w_img"], torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("kind", MIXING_KINDS)
def test_text_padding_never_changes_the_embedding(kind: str) -> None:
    module = fusion(kind)
    inputs = batch()
    reference = module(**inputs)
    g = torch.Generator().manual_seed(5)
    padded = dict(inputs)
    padded["text_tokens"] = torch.cat([inputs["text_tokens"], torch.randn(3, 4, TEXT_DIM, generator=g,
                                                                          dtype=torch.float64) * 9], dim=1)
    padded["text_mask"] = torch.cat([inputs["text_mask"], torch.zeros(3, 4, dtype=torch.bool)], dim=1)
    # the same real tokens, with padding scattered in front of and between them
    order = torch.tensor([5, 0, 6, 1, 7, 2, 8, 3, 4])
    scattered = dict(padded, text_tokens=padded["text_tokens"][:, order], text_mask=padded["text_mask"][:, order])
    for variant in (padded, scattered):
        out = module(**variant)
        assert torch.allclose(out["embedding"], reference["embedding"], atol=1e-10, rtol=0)
        assert torch.allclose(out["w_txt"], reference["w_txt"], atol=1e-12, rtol=0)


def test_none_kind_ignores_text_and_has_no_text_parameters() -> None:
    module = fusion("none")
    inputs = batch()
    out = module(**inputs)
    assert module.text_align is None and module.gate is None and len(module.layers) == 0
    assert torch.equal(out["embedding"], module(inputs["image_tokens"], None, None, None)["embedding"])
    expected = module.proj(module.norm(module.image_align(inputs["image_tokens"])).mean(1))
    assert torch.allclose(out["embedding"], expected)


def test_modality_gate_is_a_softmax_over_the_pooled_aligned_features() -> None:
    module = fusion("mlp")
    inputs = batch()
    out = module(**inputs)
    image = module.image_align(inputs["image_tokens"]).mean(1)
    text = module.text_align(inputs["text_tokens"])
    mask = inputs["text_mask"].double().unsqueeze(-1)
    pooled_text = (text * mask).sum(1) / mask.sum(1)
    weights = torch.softmax(module.gate(torch.cat([image, pooled_text], -1)), -1)
    assert torch.allclose(out["w_img"], weights[:, 0]) and torch.allclose(out["w_txt"], weights[:, 1])


def test_build_fusion_reads_the_config() -> None:
    cfg = FusionConfig(kind="mamba", layers=3, width=32, d_state=8, d_conv=3, expand=3, align=False, gate=False)
    module = build_fusion(cfg, image_dim=40, text_dim=24, out_dim=12, dropout=0.0)
    assert len(module.layers) == 3 and module.gate is None and isinstance(module.text_align, nn.Linear)
    layer = module.layers[0].layer
    assert isinstance(layer, BidirectionalMamba)
    for mixer in (layer.forward_mixer, layer.backward_mixer):
        assert isinstance(mixer, MambaMixerLayer)
        assert tuple(mixer.A_log.shape) == (96, 8) and mixer.conv1d.kernel_size == (3,)
    assert module.proj.out_features == 12 and module.image_align.in_features == 40
    transformer = build_fusion(FusionConfig(kind="transformer", width=32, heads=4, ff_mult=2), 40, 24, 12, 0.1)
    layer = transformer.layers[0].layer
    assert layer.self_attn.num_heads == 4 and layer.linear1.out_features == 64 and layer.norm_first


def test_bad_inputs_are_named() -> None:
    module = fusion("mamba")
    inputs = batch()
    with pytest.raises(ValueError, match="image_tokens must be"):
        module(inputs["image_tokens"][..., :5], inputs["text_tokens"], inputs["text_mask"], inputs["has_text"])
    with pytest.raises(ValueError, match="text_mask must be"):
        module(inputs["image_tokens"], inputs["text_tokens"], inputs["text_mask"][:, :2], inputs["has_text"])
    with pytest.raises(ValueError, match="has_text must be"):
        module(inputs["image_tokens"], inputs["text_tokens"], inputs["text_mask"], inputs["has_text"][:2])
    with pytest.raises(ValueError, match="fusion kind must be one of"):
        FusionModule("lstm", 4, 4)
