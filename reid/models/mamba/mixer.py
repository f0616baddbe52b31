"""transformers' ``MambaMixer`` with a fast CPU forward; the same module (and weights) on both paths."""

from __future__ import annotations

import functools
import importlib
import logging

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import MambaConfig
from transformers.models.mamba.modeling_mamba import MambaMixer

from reid.models.mamba.conv import causal_conv1d_silu
from reid.models.mamba.scan import selective_scan

logger = logging.getLogger(__name__)
_LOGGED_PATHS: set[tuple[str, str]] = set()


class SlowMambaPathError(RuntimeError):
    """An accelerator input would run transformers' slow PyTorch Mamba path (no CUDA kernels)."""


@functools.cache
def mamba_cuda_kernels_available() -> bool:
    """True when ``mamba_ssm``'s selective-scan CUDA kernels import (the ``gpu`` extra is installed)."""
    try:
        importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    except Exception:  # a missing package or a broken CUDA extension both mean: no kernels
        return False
    return True


class MambaMixerLayer(MambaMixer):
    """A Mamba mixer ``[Bsz, L, hidden] -> [Bsz, L, hidden]`` (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj).

    It *is* ``transformers.MambaMixer`` (same parameters, same ``state_dict``), with the forward path chosen
    per call: a CUDA input with ``mamba_ssm`` installed runs the library's forward (mamba-ssm /
    causal-conv1d kernels); a CPU input runs :meth:`forward_cpu`, the same maths with the selective scan
    in a compiled kernel that never materialises ``[Bsz, L, D_inner, N]``; anything else would fall back to
    the library's PyTorch path, which on an accelerator is refused (:class:`SlowMambaPathError`: the
    ``gpu`` extra's kernels are missing or do not import) unless ``allow_slow``. Each process logs the path
    it runs once per device type.
    """

    def __init__(self, hidden_size: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 allow_slow: bool = False) -> None:
        config = MambaConfig(
            hidden_size=hidden_size, state_size=d_state, conv_kernel=d_conv, expand=expand, num_hidden_layers=1
        )
        super().__init__(config, layer_idx=0)
        self.allow_slow = allow_slow

    @staticmethod
    def path_for(hidden_states: Tensor) -> str:
        """Which forward runs for this input: ``"cuda-kernels"``, ``"cpu-kernel"`` or ``"torch-fallback"``."""
        if hidden_states.device.type == "cpu":
            return "cpu-kernel"
        if hidden_states.device.type == "cuda" and mamba_cuda_kernels_available():
            return "cuda-kernels"
        return "torch-fallback"

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None, **kwargs) -> Tensor:
        """``hidden_states [Bsz, L, hidden]``; ``attention_mask [Bsz, L]`` (1 = real) zeroes padded positions.

        Extra keyword arguments (a generation cache) go to the library's forward.
        """
        path = self.path_for(hidden_states)
        device = hidden_states.device.type
        if path == "torch-fallback" and not self.allow_slow:
            raise SlowMambaPathError(
                f"Mamba fusion on {device}: the mamba-ssm/causal-conv1d CUDA kernels are missing or do not import, "
                "so transformers would run its slow PyTorch path; install them (pip install -e '.[gpu]' "
                "--no-build-isolation, or use the project's container) or set model.fusion.allow_slow_kernels=true")
        if (path, device) not in _LOGGED_PATHS:
            _LOGGED_PATHS.add((path, device))
            logger.info("Mamba fusion runs the %s path on %s", path, device)
        if path == "cpu-kernel" and not kwargs:
            return self.forward_cpu(hidden_states, attention_mask)
        return super().forward(hidden_states, attention_mask=attention_mask, **kwargs)

    def forward_cpu(self, hidden_states: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """The library's non-fused maths, channels-last, with the conv and the scan in numba kernels.

        ``in_proj`` is applied as two matmuls with the two halves of its weight, so the SSM input and the
        gate ``z`` come out contiguous and their gradients need no slicing.
        """
        dtype = hidden_states.dtype
        mask = None if attention_mask is None else attention_mask[:, :, None].to(dtype)
        if mask is not None:
            hidden_states = hidden_states * mask
        inner = self.intermediate_size
        weight, bias = self.in_proj.weight, self.in_proj.bias
        x = F.linear(hidden_states, weight[:inner], None if bias is None else bias[:inner])
        gate = F.linear(hidden_states, weight[inner:], None if bias is None else bias[inner:])
        x = causal_conv1d_silu(x, self.conv1d.weight, self.conv1d.bias if self.use_conv_bias else None)
        if mask is not None:
            x = x * mask
        time_step, B, C = torch.split(
            self.x_proj(x), [self.time_step_rank, self.ssm_state_size, self.ssm_state_size], dim=-1
        )
        delta = F.linear(time_step, self.dt_proj.weight)
        A = -torch.exp(self.A_log.float())
        y = selective_scan(x, delta, A, B, C, D=self.D.float(), z=gate, delta_bias=self.dt_proj.bias.float(),
                           delta_softplus=True)
        return self.out_proj(y.to(dtype))
