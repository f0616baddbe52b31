"""Learning-rate schedule of paper 4.2: linear warm-up, then cosine decay."""

from __future__ import annotations

import math

import torch


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """The multiplier of the base lr after ``step`` optimiser steps (``step`` counts from 0).

    ``(step + 1) / warmup_steps`` during warm-up, then
    ``min_ratio + (1 - min_ratio) * (1 + cos(pi * t)) / 2`` with ``t = (step - warmup) / (total - warmup)``
    going from 0 to 1 over the remaining steps (clamped at 1 after ``total_steps``).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def scaled_lr(lr: float, rule: str, global_batch: int, reference_batch: int) -> float:
    """The base lr for a global batch: ``lr`` (``none``), ``lr * B / B_ref`` (``linear``, Goyal et al.) or
    ``lr * sqrt(B / B_ref)`` (``sqrt``, the usual rule for Adam), ``B = P x K x workers``."""
    if rule == "none":
        return lr
    ratio = global_batch / reference_batch
    if rule == "linear":
        return lr * ratio
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    raise ValueError(f"optim.lr_scaling must be none, linear or sqrt, got {rule!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`warmup_cosine_factor`; call ``step()`` once per optimiser step."""
    if total_steps < 1 or warmup_steps < 0:
        raise ValueError(f"schedule needs total_steps >= 1 and warmup_steps >= 0, got {total_steps}, {warmup_steps}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, warmup_steps, total_steps, min_ratio)
    )
