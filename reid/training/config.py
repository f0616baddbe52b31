"""Training settings: optimiser and schedule (paper 4.2), workers and DeepSpeed, checkpoints, MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class OptimConfig:
    """Adam with weight decay and a cosine schedule with linear warm-up."""

    lr: float = 1e-4
    weight_decay: float = 1e-3
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01


@dataclass(frozen=True)
class TrainConfig:
    """Ray Train workers and DeepSpeed engine settings, validation cadence and checkpoint storage."""

    epochs: int = 10
    steps_per_epoch: int | None = None
    workers: int = 2
    cpus_per_worker: float = 0.4
    gpus_per_worker: float = 0.0
    zero_stage: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"
    val_every: int = 1
    storage_uri: str = "runs/demo/checkpoints"
    name: str = "reid"
    max_failures: int = 1
    deterministic: bool = False


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow tracking; ``uri: null`` means ``MLFLOW_TRACKING_URI`` or a local SQLite store."""

    uri: str | None = None
    experiment: str = "reid"
