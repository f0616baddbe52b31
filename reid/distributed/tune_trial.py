"""One Ray Tune trial: its config from the drawn sample, then ``reid train``'s TorchTrainer with every validated
epoch's metrics passed up to Tune; the trial's MLflow child run is closed by the driver when Tune ends it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from reid.config import Config
from reid.config.loader import with_overrides
from reid.distributed.train_job import RESULT_FILE, TRACKING_FILE, run_uri, train
from reid.distributed.tune_stages import prepare_trial_dataset
from reid.search_space import SearchSpace
from reid.storage import exists, read_json, resolve
from reid.storage.config import StorageConfig

logger = logging.getLogger(__name__)

EPOCHS_DONE = "epochs_done"
"""The scheduler's time attribute: epochs the trial finished (rung 1 = one epoch). The last epoch's result
goes without it, so the scheduler never stops a trial between its last epoch and its test evaluation."""


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a search shares: the base config, the space, where trials write, the parent run.

    A trial's Train run lives at ``<runs_uri>/<trial_id>``; a trial that re-makes styles or descriptions
    gets its dataset copy at ``<datasets_uri>/<trial_id>``.
    """

    base: Config
    space: SearchSpace
    runs_uri: str
    datasets_uri: str
    parent_run_id: str | None
    data: str
    metric: str


class MetricReportCallback(TuneReportCallback):
    """Ray Train -> Tune: rank 0's report of each epoch that holds ``metric`` (validated epochs only, since
    Tune refuses a result without its metric), with :data:`EPOCHS_DONE` added except on ``last_epoch``."""

    def __init__(self, metric: str, last_epoch: int) -> None:
        super().__init__()
        self.metric, self.last_epoch = metric, last_epoch

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if not metrics or self.metric not in metrics[0]:
            return
        super().after_report(run_context, [with_time(metrics[0], self.last_epoch), *metrics[1:]], checkpoint)


def with_time(result: Mapping[str, Any], last_epoch: int) -> dict[str, Any]:
    """``result`` plus :data:`EPOCHS_DONE` unless it is the result of ``last_epoch`` (0-based)."""
    epoch = int(result["epoch"])
    return dict(result) if epoch >= last_epoch else {**result, EPOCHS_DONE: epoch + 1}


def last_epoch(config: Config) -> int:
    """The 0-based index of the last epoch this run trains (``train.stop_after_epochs`` ends runs early)."""
    return min(config.train.stop_after_epochs or config.train.epochs, config.train.epochs) - 1


def trial_config(setup: TrialSetup, sample: Mapping[str, Any], trial_id: str) -> Config:
    """The base config with the trial's overrides, its Train run at ``<runs_uri>/<trial_id>`` and, when it
    changes styles or describer settings, its own re-described dataset."""
    overrides = setup.space.trial_overrides(sample)
    config = with_overrides(setup.base, {**overrides, "train.storage_uri": setup.runs_uri, "train.name": trial_id})
    return prepare_trial_dataset(config, overrides, f"{setup.datasets_uri.rstrip('/')}/{trial_id}")


def train_trial(sample: dict[str, Any], setup: TrialSetup) -> None:
    """The Tune function trainable: fit (or resume) the trial's Train run as a child of the search's run.

    A run that already finished (the search was restored before Tune recorded the trial as done) is not
    trained again: its validated epochs are reported to Tune from the run's result file.
    """
    trial_id = tune.get_context().get_trial_id()
    config = trial_config(setup, sample, trial_id)
    run = resolve(run_uri(config), config.storage)
    result_file = run.join(RESULT_FILE)
    if exists(result_file) and read_json(result_file).get("finished"):
        logger.info("trial %s finished before; reporting its saved history", trial_id)
        replay_history(read_json(result_file), setup.metric, last_epoch(config))
        return
    train(config, resume=exists(run), parent_run_id=setup.parent_run_id, data=setup.data,
          callbacks=[MetricReportCallback(setup.metric, last_epoch(config))],
          run_name=trial_run_name(setup.base.tune.name, sample, trial_id))


def trial_run_name(search: str, sample: Mapping[str, Any], trial_id: str) -> str:
    """``table1_bdam no_gate seed=1 (89000_00007)``: the search, the trial's values, its id (MLflow's run list)."""
    values = " ".join(str(v) if k == "variant" else f"{k}={v}" for k, v in sample.items())
    return f"{search} {values} ({trial_id})".replace("  ", " ")


def replay_history(result: Mapping[str, Any], metric: str, last: int) -> None:
    """Report each validated epoch of a finished run's ``result.json`` history to Tune again."""
    for entry in result.get("history", []):
        metrics = {f"val/{k}": v for k, v in entry.items() if k != "epoch"}
        if metric in metrics:
            tune.report(with_time({**metrics, "epoch": entry["epoch"]}, last))


def child_run(runs_uri: str, trial_id: str, storage: StorageConfig | None = None) -> tuple[str, str] | None:
    """``(tracking uri, run id)`` of a trial's MLflow child run, or None before the trial created it."""
    saved = resolve(f"{runs_uri.rstrip('/')}/{trial_id}", storage).join(TRACKING_FILE)
    if not exists(saved):
        return None
    info = read_json(saved)
    return info["uri"], info["run_id"]


def close_child_run(runs_uri: str, trial_id: str, storage: StorageConfig | None, failed: bool) -> str | None:
    """Tag a trial's child run with its trial id and end it if Tune ended the trial first: KILLED (stopped
    early by the scheduler) or FAILED. A run the trial finished itself keeps its status, except FAILED on a
    trial Tune stopped without error: the scheduler's stop can reach the trial as an exception inside
    ``trainer.fit``, which ends the run FAILED before this driver-side callback runs. Returns its id."""
    found = child_run(runs_uri, trial_id, storage)
    if found is None:
        return None
    uri, run_id = found
    client = MlflowClient(tracking_uri=uri)
    client.set_tag(run_id, "tune.trial_id", trial_id)
    status = client.get_run(run_id).info.status
    if status == "RUNNING" or (status == "FAILED" and not failed):
        client.set_tag(run_id, "tune.stopped_early", str(not failed).lower())
        client.set_terminated(run_id, "FAILED" if failed else "KILLED")
    return run_id


class ChildRunCallback(tune.Callback):
    """Driver side: closes each trial's child run as soon as Tune completes or fails the trial."""

    def __init__(self, runs_uri: str, storage: StorageConfig | None) -> None:
        self.runs_uri, self.storage = runs_uri, storage

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial.trial_id, failed=False)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial.trial_id, failed=True)

    def _close(self, trial_id: str, failed: bool) -> None:
        try:
            close_child_run(self.runs_uri, trial_id, self.storage, failed)
        except Exception:  # tracking trouble must not stop the search; the final summary closes runs again
            logger.warning("could not close the MLflow run of trial %s", trial_id, exc_info=True)
