"""Hyper-parameter search settings (Ray Tune): metric, ASHA, search algorithm, concurrency, storage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TuneConfig:
    """How ``reid tune`` runs a search over a space of ``tune_spaces/*.yaml``.

    ``metric`` is a per-epoch metric of the training loop (``None``: ``val/<eval.select_metric>``), to be
    maximised or minimised (``mode``). ``scheduler: asha`` stops weak trials at rungs
    ``grace_period * reduction_factor**k`` epochs (up to ``max_t``, default ``train.epochs``); ``fifo``
    runs every trial to the end. ``search_alg: optuna`` needs the optional ``optuna`` package and a space
    without grids. ``num_samples`` draws per space (a grid is repeated ``num_samples`` times); at most
    ``max_concurrent_trials`` run at once. Each trial reserves ``trial_cpus`` for its driver function on
    top of its Train workers' ``train.workers x train.cpus_per_worker``. The search, its trial checkpoints
    and the trials' Train runs live under ``<storage_uri>/<name>``.

    ``max_failures`` is how often Tune starts a trial again after it failed (its driver function's node lost,
    an error): the trial's Train run then resumes from its last checkpoint. Lost Train *workers* of a live trial
    are restarted by Ray Train itself, up to ``train.max_failures`` times. Tune cannot tell a lost node from a
    setting that fails every time: such a trial is started once more too (0 fails it at once).
    """

    metric: str | None = None
    mode: Literal["max", "min"] = "max"
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period: int = 1
    reduction_factor: float = 3.0
    max_t: int | None = None
    search_alg: Literal["random", "optuna"] = "random"
    num_samples: int = 1
    max_concurrent_trials: int = 1
    trial_cpus: float = 0.05
    max_failures: int = 1
    storage_uri: str = "runs/tune"
    name: str = "search"

    def __post_init__(self) -> None:
        if self.grace_period < 1 or self.num_samples < 1 or self.max_concurrent_trials < 1:
            raise ValueError("tune.grace_period, tune.num_samples and tune.max_concurrent_trials must be >= 1")
        if not self.reduction_factor > 1:
            raise ValueError(f"tune.reduction_factor must be > 1, got {self.reduction_factor}")
        if self.max_t is not None and self.max_t < self.grace_period:
            raise ValueError(f"tune.max_t must be >= tune.grace_period, got {self.max_t}")
        if self.max_failures < 0:
            raise ValueError(f"tune.max_failures must be >= 0, got {self.max_failures}")
        if not self.trial_cpus > 0:
            raise ValueError(f"tune.trial_cpus must be > 0 (Ray refuses 0), got {self.trial_cpus}")
