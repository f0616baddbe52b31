"""Checkpoint selection on the validation split (never test) and the seeds protocol (mean and std)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from reid.evaluation.table import METRIC_COLUMNS, format_table

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointScore:
    """Metrics (percent) of one checkpoint on one split, as recorded during training."""

    checkpoint: str
    step: int
    split: str
    metrics: Mapping[str, float]


def select_best_checkpoint(
    history: Iterable[CheckpointScore], metric: str = "R1", split: str = "val", test_split: str = "test"
) -> CheckpointScore:
    """The entry of ``split`` with the highest ``metric`` (the earliest step wins a tie).

    Entries of other splits are skipped before their metrics are read, so test numbers can never
    influence the choice; asking to select on ``test_split`` raises ``ValueError``. NaN scores lose.
    """
    if split == test_split:
        raise ValueError(f"refusing to select a checkpoint on the test split '{split}'; use the validation split")
    best: CheckpointScore | None = None
    best_value = -math.inf
    for entry in sorted((e for e in history if e.split == split), key=lambda e: e.step):
        if metric not in entry.metrics:
            raise KeyError(f"checkpoint '{entry.checkpoint}' (step {entry.step}) has no '{metric}' on '{split}'; "
                           f"it has {sorted(entry.metrics)}")
        value = float(entry.metrics[metric])
        if math.isnan(value):
            logger.warning("checkpoint '%s' has %s = NaN on %s; skipped", entry.checkpoint, metric, split)
            continue
        if best is None or value > best_value:
            best, best_value = entry, value
    if best is None:
        raise ValueError(f"no checkpoint with a finite '{metric}' on split '{split}' in the history")
    return best


@dataclass(frozen=True)
class SeedSummary:
    """Per-seed metrics and their mean and sample standard deviation (ddof 1; 0 for one seed)."""

    seeds: tuple[int, ...]
    per_seed: dict[int, dict[str, float]]
    mean: dict[str, float]
    std: dict[str, float]
    columns: tuple[str, ...] = field(default=METRIC_COLUMNS)

    def table(self, digits: int = 2) -> str:
        """One row per seed plus a ``mean ± std`` row."""
        rows = [[str(s), *(f"{self.per_seed[s][c]:.{digits}f}" for c in self.columns)] for s in self.seeds]
        rows.append(["mean ± std", *(f"{self.mean[c]:.{digits}f} ± {self.std[c]:.{digits}f}"
                                     for c in self.columns)])
        return format_table(["seed", *self.columns], rows)

    def to_dict(self) -> dict:
        return {"seeds": list(self.seeds), "per_seed": {str(k): v for k, v in self.per_seed.items()},
                "mean": self.mean, "std": self.std}


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``; duplicates and non-integers raise ``ValueError``."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"seeds must be comma-separated integers, got {text!r}") from exc
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers, got {text!r}")
    return seeds


def summarize_seeds(results: Mapping[int, Mapping[str, float]],
                    columns: Sequence[str] = METRIC_COLUMNS) -> SeedSummary:
    """Mean and std over seeds of every metric in ``columns``; each seed must report all of them."""
    if not results:
        raise ValueError("no seed results to summarize")
    for seed, metrics in results.items():
        missing = [c for c in columns if c not in metrics]
        if missing:
            raise KeyError(f"seed {seed} lacks metric(s) {missing}")
    seeds = tuple(results)
    values = {c: np.array([float(results[s][c]) for s in seeds]) for c in columns}
    std = {c: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for c, v in values.items()}
    per_seed = {s: {c: float(results[s][c]) for c in columns} for s in seeds}
    return SeedSummary(seeds, per_seed, {c: float(v.mean()) for c, v in values.items()}, std, tuple(columns))


IMAGE_ONLY_COLUMNS = ("image_R1", "image_mAP")


def seed_columns(results: Mapping[int, Mapping[str, float]]) -> tuple[str, ...]:
    """The columns of a seeds table: :data:`METRIC_COLUMNS`, then the gallery of images alone's R1 and mAP when
    every seed reports them (a described gallery, ranked both ways)."""
    extra = [c for c in IMAGE_ONLY_COLUMNS if results and all(c in metrics for metrics in results.values())]
    return (*METRIC_COLUMNS, *extra)


def run_seeds(seeds: Sequence[int], evaluate_seed: Callable[[int], Mapping[str, float]],
              columns: Sequence[str] = METRIC_COLUMNS) -> SeedSummary:
    """Call ``evaluate_seed(seed)`` (train, select on val, score on test) for each seed and summarize."""
    results = {}
    for seed in seeds:
        results[seed] = dict(evaluate_seed(seed))
        logger.info("seed %d: %s", seed, results[seed])
    return summarize_seeds(results, columns)
