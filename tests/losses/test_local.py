"""SAP-SAM's losses on plain tensors: the local alignment InfoNCE per part class (with shared-phrase positives) and
the masked-patch MSE of image decoding, each against its formula."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reid.losses.local import local_alignment_loss, masked_patch_mse


def test_the_loss_is_the_symmetric_infonce_of_each_class() -> None:
    g = torch.Generator().manual_seed(1)
    scores = [torch.rand(4, 4, generator=g) * 2 - 1, torch.rand(1, 1, generator=g), torch.rand(3, 3, generator=g)]
    expected = []
    for s in (scores[0], scores[2]):  # the single-part class adds nothing
        target = torch.arange(len(s))
        expected.append(0.5 * (F.cross_entropy(s / 0.2, target) + F.cross_entropy(s.t() / 0.2, target)))
    assert torch.allclose(local_alignment_loss(scores, 0.2, scores[0]), torch.stack(expected).mean())
    empty = local_alignment_loss([], 0.2, scores[0].requires_grad_())
    assert empty.item() == 0.0 and empty.requires_grad


def test_pairs_sharing_a_phrase_count_as_matches() -> None:
    scores = torch.tensor([[0.9, 0.8, -0.2], [0.8, 0.9, -0.1], [-0.3, 0.0, 0.7]])
    same = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    with_shared = local_alignment_loss([scores], 0.1, scores, [same])
    logp_rows, logp_cols = F.log_softmax(scores / 0.1, dim=1), F.log_softmax(scores.t() / 0.1, dim=1)
    expected = 0.5 * (-(logp_rows * same).sum(1) / same.sum(1) - (logp_cols * same.t()).sum(1) / same.sum(1)).mean()
    assert torch.allclose(with_shared, expected)
    for positives, sign in ((None, 1.0), ([same], -1.0)):  # diagonal only: pushed away; shared: pulled together
        leaf = scores.clone().requires_grad_()
        local_alignment_loss([leaf], 0.1, leaf, positives).backward()
        assert sign * float(leaf.grad[0, 1]) > 0


def test_masked_patch_mse_is_the_mean_over_masked_patches_of_the_per_patch_mse() -> None:
    g = torch.Generator().manual_seed(0)
    predicted, targets = torch.randn(2, 4, 6, generator=g), torch.randn(2, 4, 6, generator=g)
    mask = torch.tensor([[True, False, True, False], [False, False, False, True]])
    per_patch = ((predicted - targets) ** 2).mean(-1)
    assert torch.allclose(masked_patch_mse(predicted, targets, mask), per_patch[mask].mean())
    moved = targets.clone()
    moved[~mask] += 10.0  # unmasked targets change: the loss does not
    assert torch.equal(masked_patch_mse(predicted, moved, mask), masked_patch_mse(predicted, targets, mask))
    assert masked_patch_mse(predicted, targets, torch.zeros_like(mask)).item() == 0.0  # nothing masked: 0, not NaN
