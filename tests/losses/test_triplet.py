"""Batch-hard triplet loss (eq. 4) against a float64 loop, and hardest-sample selection on a known batch."""

from __future__ import annotations

import pytest
import torch

from reid.losses import triplet_batch_hard


def _reference(x: torch.Tensor, pids: list[int], margin: float) -> float:
    rows = x.double().tolist()
    n = len(rows)

    def d(i: int, j: int) -> float:
        return sum((a - b) ** 2 for a, b in zip(rows[i], rows[j], strict=True))

    losses = []
    for a in range(n):
        pos = [d(a, p) for p in range(n) if p != a and pids[p] == pids[a]]
        neg = [d(a, m) for m in range(n) if pids[m] != pids[a]]
        if pos and neg:
            losses.append(max(max(pos) - min(neg) + margin, 0.0))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("pids", [[0, 0, 1, 1, 2, 2], [5, 5, 5, 5, 8, 8, 8, 8], [1, 1, 2, 3, 3, 3, 4]])
@pytest.mark.parametrize("margin", [0.0, 0.3, 5.0])
def test_triplet_matches_float64_loop(pids: list[int], margin: float) -> None:
    x = torch.randn(len(pids), 7, generator=torch.Generator().manual_seed(len(pids)), dtype=torch.float64)
    got = triplet_batch_hard(x, torch.tensor(pids), margin)
    assert float(got) == pytest.approx(_reference(x, pids, margin), rel=1e-9, abs=1e-12)
    got32 = triplet_batch_hard(x.float(), torch.tensor(pids), margin)
    assert float(got32) == pytest.approx(_reference(x, pids, margin), rel=1e-4, abs=1e-5)
    unit = x / x.norm(dim=1, keepdim=True)  # normalize=True: the same loss on the unit-length rows
    normalised = triplet_batch_hard(x * 10.0, torch.tensor(pids), margin, normalize=True)
    assert float(normalised) == pytest.approx(_reference(unit, pids, margin), rel=1e-9, abs=1e-12)


def test_triplet_picks_the_hardest_positive_and_negative() -> None:
    # identity 0 on the x-axis at 0, 1 and 3; identity 1 at 4 and 10 (1-D features).
    x = torch.tensor([[0.0], [1.0], [3.0], [4.0], [10.0]], requires_grad=True)
    pids = torch.tensor([0, 0, 0, 1, 1])
    margin = 1.0
    # anchor 0: hardest pos 3 (d=9), hardest neg 4 (d=16) -> 0
    # anchor 1: hardest pos 0 or 3 (d=4), hardest neg 4 (d=9) -> 0
    # anchor 2: hardest pos 0 (d=9), hardest neg 4 (d=1) -> 9
    # anchor 3: hardest pos 10 (d=36), hardest neg 3 (d=1) -> 36
    # anchor 4: hardest pos 4 (d=36), hardest neg 3 (d=49) -> 0
    loss = triplet_batch_hard(x, pids, margin)
    assert loss.item() == pytest.approx((0 + 0 + 9 + 36 + 0) / 5)
    loss.backward()
    # anchor 3's terms: d(3,4) - d(3,2); anchor 2's: d(2,0) - d(2,3); only these samples get gradient.
    grad = x.grad.squeeze(1).tolist()
    assert grad[1] == 0.0
    assert grad[4] != 0.0 and grad[0] != 0.0


def test_triplet_excludes_anchors_without_positive_or_negative() -> None:
    x = torch.randn(5, 3, dtype=torch.float64)
    pids = [0, 0, 1, 2, 3]  # only anchors 0 and 1 have a positive
    got = triplet_batch_hard(x, torch.tensor(pids), 0.3)
    assert float(got) == pytest.approx(_reference(x, pids, 0.3), rel=1e-10)
    x_single = torch.randn(4, 3, requires_grad=True)
    for layout in ([0, 1, 2, 3], [7, 7, 7, 7]):
        zero = triplet_batch_hard(x_single, torch.tensor(layout), 0.3)
        assert float(zero.detach()) == 0.0 and zero.requires_grad


def test_triplet_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="triplet_batch_hard: 'features' must be \\[N, D\\]"):
        triplet_batch_hard(torch.randn(4), torch.arange(4), 0.3)
    with pytest.raises(ValueError, match="triplet_batch_hard: 'pids' must be a \\[4\\] tensor"):
        triplet_batch_hard(torch.randn(4, 2), torch.arange(5), 0.3)
