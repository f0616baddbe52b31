"""The fusion mechanisms act as paper 3.4 says: the modality gate decides how much each modality moves the
embedding, image positions see the description, and each table-2 switch changes the forward pass."""

from __future__ import annotations

import math

import pytest
import torch

from reid.models.fusion import FusionModule

IMAGE_DIM, TEXT_DIM, WIDTH, OUT = 24, 16, 32, 16
MIXING_KINDS = ("mamba", "transformer", "mlp")
CROSS_MODAL_KINDS = ("mamba", "transformer")


def fusion(kind: str = "mamba", seed: int = 0, **options: object) -> FusionModule:
    torch.manual_seed(seed)
    settings = {"width": WIDTH, "layers": 2, "d_state": 8, "dropout": 0.0, "out_dim": OUT, "heads": 4, **options}
    return FusionModule(kind, IMAGE_DIM, TEXT_DIM, **settings).double().eval()


def inputs(seed: int, nbatch: int = 6, length: int = 12, text_len: int = 9) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(nbatch, text_len, dtype=torch.bool)
    mask[1, 5:] = False
    return {
        "image_tokens": torch.randn(nbatch, length, IMAGE_DIM, generator=g, dtype=torch.float64),
        "text_tokens": torch.randn(nbatch, text_len, TEXT_DIM, generator=g, dtype=torch.float64),
        "text_mask": mask,
    }


def force_gate(module: FusionModule, w_img: float) -> None:
    """Make the softmax gate give exactly ``(w_img, 1 - w_img)`` for every input."""
    with torch.no_grad():
        module.gate.weight.zero_()
        module.gate.bias.copy_(torch.tensor([math.log(w_img), math.log(1.0 - w_img)]))


def sensitivity(module: FusionModule, swap: str) -> float:
    """Mean L2 change of the embedding when the image (or the text) tokens are replaced by others'."""
    a, b = inputs(1), inputs(2)
    changed = dict(a, **{swap: b[swap]})
    return float((module(**a)["embedding"] - module(**changed)["embedding"]).norm(dim=1).mean())


def gated_sensitivities(kind: str) -> dict[float, dict[str, float]]:
    """``{w_img: {"image_tokens": .., "text_tokens": ..}}`` for the gate forced to 0.05 and to 0.95."""
    module = fusion(kind)
    moved = {}
    for w_img in (0.05, 0.95):
        force_gate(module, w_img)
        assert torch.allclose(module(**inputs(1))["w_img"], torch.full((6,), w_img, dtype=torch.float64))
        with torch.no_grad():
            moved[w_img] = {swap: sensitivity(module, swap) for swap in ("image_tokens", "text_tokens")}
    return moved


@pytest.mark.parametrize("kind", ["mamba", "mlp"])
def test_the_modality_gate_scales_each_modalitys_influence(kind: str) -> None:
    """w_img 0.05 vs 0.95: swapping the image moves the embedding at most a fifth as much (and the text the
    reverse). A weight applied before a pre-norm stack and a per-token norm is normalised away and fails this."""
    moved = gated_sensitivities(kind)
    assert moved[0.05]["image_tokens"] <= 0.2 * moved[0.95]["image_tokens"], moved
    assert moved[0.95]["text_tokens"] <= 0.2 * moved[0.05]["text_tokens"], moved


def test_the_gate_of_the_transformer_row_moves_influence_the_same_way() -> None:
    """Self-attention carries much of the image into the text positions (and back) already at init, so the
    transformer row's streams are both cross-modal: the gate still shifts the influence, less sharply."""
    moved = gated_sensitivities("transformer")
    assert moved[0.05]["image_tokens"] < 0.9 * moved[0.95]["image_tokens"], moved
    assert moved[0.95]["text_tokens"] < 0.9 * moved[0.05]["text_tokens"], moved


@pytest.mark.parametrize("kind", CROSS_MODAL_KINDS)
def test_image_positions_depend_on_the_description(kind: str) -> None:
    """Every image position's output changes with the description (a causal scan, image first, fails)."""
    module = fusion(kind)
    a = inputs(1)
    other = dict(a, text_tokens=a["text_tokens"] + torch.randn_like(a["text_tokens"]))
    length = a["image_tokens"].shape[1]
    before = module.contextualise(**a).tokens[:, :length]
    after = module.contextualise(**other).tokens[:, :length]
    change = (before - after).norm(dim=-1)  # [B, L]
    assert (change > 1e-6 * before.norm(dim=-1)).all(), change.min()


def test_image_positions_of_the_per_token_kind_never_see_the_description() -> None:
    """The "w/o Mamba" row mixes nothing across positions: only the gate combines the modalities."""
    module = fusion("mlp")
    a = inputs(1)
    other = dict(a, text_tokens=a["text_tokens"] + torch.randn_like(a["text_tokens"]))
    length = a["image_tokens"].shape[1]
    assert torch.equal(module.contextualise(**a).tokens[:, :length],
                       module.contextualise(**other).tokens[:, :length])


def _relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm(dim=1) / b.norm(dim=1)).mean())


def _shared_copy(reference: FusionModule, **options: object) -> FusionModule:
    """A module with one table-2 switch changed and every weight it shares with ``reference`` copied."""
    variant = fusion(seed=1, **options)
    own = variant.state_dict()
    own.update({k: v for k, v in reference.state_dict().items() if k in own and own[k].shape == v.shape})
    variant.load_state_dict(own)
    return variant


def test_without_mamba_the_image_positions_lose_the_description() -> None:
    """Table 2 "w/o Mamba": the same weights with per-token layers; image positions stop seeing the text."""
    full = fusion("mamba")
    variant = _shared_copy(full, kind="mlp")
    a = inputs(3)
    other = dict(a, text_tokens=a["text_tokens"] + torch.randn_like(a["text_tokens"]))
    length = a["image_tokens"].shape[1]
    with torch.no_grad():
        moved = {name: float((m.contextualise(**a).tokens[:, :length]
                              - m.contextualise(**other).tokens[:, :length]).norm())
                 for name, m in (("full", full), ("variant", variant))}
        assert _relative_change(variant(**a)["embedding"], full(**a)["embedding"]) > 0.1
    assert moved["variant"] == 0.0 and moved["full"] > 0.0, moved


def test_without_the_gate_both_modalities_weigh_alike() -> None:
    """Table 2 "w/o gate": a gate leaning to the image (0.9) makes the image move the embedding several
    times more than the text; with the gate off (0.5 each, every other weight equal) that lean is gone."""
    full = fusion("mamba")
    force_gate(full, 0.9)
    variant = _shared_copy(full, gate=False)
    with torch.no_grad():
        lean = {name: sensitivity(m, "image_tokens") / sensitivity(m, "text_tokens")
                for name, m in (("full", full), ("variant", variant))}
    assert lean["full"] > 3.0 * lean["variant"], lean


def test_without_alignment_the_aligners_are_affine_and_the_embedding_moves() -> None:
    """Table 2 "w/o alignment": one Linear per modality instead of the MLP (an affine map of the tokens)."""
    full = fusion("mamba")
    variant = _shared_copy(full, align=False)
    a, b = inputs(3)["image_tokens"], inputs(4)["image_tokens"]
    with torch.no_grad():
        for module, affine in ((variant, True), (full, False)):
            f = module.image_align
            gap = (f(a + b) - f(a) - f(b) + f(torch.zeros_like(a))).abs().max()
            assert (gap < 1e-10) == affine, gap
        assert _relative_change(variant(**inputs(3))["embedding"], full(**inputs(3))["embedding"]) > 0.1
