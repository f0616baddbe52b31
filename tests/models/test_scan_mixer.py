"""The Mamba mixer layer: one module, two forward paths, the same weights and outputs as transformers' MambaMixer."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from transformers.models.mamba.modeling_mamba import MambaMixer

from reid.models.mamba import MambaMixerLayer, mamba_cuda_kernels_available

STATE_KEYS = {"in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias",
              "A_log", "D", "out_proj.weight"}


def pair(hidden: int = 24, d_state: int = 6, seed: int = 0) -> tuple[MambaMixerLayer, MambaMixer]:
    torch.manual_seed(seed)
    ours = MambaMixerLayer(hidden, d_state=d_state, d_conv=4, expand=2).double()
    torch.manual_seed(seed + 1)
    library = MambaMixer(ours.config, layer_idx=0).double()
    return ours, library


def test_state_dict_round_trips_between_the_library_mixer_and_ours() -> None:
    ours, library = pair()
    assert isinstance(ours, MambaMixer)
    assert set(ours.state_dict()) == STATE_KEYS
    assert tuple(ours.A_log.shape) == (48, 6) and tuple(ours.conv1d.weight.shape) == (48, 1, 4)
    library.load_state_dict(ours.state_dict(), strict=True)
    other = MambaMixerLayer(24, d_state=6).double()
    other.load_state_dict(library.state_dict(), strict=True)
    for key, value in ours.state_dict().items():
        assert torch.equal(other.state_dict()[key], value)


@pytest.mark.parametrize("masked", [False, True])
def test_cpu_path_equals_the_library_forward_and_gradients(masked: bool) -> None:
    ours, library = pair()
    library.load_state_dict(ours.state_dict())
    x = torch.randn(3, 21, 24, dtype=torch.float64, requires_grad=True)
    mask = None
    if masked:
        mask = torch.ones(3, 21, dtype=torch.long)
        mask[1, 15:] = 0
    out, ref = ours(x, mask), library(x, attention_mask=mask)
    grad = torch.randn_like(out)
    ours_grads = torch.autograd.grad(out, [x, *ours.parameters()], grad)
    ref_grads = torch.autograd.grad(ref, [x, *library.parameters()], grad)
    scale = ref.abs().max()
    # transformers' reference path casts B and dt*B*u to float32 internally: agreement is ~1e-7 relative
    assert ((out - ref).abs().max() / scale).item() < 1e-5
    for name, a, b in zip(["x", *dict(ours.named_parameters())], ours_grads, ref_grads, strict=True):
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-5, name


def test_cpu_inputs_take_the_kernel_path_and_never_the_library_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, _ = pair()
    x = torch.randn(2, 9, 24, dtype=torch.float64)
    expected = ours(x)

    def refuse(*args, **kwargs):
        raise AssertionError("the library forward ran for a CPU input")

    monkeypatch.setattr(MambaMixer, "forward", refuse)
    assert torch.equal(ours(x), expected)
    assert MambaMixerLayer.path_for(x) == "cpu-kernel"
    assert MambaMixerLayer.path_for(torch.empty(1, 2, 24, device="meta")) == "torch-fallback"


def test_cuda_kernels_are_detected_only_with_mamba_ssm() -> None:
    if importlib.util.find_spec("mamba_ssm") is None:
        assert not mamba_cuda_kernels_available()
    if not torch.cuda.is_available() or not mamba_cuda_kernels_available():
        pytest.skip("no CUDA device with mamba-ssm here")
    x = torch.randn(1, 4, 24, device="cuda")
    assert MambaMixerLayer.path_for(x) == "cuda-kernels"


def test_an_accelerator_input_without_the_kernels_is_refused_unless_allowed() -> None:
    """The slow PyTorch path (no mamba-ssm kernels) on an accelerator stops with the fix named; the meta device
    stands in for a GPU without the kernels."""
    from reid.models.mamba.mixer import SlowMambaPathError

    x = torch.empty(1, 5, 24, device="meta")
    refusing = MambaMixerLayer(24, d_state=6).to("meta")
    with pytest.raises(SlowMambaPathError, match="allow_slow_kernels"):
        refusing(x)
    allowing = MambaMixerLayer(24, d_state=6, allow_slow=True).to("meta")
    assert allowing(x).shape == (1, 5, 24)


def test_the_path_is_logged_once_per_device_type(caplog: pytest.LogCaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from reid.models.mamba import mixer

    monkeypatch.setattr(mixer, "_LOGGED_PATHS", set())
    ours, _ = pair()
    x = torch.randn(2, 9, 24, dtype=torch.float64)
    with caplog.at_level(logging.INFO, logger="reid.models.mamba.mixer"):
        ours(x)
        ours(x)
    assert [r.getMessage() for r in caplog.records] == ["Mamba fusion runs the cpu-kernel path on cpu"]


def test_the_fusion_setting_reaches_every_mixer() -> None:
    from reid.models.config import FusionConfig
    from reid.models.fusion import build_fusion

    module = build_fusion(FusionConfig(kind="mamba", layers=2, width=16, d_state=4, allow_slow_kernels=True), 8, 8,
                          8, 0.0)
    mixers = [m for m in module.modules() if isinstance(m, MambaMixerLayer)]
    assert len(mixers) == 4 and all(m.allow_slow for m in mixers)
