"""The demo's second half on a prepared dataset: describe (rules) -> train (Ray Train + DeepSpeed) -> evaluate."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from reid.config import Config
from reid.distributed.describe_job import describe_dataset
from reid.distributed.tracking import tracking_uri
from reid.distributed.train_job import PICTURES_DIR, TrainOutcome, run_uri, train
from reid.storage import exists, resolve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoTraining:
    """What the trained part of the demo produced: descriptions, the run, test metrics, where to look."""

    described: int
    outcome: TrainOutcome
    mlflow_uri: str
    pictures_uri: str | None
    seconds: dict[str, float]

    def lines(self) -> list[str]:
        """A human-readable report: metrics of the best checkpoint on test, and where everything is."""
        test = self.outcome.test_metrics
        lines = [f"  described {self.described} images (rule-based describer, "
                 f"{self.seconds['describe']:.0f} s)",
                 f"  trained {self.seconds['train']:.0f} s; best epoch {self.outcome.best_epoch} on validation "
                 f"({', '.join(f'{k} {v:.1f}' for k, v in self.outcome.val_metrics.items())})",
                 "  test (best checkpoint): " + "  ".join(f"{k} {test[k]:.1f}" for k in ("R1", "R5", "R10", "mAP",
                                                                                          "mINP") if k in test),
                 f"  best checkpoint: {self.outcome.best_uri}",
                 f"  MLflow: {self.mlflow_uri} (run {self.outcome.mlflow_run_id})"]
        if self.pictures_uri:
            lines.append(f"  pictures: {self.pictures_uri}")
        return lines


def describe_train_evaluate(config: Config, workdir_uri: str) -> DemoTraining:
    """Describe every image with the rule-based describer, train ``config`` afresh under ``workdir_uri``
    (checkpoints in ``<workdir>/checkpoints``; MLflow from ``tracking.*``, whose default SQLite store goes
    to ``<workdir>/mlflow.db`` for a local workdir) and score the best checkpoint on test.

    An earlier demo run of the same name is replaced, as the demo rebuilds its dataset each time.
    """
    workdir = resolve(workdir_uri, config.storage)
    config = replace(config, train=replace(config.train, storage_uri=f"{workdir.uri}/checkpoints"),
                     tracking=replace(config.tracking, runs_dir=config.tracking.runs_dir if workdir.is_remote
                                      else workdir.path))
    seconds: dict[str, Any] = {}
    start = time.perf_counter()
    summary = describe_dataset(config.data.uri, replace(config.describe, backend="rules"), config.storage)
    seconds["describe"] = time.perf_counter() - start
    run = resolve(run_uri(config), config.storage)
    if exists(run):
        log.info("replacing the earlier demo run at %s", run.uri)
        run.filesystem.delete_dir(run.path)
    start = time.perf_counter()
    outcome = train(config)
    seconds["train"] = time.perf_counter() - start
    pictures = resolve(f"{outcome.run_uri}/{PICTURES_DIR}", config.storage)
    described = int(summary.get("ok", 0)) + int(summary.get("skipped_finished", 0))
    return DemoTraining(described, outcome, tracking_uri(config.tracking),
                        pictures.uri if exists(pictures) else None, seconds)
