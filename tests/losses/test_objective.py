"""The objective: names follow the config switches, None inputs skip their terms, values equal the functions."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F

from reid.losses import (
    FixedWeights,
    GradNorm,
    GradNormConfig,
    LossConfig,
    clothing_adversarial,
    compute_losses,
    create_balancer,
    enabled_terms,
    hsic,
    infonce,
    triplet_batch_hard,
    weighted_total,
)
from reid.losses.objective import TERMS

B, E, D = 8, 6, 10


def _outputs(bdam: bool = True) -> dict[str, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(3)
    out: dict[str, torch.Tensor | None] = {
        "query_emb": torch.randn(B, E, generator=gen),
        "gallery_emb": torch.randn(B, E, generator=gen),
        "f_id_gate": None, "f_clo_gate": None, "bdam_gate": None, "clo_proj": None, "clo_text_emb": None,
        "has_clo_desc": None,
    }
    if bdam:
        out.update(f_id_gate=torch.randn(B, D, generator=gen), f_clo_gate=torch.randn(B, D, generator=gen),
                   bdam_gate=torch.rand(B, D, generator=gen), clo_proj=torch.randn(B, E, generator=gen),
                   clo_text_emb=torch.randn(B, E, generator=gen),
                   has_clo_desc=torch.tensor([True, True, False, True, True, True, False, True]))
    return out


BATCH = {"pids": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])}
PAPER_TERMS = TERMS[:6]  # the seed paper's; SAP-SAM's two follow (see test_sapsam_terms_*)


@pytest.mark.parametrize("switches", list(itertools.product([True, False], repeat=6))[::7])
@pytest.mark.parametrize("bdam", [True, False])
def test_names_follow_switches_and_bdam(switches: tuple[bool, ...], bdam: bool) -> None:
    flags = dict(zip(PAPER_TERMS, switches, strict=True))
    flags["clothing_match"] &= not flags["adversarial"]  # the two are refused together
    switches = tuple(flags[t] for t in PAPER_TERMS)
    cfg = LossConfig(**flags)
    losses = compute_losses(_outputs(bdam), BATCH, cfg)
    expected = [t for t, on in zip(PAPER_TERMS, switches, strict=True)
                if on and (bdam or t in ("infonce", "triplet"))]
    assert list(losses) == expected == enabled_terms(cfg, bdam=bdam)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())


def test_values_equal_the_loss_functions() -> None:
    out = _outputs()
    cfg = LossConfig(hsic_kernel="rbf", temperature=0.2, triplet_margin=0.5)
    losses = compute_losses(out, BATCH, cfg)
    pids = BATCH["pids"]
    assert torch.equal(losses["infonce"], infonce(out["query_emb"], out["gallery_emb"], pids, 0.2))
    assert torch.equal(losses["triplet"], triplet_batch_hard(out["f_id_gate"], pids, 0.5, normalize=True))
    assert torch.equal(losses["adversarial"],
                       clothing_adversarial(out["clo_proj"], out["clo_text_emb"], 0.2, out["has_clo_desc"]))
    assert torch.equal(losses["hsic"], hsic(out["f_id_gate"], out["f_clo_gate"], kernel="rbf"))


def test_triplet_uses_gallery_embedding_without_bdam() -> None:
    out = _outputs(bdam=False)
    losses = compute_losses(out, BATCH, LossConfig())
    assert torch.equal(losses["triplet"], triplet_batch_hard(out["gallery_emb"], BATCH["pids"], 0.3, normalize=True))


def test_missing_required_inputs_raise_with_the_key() -> None:
    out = _outputs()
    out["query_emb"] = None
    with pytest.raises(KeyError, match="outputs\\['query_emb'\\] is missing"):
        compute_losses(out, BATCH, LossConfig())
    with pytest.raises(KeyError, match="batch\\['pids'\\] is missing"):
        compute_losses(_outputs(), {}, LossConfig())


def test_weighted_total() -> None:
    losses = {"a": torch.tensor(2.0, requires_grad=True), "b": torch.tensor(3.0)}
    total = weighted_total(losses, {"a": 0.5, "b": torch.tensor(2.0), "unused": 9.0})
    assert total.item() == 7.0 and total.requires_grad
    with pytest.raises(KeyError, match="no weight for loss 'b'"):
        weighted_total(losses, {"a": 1.0})


def test_loss_config_validates() -> None:
    with pytest.raises(ValueError, match="temperature must be > 0"):
        LossConfig(temperature=0.0)
    with pytest.raises(ValueError, match="triplet_margin"):
        dataclasses.replace(LossConfig(), triplet_margin=-1.0)


def test_without_gate_there_is_no_gate_regularization() -> None:
    out = _outputs()
    out["bdam_gate"] = None
    losses = compute_losses(out, BATCH, LossConfig())
    assert list(losses) == enabled_terms(LossConfig(), bdam=True, gate=False) == [
        "infonce", "triplet", "adversarial", "hsic"]


def test_batch_without_clothing_descriptions_keeps_clothing_terms_at_zero() -> None:
    out = _outputs()
    out["clo_proj"] = out["clo_proj"].clone().requires_grad_(True)
    for name, cfg in (("adversarial", LossConfig()), ("clothing_match",
                                                       LossConfig(adversarial=False, clothing_match=True))):
        for text, valid in ((None, None), (out["clo_text_emb"], torch.zeros(B, dtype=torch.bool))):
            losses = compute_losses({**out, "clo_text_emb": text, "has_clo_desc": valid}, BATCH, cfg)
            assert list(losses) == enabled_terms(cfg)
            assert losses[name].item() == 0.0 and losses[name].requires_grad


def test_no_bdam_model_outputs_use_pooled_feature_for_triplet() -> None:
    out = _outputs(bdam=False)
    out["f_id_gate"] = torch.randn(B, D)  # the model's pooled encoder feature without BDAM
    losses = compute_losses(out, BATCH, LossConfig())
    assert list(losses) == enabled_terms(LossConfig(), bdam=False) == ["infonce", "triplet"]
    assert torch.equal(losses["triplet"], triplet_batch_hard(out["f_id_gate"], BATCH["pids"], 0.3, normalize=True))


def test_gradnorm_balances_the_papers_four_tasks_and_gate_reg_has_a_fixed_weight() -> None:
    """Eq. 6 balances InfoNCE, triplet, adversarial and decoupling; gate regularisation is added at
    ``loss.gate_reg_weight`` and never balanced (unless ``gradnorm.include_gate_reg``)."""
    balancer = create_balancer(LossConfig(gate_reg_weight=0.25), GradNormConfig())
    assert isinstance(balancer, GradNorm)
    assert balancer.task_names == ("infonce", "triplet", "adversarial", "hsic")
    losses = compute_losses(_outputs(), BATCH, LossConfig())
    total = balancer.weighted_loss(losses)
    expected = sum(losses[k] for k in balancer.task_names) + 0.25 * losses["gate_reg"]  # weights start at 1
    assert torch.allclose(total, expected)
    assert balancer.weights()["gate_reg"] == 0.25
    assert float(balancer.log_weights.detach().exp().sum()) == pytest.approx(4.0)
    both = create_balancer(LossConfig(), GradNormConfig(include_gate_reg=True))
    assert both.task_names == ("infonce", "triplet", "adversarial", "hsic", "gate_reg")
    fixed = create_balancer(LossConfig(gate_reg_weight=0.25), GradNormConfig(enabled=False))
    assert isinstance(fixed, FixedWeights) and fixed.weights()["gate_reg"] == 0.25
    assert fixed.weights()["infonce"] == 1.0


def test_the_gate_regulariser_never_enters_the_gradnorm_update() -> None:
    model = torch.nn.Linear(3, 3)
    x = torch.randn(5, 3)
    shared = list(model.parameters())
    balancer = create_balancer(LossConfig(), GradNormConfig())
    out = model(x)
    losses = {"infonce": out.square().mean(), "triplet": out.abs().mean(), "adversarial": out.mean().abs(),
              "hsic": (out ** 4).mean(), "gate_reg": 1e3 * out.square().sum()}
    balancer.update(losses, shared)
    assert not any(k.endswith("/gate_reg") for k in balancer.last_stats if k.startswith(("grad_norm", "target")))


def test_clothing_terms_do_not_reach_the_text_side_unless_allowed() -> None:
    out = _outputs()
    clo_text = out["clo_text_emb"].clone().requires_grad_()
    out["clo_text_emb"], out["clo_proj"] = clo_text, out["clo_proj"].clone().requires_grad_()
    only_clothing = {"infonce": False, "triplet": False, "hsic": False, "gate_reg": False}
    for moves, cfg in ((False, LossConfig(**only_clothing)),
                       (True, LossConfig(clothing_moves_text=True, **only_clothing))):
        loss = compute_losses(out, BATCH, cfg)["adversarial"]
        (grad,) = torch.autograd.grad(loss, [clo_text], allow_unused=True)
        assert (grad is not None and grad.abs().sum() > 0) == moves


def test_adversarial_and_clothing_match_together_are_refused() -> None:
    with pytest.raises(ValueError, match="adversarial and loss.clothing_match cannot both be true"):
        LossConfig(adversarial=True, clothing_match=True)


def test_sapsam_terms_are_named_computed_and_balanced() -> None:
    from reid.losses.local import local_alignment_loss, masked_patch_mse
    from reid.models.local_align import PartScores

    cfg = LossConfig(temperature=0.1)
    assert enabled_terms(cfg, image_decoding=True) == [*enabled_terms(LossConfig()), "image_decoding"]
    assert enabled_terms(cfg, local_align=True, image_decoding=True)[-2:] == ["local_align", "image_decoding"]
    assert enabled_terms(cfg, bdam=False, local_align=True, image_decoding=True) == [
        "infonce", "triplet", "local_align", "image_decoding"]
    assert "image_decoding" not in enabled_terms(cfg, local_align=True)  # a model without a decoder
    gen = torch.Generator().manual_seed(0)
    parts = PartScores([torch.arange(3)], [torch.randn(3, 3, generator=gen)])
    decoded, target = torch.randn(2, 5, 6, generator=gen), torch.randn(2, 5, 6, generator=gen)
    mask = torch.tensor([[True, False, True, False, False], [False, False, False, False, True]])
    out = {**_outputs(), "local_parts": parts, "decoded": decoded, "decoded_target": target, "decoded_mask": mask}
    losses = compute_losses(out, BATCH, cfg)
    logits = parts.scores[0] / 0.1
    target_ids = torch.arange(3)
    expected = 0.5 * (F.cross_entropy(logits, target_ids) + F.cross_entropy(logits.t(), target_ids))
    assert torch.allclose(losses["local_align"], expected)
    assert torch.allclose(losses["image_decoding"], ((decoded - target)[mask] ** 2).mean())
    assert torch.equal(losses["local_align"], local_alignment_loss(parts.scores, 0.1, out["query_emb"]))
    assert torch.equal(losses["image_decoding"], masked_patch_mse(decoded, target, mask))
    on = create_balancer(cfg, GradNormConfig(), local_align=True, image_decoding=True)
    assert {"local_align", "image_decoding"} <= set(on.task_names)
    off = create_balancer(LossConfig(local_align=0.3, image_decoding_weight=2.0), GradNormConfig(enabled=False),
                          local_align=True, image_decoding=True)
    assert off.weights()["local_align"] == pytest.approx(0.3) and off.weights()["image_decoding"] == 2.0
