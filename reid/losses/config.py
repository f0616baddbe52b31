"""Loss settings (paper 3.2, 3.5): each term on or off with its hyper-parameters, and GradNorm."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LossConfig:
    """Which loss terms are active and their hyper-parameters."""

    infonce: bool = True
    triplet: bool = True
    adversarial: bool = True
    clothing_match: bool = False
    hsic: bool = True
    gate_reg: bool = True
    temperature: float = 0.07
    triplet_margin: float = 0.3
    hsic_kernel: str = "linear"


@dataclass(frozen=True)
class GradNormConfig:
    """GradNorm task balancing (paper eqs. 5-6, section 4.2); ``enabled: false`` keeps fixed weights."""

    enabled: bool = True
    alpha: float = 1.5
    lr: float = 0.025
    clip_min: float = 1e-4
    clip_max: float = 10.0
    log_reg: float = 1e-3
