"""Local concept alignment: every kind lowers its own loss on a fixed batch; an image without a part adds no
term for it (the loss's formula: tests/losses/test_local.py)."""

from __future__ import annotations

import pytest
import torch

from reid.losses.local import local_alignment_loss
from reid.models.local_align import LOCAL_ALIGN_KINDS, build_local_aligner

B, L, C, T, D, DT = 6, 16, 3, 5, 12, 10


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(B, C, L)
    for b in range(B):
        for c in range(C):
            start = int(torch.randint(0, L - 4, (1,), generator=g))
            masks[b, c, start:start + 4] = 1.0
    masks[0, 2] = 0.0  # image 0 has no part 2
    phrase_mask = torch.ones(B, C, T, dtype=torch.long)
    phrase_mask[:, :, 4:] = 0
    return {"patch_tokens": torch.randn(B, L, D, generator=g), "part_masks": masks,
            "phrase_tokens": torch.randn(B, C, T, DT, generator=g), "phrase_mask": phrase_mask}


@pytest.mark.parametrize("kind", [k for k in LOCAL_ALIGN_KINDS if k != "none"])
def test_each_kind_lowers_its_own_loss_on_a_fixed_batch(kind: str) -> None:
    torch.manual_seed(0)
    aligner = build_local_aligner(kind, D, DT, dim=16, heads=2)
    inputs = batch()
    tokens = inputs["patch_tokens"].clone().requires_grad_()
    optimizer = torch.optim.Adam([*aligner.parameters(), tokens], lr=1e-2)
    losses = []
    for _ in range(20):
        parts = aligner(**{**inputs, "patch_tokens": tokens})
        loss = local_alignment_loss(parts.scores, 0.1, tokens, parts.positives)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("kind", [k for k in LOCAL_ALIGN_KINDS if k != "none"])
def test_an_image_without_a_part_contributes_no_term_for_it(kind: str) -> None:
    torch.manual_seed(0)
    aligner = build_local_aligner(kind, D, DT, dim=16, heads=2).eval()
    inputs = batch()
    parts = aligner(**inputs)
    assert 0 not in parts.rows[2].tolist() and parts.scores[2].shape == (B - 1, B - 1)
    assert parts.rows[0].tolist() == list(range(B))
    changed = dict(inputs, phrase_tokens=inputs["phrase_tokens"].clone())
    changed["phrase_tokens"][0, 2] += 5.0  # image 0's phrase for the part it lacks
    again = aligner(**changed)
    for before, after in zip(parts.scores, again.scores, strict=True):
        assert torch.allclose(before, after, atol=1e-6)
