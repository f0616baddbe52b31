"""Multi-positive InfoNCE and clothing-matching InfoNCE against float64 loops over their formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reid.losses import clothing_match, infonce

LAYOUTS = {
    "unique": [0, 1, 2, 3, 4, 5],
    "p3k2": [7, 7, 3, 3, 9, 9],
    "uneven": [1, 1, 1, 2, 5, 5, 6],
    "one_identity": [4, 4, 4, 4],
}


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(a * a for a in v))
    return [a / n for a in v]


def _infonce_direction(a: list[list[float]], b: list[list[float]], pids: list[int], tau: float) -> float:
    total = 0.0
    for i in range(len(a)):
        sims = [sum(x * y for x, y in zip(_unit(a[i]), _unit(b[j]), strict=True)) / tau for j in range(len(b))]
        log_z = math.log(sum(math.exp(s) for s in sims))
        positives = [j for j in range(len(b)) if pids[j] == pids[i]]
        total += -sum(sims[j] - log_z for j in positives) / len(positives)
    return total / len(a)


def _infonce_reference(q: torch.Tensor, g: torch.Tensor, pids: list[int], tau: float) -> float:
    a, b = q.double().tolist(), g.double().tolist()
    return 0.5 * (_infonce_direction(a, b, pids, tau) + _infonce_direction(b, a, pids, tau))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_infonce_matches_float64_loop(layout: str, tau: float) -> None:
    pids = LAYOUTS[layout]
    gen = torch.Generator().manual_seed(len(pids) + int(tau * 100))
    q, g = torch.randn(len(pids), 5, generator=gen) * 3, torch.randn(len(pids), 5, generator=gen)
    got = infonce(q.double(), g.double(), torch.tensor(pids), tau)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(_infonce_reference(q, g, pids, tau), rel=1e-10)
    got32 = infonce(q, g, torch.tensor(pids), tau)
    assert float(got32) == pytest.approx(_infonce_reference(q, g, pids, tau), rel=1e-4)


def test_infonce_with_unique_identities_is_symmetric_cross_entropy_of_eq3() -> None:
    q, g = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    logits = F.normalize(q, dim=1) @ F.normalize(g, dim=1).t() / 0.1
    target = torch.arange(6)
    expected = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    assert float(infonce(q, g, torch.arange(6) * 11, 0.1)) == pytest.approx(float(expected), rel=1e-12)


def test_infonce_is_scale_invariant_and_lower_when_aligned() -> None:
    g = torch.randn(8, 16, dtype=torch.float64)
    pids = torch.arange(8)
    assert float(infonce(g * 5.0, g, pids, 0.07)) == pytest.approx(float(infonce(g, g, pids, 0.07)), rel=1e-12)
    assert float(infonce(g, g, pids, 0.07)) < float(infonce(torch.randn(8, 16, dtype=torch.float64), g, pids, 0.07))


def test_infonce_gradient_pulls_same_identity_pairs_together() -> None:
    gen = torch.Generator().manual_seed(5)
    q = torch.randn(4, 8, generator=gen).requires_grad_(True)
    g = torch.randn(4, 8, generator=gen)
    pids = torch.tensor([0, 0, 1, 1])
    before = F.normalize(q, dim=1) @ F.normalize(g, dim=1).t()
    infonce(q, g, pids, 0.1).backward()
    with torch.no_grad():
        after = F.normalize(q - 0.05 * q.grad, dim=1) @ F.normalize(g, dim=1).t()
    same = pids.view(-1, 1) == pids.view(1, -1)
    assert (after - before)[same].mean() > 0
    assert infonce(q.detach() - 0.05 * q.grad, g, pids, 0.1) < infonce(q.detach(), g, pids, 0.1)


def test_infonce_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="infonce: query .* and gallery .* same shape"):
        infonce(torch.randn(4, 3), torch.randn(5, 3), torch.arange(4), 0.1)
    with pytest.raises(ValueError, match="infonce: 'pids' must be a \\[4\\] tensor"):
        infonce(torch.randn(4, 3), torch.randn(4, 3), torch.arange(3), 0.1)
    with pytest.raises(ValueError, match="'pids' must hold integers"):
        infonce(torch.randn(4, 3), torch.randn(4, 3), torch.zeros(4), 0.1)


def _clothing_match_reference(v: torch.Tensor, t: torch.Tensor, valid: list[bool], tau: float) -> float:
    rows = [i for i, ok in enumerate(valid) if ok]
    a, b = [v.double().tolist()[i] for i in rows], [t.double().tolist()[i] for i in rows]
    own = list(range(len(rows)))
    return 0.5 * (_infonce_direction(a, b, own, tau) + _infonce_direction(b, a, own, tau))


@pytest.mark.parametrize("valid", [[True] * 5, [True, False, True, True, False], [False, True, False, True, True]])
def test_clothing_match_matches_float64_loop(valid: list[bool]) -> None:
    v, t = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    got = clothing_match(v, t, 0.2, torch.tensor(valid))
    assert float(got) == pytest.approx(_clothing_match_reference(v, t, valid, 0.2), rel=1e-10)


def test_clothing_match_needs_two_valid_rows_and_stays_attached() -> None:
    v = torch.randn(3, 4, requires_grad=True)
    got = clothing_match(v, torch.randn(3, 4), 0.1, torch.tensor([False, True, False]))
    assert float(got.detach()) == 0.0 and got.requires_grad
    with pytest.raises(ValueError, match="clothing_match: 'valid' must be a \\[3\\] bool tensor"):
        clothing_match(v, torch.randn(3, 4), 0.1, torch.tensor([True, True]))
