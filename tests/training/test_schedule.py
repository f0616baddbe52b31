"""Warm-up + cosine schedule against its closed form, stepped through a real optimiser."""

from __future__ import annotations

import math

import pytest
import torch

from reid.training.schedule import build_scheduler, warmup_cosine_factor


def reference(step: int, warmup: int, total: int, floor: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / (total - warmup))
    return floor + (1 - floor) * (1 + math.cos(math.pi * t)) / 2


@pytest.mark.parametrize(("warmup", "total", "floor"), [(0, 10, 0.0), (3, 12, 0.01), (5, 6, 0.5)])
def test_learning_rates_follow_the_closed_form(warmup: int, total: int, floor: float) -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.2)
    scheduler = build_scheduler(optimizer, warmup, total, floor)
    seen = []
    for _ in range(total):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.2 * reference(s, warmup, total, floor) for s in range(total)], rel=1e-12)


def test_shape_rises_then_decays_to_the_floor() -> None:
    values = [warmup_cosine_factor(s, 4, 20, 0.1) for s in range(25)]
    assert values[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(values[3:], values[4:], strict=False))
    assert values[20] == pytest.approx(0.1) and values[24] == pytest.approx(0.1)


def test_bad_lengths_are_refused() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="total_steps"):
        build_scheduler(optimizer, 0, 0, 0.0)


def test_lr_scaling_rules_follow_the_global_batch() -> None:
    from reid.training.schedule import scaled_lr

    assert scaled_lr(1e-4, "none", 512, 64) == 1e-4
    assert scaled_lr(1e-4, "linear", 512, 64) == pytest.approx(8e-4)
    assert scaled_lr(1e-4, "sqrt", 256, 64) == pytest.approx(2e-4)
    with pytest.raises(ValueError, match="lr_scaling"):
        scaled_lr(1e-4, "cubic", 64, 64)


def test_the_optimiser_gets_the_scaled_rate_of_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """P 8 x K 4 x 16 workers = 512 samples per step against a reference of 64: sqrt gives lr x sqrt(8)."""
    from torch import nn

    from reid.config import load_config
    from reid.training.setup import build_engine, effective_lr

    config = load_config("pkg://tiny", ["optim.lr_scaling=sqrt", "optim.reference_batch=64", "optim.lr=1e-4",
                                        "data.batch.p=8", "data.batch.k=4", "train.engine=torch"])
    assert effective_lr(config, 16) == (512, pytest.approx(1e-4 * 8 ** 0.5))
    engine = build_engine(config, nn.Linear(2, 2), steps=10, world_size=16)
    assert engine.optimizer.param_groups[0]["initial_lr"] == pytest.approx(1e-4 * 8 ** 0.5)


def test_deterministic_runs_set_the_cublas_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import torch

    from reid.training.setup import seed_everything

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        seed_everything(0, deterministic=True)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)
