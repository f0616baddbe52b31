"""Mamba for the fusion module: transformers' mixer with a fast CPU selective scan (numba) and its reference."""

from reid.models.mamba.bidirectional import BidirectionalMamba, reverse_real_tokens
from reid.models.mamba.conv import causal_conv1d_silu
from reid.models.mamba.mixer import MambaMixerLayer, mamba_cuda_kernels_available
from reid.models.mamba.reference import selective_scan_reference
from reid.models.mamba.scan import selective_scan

__all__ = [
    "BidirectionalMamba",
    "MambaMixerLayer",
    "causal_conv1d_silu",
    "mamba_cuda_kernels_available",
    "reverse_real_tokens",
    "selective_scan",
    "selective_scan_reference",
]
