"""BDAM (paper 3.2): a float64 reference of the blocks, the gate relations, and every switch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reid.models.bdam import Bdam, PreNormAttention

DIM, HEADS, TOKENS, BATCH = 16, 2, 5, 3


def _bdam(**kwargs: object) -> Bdam:
    torch.manual_seed(0)
    return Bdam(DIM, **{"blocks": 2, "heads": HEADS, "ffn_ratio": 2.0, "dropout": 0.0, **kwargs}).double().eval()


def _tokens(seed: int = 1) -> torch.Tensor:
    return torch.randn(BATCH, TOKENS, DIM, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _ref_attention(module: PreNormAttention, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """x + W_o softmax(Q K^T / sqrt(d)) V, heads written out by hand."""
    mha = module.attn
    q_in = F.layer_norm(x, (DIM,), module.norm.weight, module.norm.bias)
    kv_in = q_in if context is None else F.layer_norm(
        context, (DIM,), module.context_norm.weight, module.context_norm.bias
    )
    wq, wk, wv = mha.in_proj_weight.chunk(3)
    bq, bk, bv = mha.in_proj_bias.chunk(3)
    q, k, v = q_in @ wq.T + bq, kv_in @ wk.T + bk, kv_in @ wv.T + bv
    head = DIM // HEADS
    outs = []
    for h in range(HEADS):
        sl = slice(h * head, (h + 1) * head)
        scores = q[..., sl] @ k[..., sl].transpose(1, 2) / head**0.5
        outs.append(torch.softmax(scores, dim=-1) @ v[..., sl])
    return x + torch.cat(outs, dim=-1) @ mha.out_proj.weight.T + mha.out_proj.bias


def _ref_ffn(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    norm, fc1, _, _, fc2, _ = module.net
    hidden = F.gelu(F.layer_norm(x, (DIM,), norm.weight, norm.bias) @ fc1.weight.T + fc1.bias)
    return x + hidden @ fc2.weight.T + fc2.bias


def _reference(bdam: Bdam, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    x_id = tokens @ bdam.to_identity.weight.T + bdam.to_identity.bias
    x_clo = tokens @ bdam.to_clothing.weight.T + bdam.to_clothing.bias
    for block in bdam.blocks:
        x_id, x_clo = _ref_attention(block.id_self, x_id, None), _ref_attention(block.clo_self, x_clo, None)
        if block.id_cross is not None:
            x_id, x_clo = _ref_attention(block.id_cross, x_id, x_clo), _ref_attention(block.clo_cross, x_clo, x_id)
        x_id, x_clo = _ref_ffn(block.id_ffn, x_id), _ref_ffn(block.clo_ffn, x_clo)
    x_id = F.layer_norm(x_id, (DIM,), bdam.id_norm.weight, bdam.id_norm.bias)
    x_clo = F.layer_norm(x_clo, (DIM,), bdam.clo_norm.weight, bdam.clo_norm.bias)
    f_id, f_clo = x_id.mean(1), x_clo.mean(1)
    g = torch.sigmoid(torch.cat([f_id, f_clo], -1) @ bdam.gate.weight.T + bdam.gate.bias)
    return {"f_id": f_id, "f_clo": f_clo, "g": g, "id_tokens": x_id * g[:, None], "f_id_gate": g * f_id,
            "f_clo_gate": (1 - g) * f_clo}


@pytest.mark.parametrize("cross", [True, False])
def test_bdam_matches_float64_reference(cross: bool) -> None:
    bdam, tokens = _bdam(cross_attention=cross), _tokens()
    out, ref = bdam(tokens), _reference(bdam, tokens)
    for name in ("f_id", "f_clo", "id_tokens", "f_id_gate", "f_clo_gate"):
        torch.testing.assert_close(getattr(out, name), ref[name], rtol=1e-10, atol=1e-10, msg=name)
    torch.testing.assert_close(out.gate, ref["g"], rtol=1e-10, atol=1e-10)


def test_gate_relations() -> None:
    out = _bdam()(_tokens())
    g = out.gate
    assert g.shape == (BATCH, DIM)
    assert bool(((g > 0) & (g < 1)).all())
    assert torch.equal(out.f_id_gate, g * out.f_id)
    assert torch.equal(out.f_clo_gate, (1 - g) * out.f_clo)
    torch.testing.assert_close(out.id_tokens.mean(1), out.f_id_gate)  # the gate is broadcast over the tokens


def test_no_gate_passes_features_through() -> None:
    out = _bdam(gate=False)(_tokens())
    assert out.gate is None
    assert torch.equal(out.f_id_gate, out.f_id) and torch.equal(out.f_clo_gate, out.f_clo)
    torch.testing.assert_close(out.id_tokens.mean(1), out.f_id)


@pytest.mark.parametrize("cross", [True, False])
def test_cross_attention_mixes_branches(cross: bool) -> None:
    bdam, tokens = _bdam(cross_attention=cross), _tokens()
    before = bdam(tokens)
    with torch.no_grad():
        bdam.to_clothing.weight.add_(0.5 * torch.randn_like(bdam.to_clothing.weight))
    after = bdam(tokens)
    assert not torch.allclose(before.f_clo, after.f_clo)
    assert torch.equal(before.f_id, after.f_id) is (not cross)


def test_block_count_and_switches_shape_the_parameters() -> None:
    full, no_cross, one = _bdam(), _bdam(cross_attention=False), _bdam(blocks=1)
    assert len(full.blocks) == 2 and len(one.blocks) == 1
    assert all(b.id_cross is None and b.clo_cross is None for b in no_cross.blocks)
    per_cross = sum(p.numel() for p in full.blocks[0].id_cross.parameters())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(full) - count(no_cross) == 2 * 2 * per_cross  # 2 blocks x 2 directions
    assert _bdam(gate=False).gate is None


def test_gradients_reach_both_projections_and_input() -> None:
    bdam = _bdam()
    tokens = _tokens().requires_grad_(True)
    out = bdam(tokens)
    (out.f_id_gate.square().sum() + out.f_clo_gate.square().sum()).backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0
    for layer in (bdam.to_identity, bdam.to_clothing, bdam.gate):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_heads_must_divide_width() -> None:
    with pytest.raises(ValueError, match="not divisible by bdam.heads"):
        Bdam(18, heads=4)
