"""Training settings: optimiser and schedule (paper 4.2), workers and DeepSpeed, checkpoints, MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class OptimConfig:
    """Adam (paper 4.2: lr 1e-4, weight decay 1e-3) and a cosine schedule with linear warm-up.

    The learning rate rises linearly from ``lr / warmup_steps`` to ``lr`` over ``warmup_epochs`` and then
    follows a half cosine down to ``min_lr_ratio * lr`` at the last step of ``train.epochs``.
    ``frozen`` lists parameter-name prefixes (``text_encoder.``, ``image_encoder.vit.embeddings.``) that are
    not trained, e.g. a pretrained text tower kept as it is.

    ``lr`` is the rate at ``reference_batch`` samples per step. The global batch is ``P x K x train.workers``
    (each worker draws its own P x K batch; steps per epoch do not shrink with more workers). ``lr_scaling``
    says how the rate follows it: ``none`` (the same ``lr`` at any batch), ``linear`` (``lr * B / B_ref``) or
    ``sqrt`` (``lr * sqrt(B / B_ref)``). The effective batch and rate are logged at start.
    ``pretrained_lr_ratio`` scales the rate of the layers whose weights were loaded pretrained (an ImageNet
    backbone, a pretrained ViT or text encoder) against the new layers (BDAM, fusion, projections).
    """

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-4
    weight_decay: float = 1e-3
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    grad_clip: float = 0.0  # max global gradient norm; 0 disables clipping
    frozen: tuple[str, ...] = ()
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    reference_batch: int = 64
    pretrained_lr_ratio: float = 1.0

    def __post_init__(self) -> None:
        if self.reference_batch < 1:
            raise ValueError(f"optim.reference_batch must be >= 1, got {self.reference_batch}")
        if not self.pretrained_lr_ratio > 0:
            raise ValueError(f"optim.pretrained_lr_ratio must be > 0, got {self.pretrained_lr_ratio}")
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if self.warmup_epochs < 0 or not 0 <= self.min_lr_ratio <= 1 or self.grad_clip < 0:
            raise ValueError("optim.warmup_epochs and optim.grad_clip must be >= 0, optim.min_lr_ratio in [0, 1]")


@dataclass(frozen=True)
class TrainConfig:
    """Ray Train workers and DeepSpeed engine settings, validation cadence and checkpoint storage.

    ``engine``: ``deepspeed`` wraps the model in a DeepSpeed engine (ZeRO ``zero_stage``, ``precision``);
    ``torch`` is a plain optimiser whose gradients are averaged over workers before each step.
    The run's checkpoints live under ``<storage_uri>/<name>``; the best inference checkpoint (chosen on
    the validation split by ``eval.select_metric``) under ``<storage_uri>/<name>/best``.
    ``steps_per_epoch`` is the optimiser steps of an epoch on each worker (null: one pass over the training
    identities, ``floor(batches / workers)``); more than one pass continues with the next reshuffled passes,
    so small datasets get enough steps between checkpoints and validations. ``stop_after_epochs`` ends a
    run early while keeping the schedule of ``epochs`` (an interruption that ``--resume`` continues).
    ``deterministic`` asks torch for deterministic kernels. ``pictures``: at the end, rank 0 draws the
    evaluation pictures of the best model on the test split into ``<storage_uri>/<name>/pictures``.
    ``placement`` is Ray's placement strategy for the workers' bundles: ``PACK`` (as few nodes as fit),
    ``SPREAD`` (over nodes where it can) or ``STRICT_SPREAD`` (every worker on a node of its own, or no start).
    ``data_source``: ``ray`` streams each rank's batches from the shards on storage through Ray Data (any size
    of dataset); ``memory`` has each worker read and decode the training split once and hold it (a small
    split: no loader tasks beside the workers, about 1.5 times the steps per second on the demo's 2 cores).
    ``reid train --data-source`` overrides it.
    """

    epochs: int = 10
    steps_per_epoch: int | None = None
    workers: int = 2
    cpus_per_worker: float = 0.4
    gpus_per_worker: float = 0.0
    engine: Literal["deepspeed", "torch"] = "deepspeed"
    zero_stage: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"
    val_every: int = 1
    storage_uri: str = "runs/demo/checkpoints"
    name: str = "reid"
    max_failures: int = 1
    keep_checkpoints: int | None = 2
    stop_after_epochs: int | None = None
    deterministic: bool = False
    pictures: bool = True
    placement: Literal["PACK", "SPREAD", "STRICT_SPREAD"] = "PACK"
    data_source: Literal["ray", "memory"] = "ray"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.workers < 1 or self.val_every < 1:
            raise ValueError("train.epochs, train.workers and train.val_every must be >= 1")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"train.zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"train.steps_per_epoch must be >= 1 or null, got {self.steps_per_epoch}")
        if self.keep_checkpoints is not None and self.keep_checkpoints < 1:
            raise ValueError(f"train.keep_checkpoints must be >= 1 or null, got {self.keep_checkpoints}")
        if self.cpus_per_worker <= 0 and self.gpus_per_worker <= 0:
            raise ValueError("train.cpus_per_worker or train.gpus_per_worker must be > 0")


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow tracking; ``uri: null`` means ``MLFLOW_TRACKING_URI`` or ``sqlite:///<runs_dir>/mlflow.db``."""

    uri: str | None = None
    experiment: str = "reid"
    runs_dir: str = "runs"
    enabled: bool = True
