"""The numba CPU selective scan and causal conv against sequential float64 references (values and every gradient)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numba import njit

from reid.models.mamba import causal_conv1d_silu, kernel_io, selective_scan, selective_scan_reference
from reid.models.mamba import scan as scan_module
from reid.models.mamba.fast_math import fast_exp, fast_sigmoid, fast_softplus
from reid.models.mamba.scan import SelectiveScanFn

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def scan_inputs(nbatch: int, length: int, width: int, nstate: int, dtype: torch.dtype, seed: int = 0,
                optional: bool = True) -> dict[str, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    inputs = {
        "u": rand(nbatch, length, width), "delta": rand(nbatch, length, width, scale=0.7),
        "A": -torch.exp(rand(width, nstate, scale=0.8)), "B": rand(nbatch, length, nstate),
        "C": rand(nbatch, length, nstate), "D": rand(width) if optional else None,
        "z": rand(nbatch, length, width) if optional else None,
        "delta_bias": rand(width, scale=0.5) - 1.0 if optional else None,
    }
    return {k: None if v is None else v.requires_grad_() for k, v in inputs.items()}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def compare_with_reference(inputs: dict, softplus: bool = True, **kwargs: int) -> tuple[float, dict[str, float]]:
    """Max relative error of the output and of the gradient of each given input, fast vs float64 reference."""
    present = [k for k in NAMES if inputs[k] is not None]
    out = selective_scan(*(inputs[k] for k in NAMES), delta_softplus=softplus, **kwargs)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    grads = torch.autograd.grad(out, [inputs[k] for k in present], grad_out.to(out.dtype))
    ref_inputs = {k: None if v is None else v.detach().double().requires_grad_() for k, v in inputs.items()}
    ref = selective_scan_reference(*(ref_inputs[k] for k in NAMES), delta_softplus=softplus)
    ref_grads = torch.autograd.grad(ref, [ref_inputs[k] for k in present], grad_out)
    return rel_err(out, ref), {k: rel_err(a, b) for k, a, b in zip(present, grads, ref_grads, strict=True)}


SHAPES = [  # (batch, length, channels, state, chunk, block): L and D are not multiples of chunk / block
    (2, 37, 19, 5, 8, 16),
    (3, 64, 33, 16, 64, 64),
    (1, 130, 70, 4, 64, 64),
    (2, 9, 5, 3, 4, 2),
    (1, 1, 3, 1, 64, 64),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_float64_scan_equals_sequential_reference(shape: tuple[int, ...]) -> None:
    nbatch, length, width, nstate, chunk, block = shape
    out_err, grad_errs = compare_with_reference(scan_inputs(nbatch, length, width, nstate, torch.float64),
                                                chunk=chunk, block=block)
    assert out_err < 1e-12
    assert set(grad_errs) == set(NAMES)
    assert max(grad_errs.values()) < 1e-10, grad_errs


@pytest.mark.parametrize("shape", SHAPES[:3], ids=lambda s: "x".join(map(str, s)))
def test_float32_scan_matches_float64_reference(shape: tuple[int, ...]) -> None:
    nbatch, length, width, nstate, chunk, block = shape
    out_err, grad_errs = compare_with_reference(scan_inputs(nbatch, length, width, nstate, torch.float32),
                                                chunk=chunk, block=block)
    assert out_err < 1e-5
    assert max(grad_errs.values()) < 1e-4, grad_errs


def test_scan_without_optional_inputs_and_without_softplus() -> None:
    inputs = scan_inputs(2, 23, 11, 4, torch.float64, optional=False)
    inputs["delta"] = inputs["delta"].detach().abs().requires_grad_()  # dt used as given: keep it positive
    out_err, grad_errs = compare_with_reference(inputs, softplus=False, chunk=5, block=4)
    assert out_err < 1e-12 and max(grad_errs.values()) < 1e-10
    assert set(grad_errs) == {"u", "delta", "A", "B", "C"}


def test_scan_gradcheck_finite_differences() -> None:
    inputs = scan_inputs(1, 6, 3, 2, torch.float64, seed=3)
    args = tuple(inputs[k] for k in NAMES)
    assert torch.autograd.gradcheck(lambda *a: SelectiveScanFn.apply(*a, True, 4, 2, True), args, eps=1e-6, atol=1e-7)


def test_no_grad_forward_equals_training_forward_and_stores_no_states(monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint_shapes = []

    def spy(kernel, items, *args):  # noqa: ANN001, ANN202
        checkpoint_shapes.append(args[9].shape)  # scan_forward(u, delta, bias, At, B, C, D, z, out, ckpt, ...)
        return kernel_io.run_items(kernel, items, *args)

    monkeypatch.setattr(scan_module, "run_items", spy)
    inputs = scan_inputs(2, 40, 9, 3, torch.float32)
    args = [inputs[k] for k in NAMES]
    with torch.no_grad():
        plain = selective_scan(*args, chunk=16)
    tracked = selective_scan(*args, chunk=16)
    assert plain.grad_fn is None and tracked.grad_fn is not None
    assert torch.equal(plain, tracked)
    assert checkpoint_shapes == [(0, 0, 0, 0), (2, 3, 3, 9)]


def test_backward_saves_no_per_state_tensor() -> None:
    """Nothing of size Bsz * L * Din * N is kept; the checkpoints are [Bsz, ceil(L / chunk), N, Din]."""
    nbatch, length, width, nstate, chunk = 2, 100, 12, 8, 16
    inputs = scan_inputs(nbatch, length, width, nstate, torch.float32)
    out = selective_scan(*(inputs[k] for k in NAMES), chunk=chunk)
    fn = out.grad_fn
    while fn is not None and type(fn).__name__ != "SelectiveScanFnBackward":
        fn = fn.next_functions[0][0]
    assert fn is not None
    saved = fn.saved_tensors
    assert max(t.numel() for t in saved) < nbatch * length * width * nstate
    assert (nbatch, math.ceil(length / chunk), nstate, width) in [tuple(t.shape) for t in saved]


def test_scan_rejects_bad_shapes_with_the_argument_name() -> None:
    inputs = scan_inputs(2, 5, 4, 3, torch.float32)
    args = {k: inputs[k] for k in NAMES}
    args["B"] = torch.randn(2, 5, 2)
    with pytest.raises(ValueError, match="B must have shape"):
        selective_scan(**args)
    args = {k: inputs[k] for k in NAMES}
    args["A"] = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"A must be \[Din=4, N\]"):
        selective_scan(**args)


@njit(cache=False)
def _apply_fast_math(x):  # float32 [n] -> three [n] arrays
    e = np.empty_like(x)
    s = np.empty_like(x)
    m = np.empty_like(x)
    for i in range(x.shape[0]):
        e[i] = fast_exp(x[i])
        s[i] = fast_sigmoid(x[i])
        m[i] = fast_softplus(x[i])
    return e, s, m


def test_float32_fast_math_is_within_a_few_ulp() -> None:
    small = np.geomspace(1e-8, 1.0, 10_000)
    x = np.concatenate([np.linspace(-87.0, 88.0, 200_001), small, -small]).astype(np.float32)
    e, s, sp = _apply_fast_math(x)
    x64 = x.astype(np.float64)
    assert np.max(np.abs(e / np.exp(x64) - 1.0)) < 5e-7
    assert np.max(np.abs(s - 1.0 / (1.0 + np.exp(-x64)))) < 5e-7
    assert np.max(np.abs(sp / np.logaddexp(0.0, x64) - 1.0)) < 5e-7


@pytest.mark.parametrize("length,kernel,bias", [(17, 4, True), (3, 4, True), (29, 2, False)])
def test_causal_conv_silu_equals_torch_conv1d(length: int, kernel: int, bias: bool) -> None:
    g = torch.Generator().manual_seed(1)
    nbatch, width = 2, 13
    x = torch.randn(nbatch, length, width, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(width, 1, kernel, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(width, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    out = causal_conv1d_silu(x, weight, b, block=8)
    ref = F.silu(F.conv1d(x.transpose(1, 2), weight, b, padding=kernel - 1, groups=width)[..., :length]).transpose(1, 2)
    assert rel_err(out, ref) < 1e-12
    grad = torch.randn(out.shape, generator=g, dtype=torch.float64)
    params = [x, weight] + ([b] if bias else [])
    for a, r in zip(torch.autograd.grad(out, params, grad), torch.autograd.grad(ref, params, grad), strict=True):
        assert rel_err(a, r) < 1e-12
    out32 = causal_conv1d_silu(x.float(), weight.float(), None if b is None else b.float())
    assert rel_err(out32, ref) < 1e-5
