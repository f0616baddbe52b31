"""BidirectionalMamba: per-row reversal of real tokens, padding invariance, both scan directions, and the CPU
kernel path equal to transformers' own forward on the same weights."""

from __future__ import annotations

import pytest
import torch
from transformers.models.mamba.modeling_mamba import MambaMixer

from reid.models.mamba import BidirectionalMamba, reverse_real_tokens

WIDTH = 16


def layer(seed: int = 0) -> BidirectionalMamba:
    torch.manual_seed(seed)
    return BidirectionalMamba(WIDTH, d_state=4, d_conv=3).double()


def padded(lengths: list[int], total: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), total, WIDTH, generator=g, dtype=torch.float64)
    mask = torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]
    return x, mask


def test_reverse_real_tokens_flips_real_positions_and_keeps_padding() -> None:
    x = torch.arange(10, dtype=torch.float64).view(2, 5, 1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out = reverse_real_tokens(x, mask)
    assert out[0, :, 0].tolist() == [2, 1, 0, 3, 4] and out[1, :, 0].tolist() == [9, 8, 7, 6, 5]
    assert torch.equal(reverse_real_tokens(out, mask), x)


def test_every_position_sees_tokens_on_both_sides() -> None:
    module = layer()
    x, mask = padded([9], 9)
    base = module(x, mask)
    later, earlier = x.clone(), x.clone()
    later[0, 8] += 1.0
    earlier[0, 0] += 1.0
    assert (module(later, mask) - base)[0, 0].abs().max() > 1e-8  # the first token sees the last
    assert (module(earlier, mask) - base)[0, 8].abs().max() > 1e-8  # and the last the first


def test_padding_changes_no_real_position() -> None:
    module = layer()
    x, mask = padded([7, 4], 7)
    out = module(x, mask)
    g = torch.Generator().manual_seed(9)
    longer = torch.cat([x, 5 * torch.randn(2, 6, WIDTH, generator=g, dtype=torch.float64)], dim=1)
    longer_mask = torch.cat([mask, torch.zeros(2, 6, dtype=torch.bool)], dim=1)
    longer[1, 4:7] = 7.0  # row 1's own padding, now filled with other values
    again = module(longer, longer_mask)
    assert torch.allclose(again[0, :7], out[0], atol=1e-12, rtol=0)
    assert torch.allclose(again[1, :4], out[1, :4], atol=1e-12, rtol=0)


@pytest.mark.parametrize("lengths", [[11, 11], [11, 6]])
def test_cpu_kernel_path_equals_the_library_forward(lengths: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """The same layer through the numba kernels and through transformers' PyTorch path (the mamba-ssm CUDA
    path is checked against the same library maths by jobs/gpu_check.py on a GPU)."""
    module = layer()
    x, mask = padded(lengths, 11)
    x.requires_grad_()
    out = module(x, mask)
    grad = torch.randn_like(out)
    kernel_grads = torch.autograd.grad(out, [x, *module.parameters()], grad)
    monkeypatch.setattr("reid.models.mamba.mixer.MambaMixerLayer.path_for", staticmethod(lambda h: "library"))
    ref = module(x, mask)
    ref_grads = torch.autograd.grad(ref, [x, *module.parameters()], grad)
    real = mask[..., None]
    scale = ref.abs().max()
    assert (((out - ref) * real).abs().max() / scale).item() < 1e-5
    assert isinstance(module.forward_mixer, MambaMixer)
    for a, b in zip(kernel_grads, ref_grads, strict=True):
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-5
