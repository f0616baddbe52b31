"""Checkpoint selection never reads test metrics; the seeds protocol's mean and std."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest

from reid.evaluation.selection import (
    CheckpointScore,
    parse_seeds,
    run_seeds,
    seed_columns,
    select_best_checkpoint,
    summarize_seeds,
)


class Untouchable(Mapping):
    """Metrics that fail the test if anything reads them."""

    def __getitem__(self, key):
        raise AssertionError(f"selection read a test metric ({key})")

    def __iter__(self):
        raise AssertionError("selection iterated test metrics")

    def __len__(self):
        raise AssertionError("selection sized test metrics")

    def __contains__(self, key):
        raise AssertionError("selection looked into test metrics")


def history() -> list[CheckpointScore]:
    return [
        CheckpointScore("ckpt/1", 1, "val", {"R1": 40.0, "mAP": 30.0}),
        CheckpointScore("ckpt/1", 1, "test", Untouchable()),
        CheckpointScore("ckpt/3", 3, "val", {"R1": 55.0, "mAP": 31.0}),
        CheckpointScore("ckpt/3", 3, "test", Untouchable()),
        CheckpointScore("ckpt/2", 2, "val", {"R1": 55.0, "mAP": 35.0}),
        CheckpointScore("ckpt/4", 4, "val", {"R1": math.nan, "mAP": 99.0}),
        CheckpointScore("ckpt/2", 2, "test", Untouchable()),
    ]


def test_best_by_validation_metric_earliest_step_on_ties_never_reading_test() -> None:
    assert select_best_checkpoint(history(), "R1").checkpoint == "ckpt/2"  # 55 at steps 2 and 3: step 2
    assert select_best_checkpoint(history(), "mAP").checkpoint == "ckpt/4"


def test_selecting_on_test_is_refused() -> None:
    with pytest.raises(ValueError, match="refusing to select a checkpoint on the test split"):
        select_best_checkpoint(history(), "R1", split="test")
    with pytest.raises(ValueError, match="holdout"):
        select_best_checkpoint(history(), "R1", split="holdout", test_split="holdout")


def test_selection_errors_name_the_problem() -> None:
    with pytest.raises(KeyError, match="'ckpt/1' .* has no 'mINP'"):
        select_best_checkpoint(history(), "mINP")
    with pytest.raises(ValueError, match="no checkpoint with a finite 'R1' on split 'val'"):
        select_best_checkpoint([h for h in history() if h.split == "test"], "R1")


def test_seed_summary_mean_and_sample_std() -> None:
    results = {s: {"R1": r1, "R5": 80.0 + s, "R10": 90.0, "mAP": 50.0, "mINP": 30.0}
               for s, r1 in zip((0, 1, 2), (60.0, 62.0, 67.0), strict=True)}
    summary = run_seeds(parse_seeds("0,1,2"), lambda seed: results[seed])
    assert summary.mean["R1"] == pytest.approx(63.0)
    assert summary.std["R1"] == pytest.approx(np.sqrt(((60 - 63) ** 2 + (62 - 63) ** 2 + (67 - 63) ** 2) / 2))
    assert summary.std["R10"] == 0.0 and summary.mean["R5"] == pytest.approx(81.0)
    table = summary.table()
    assert "63.00 ± 3.61" in table and table.count("\n") == 5  # header, rule, 3 seeds, mean row
    assert summarize_seeds({7: results[0]}).std["R1"] == 0.0


def test_seed_parsing_and_missing_metrics() -> None:
    assert parse_seeds(" 0, 1,2 ") == (0, 1, 2)
    for bad in ("0,0", "a,b", ""):
        with pytest.raises(ValueError):
            parse_seeds(bad)
    with pytest.raises(KeyError, match="seed 1 lacks metric"):
        summarize_seeds({0: {"R1": 1.0}, 1: {}}, columns=("R1",))


def test_seed_table_shows_the_images_alone_columns_only_when_every_seed_has_them() -> None:
    plain = {"R1": 50.0, "R5": 70.0, "R10": 80.0, "mAP": 40.0, "mINP": 20.0}
    both = {0: {**plain, "image_R1": 30.0, "image_mAP": 25.0}, 1: {**plain, "image_R1": 40.0, "image_mAP": 35.0}}
    columns = seed_columns(both)
    assert columns == ("R1", "R5", "R10", "mAP", "mINP", "image_R1", "image_mAP")
    summary = summarize_seeds(both, columns)
    assert summary.mean["image_R1"] == 35.0 and "image_R1" in summary.table().splitlines()[0]
    assert seed_columns({0: both[0], 1: plain}) == ("R1", "R5", "R10", "mAP", "mINP")
