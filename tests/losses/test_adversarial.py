"""Clothing adversarial loss (eq. 1) against the naive -mean log(1 - P_pos), its gradient and its stability."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reid.losses import clothing_adversarial


def _reference(v: torch.Tensor, t: torch.Tensor, valid: list[bool], tau: float) -> float:
    rows = [i for i, ok in enumerate(valid) if ok]
    vn = F.normalize(v.double(), dim=1).tolist()
    tn = F.normalize(t.double(), dim=1).tolist()
    total = 0.0
    for i in rows:
        exps = {j: math.exp(sum(a * b for a, b in zip(vn[i], tn[j], strict=True)) / tau) for j in rows}
        p_pos = exps[i] / sum(exps.values())
        total += -math.log(1.0 - p_pos)
    return total / len(rows)


@pytest.mark.parametrize("valid", [[True] * 6, [True, True, False, True, False, True], [False] * 4 + [True] * 2])
@pytest.mark.parametrize("tau", [0.07, 1.0])
def test_adversarial_matches_naive_formula(valid: list[bool], tau: float) -> None:
    gen = torch.Generator().manual_seed(sum(valid))
    v, t = torch.randn(6, 5, generator=gen, dtype=torch.float64), torch.randn(6, 5, generator=gen, dtype=torch.float64)
    got = clothing_adversarial(v, t, tau, torch.tensor(valid))
    assert float(got) == pytest.approx(_reference(v, t, valid, tau), rel=1e-10)


def test_adversarial_gradient_pushes_matched_similarity_down() -> None:
    v = torch.randn(6, 8, requires_grad=True)
    t = torch.randn(6, 8)
    clothing_adversarial(v, t, 0.1).backward()
    with torch.no_grad():
        before = (F.normalize(v, dim=1) * F.normalize(t, dim=1)).sum(1)
        after = (F.normalize(v - 0.05 * v.grad, dim=1) * F.normalize(t, dim=1)).sum(1)
    assert (after < before).all()


def test_adversarial_is_stable_when_matched_pair_dominates() -> None:
    t = torch.eye(4, 16, dtype=torch.float32)
    v = t.clone().requires_grad_(True)  # P_pos ~ 1 - 3 exp(-1/tau)
    tau = 0.01
    loss = clothing_adversarial(v, t, tau)
    value = loss.item()
    expected = -math.log(3.0) + 1.0 / tau  # -log(3 e^{0} / (e^{1/tau} + 3 e^0)) ~ 1/tau - log 3
    assert math.isfinite(value) and value == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(v.grad).all()


def test_adversarial_with_fewer_than_two_valid_rows_is_zero_and_attached() -> None:
    v = torch.randn(3, 4, requires_grad=True)
    got = clothing_adversarial(v, torch.randn(3, 4), 0.1, torch.tensor([False, False, True]))
    assert float(got.detach()) == 0.0 and got.requires_grad
    with pytest.raises(ValueError, match="clothing_adversarial: clo_visual .* and clo_text .* same shape"):
        clothing_adversarial(v, torch.randn(3, 5), 0.1)
