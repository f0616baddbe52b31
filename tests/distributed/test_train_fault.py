"""A training worker killed mid-run: Ray Train restarts the group from the last checkpoint, MLflow has every
epoch exactly once."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from reid.config import load_config
from reid.storage import read_json, resolve

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from conftest import write_colour_dataset  # noqa: E402

pytestmark = pytest.mark.slow

EPOCHS, STEPS = 4, 3


def train_worker_pids(since: float) -> list[int]:
    """Ray Train worker processes of the Ray this test process started (its descendants only) that were
    created after ``since`` (a run of another test in this session may still be winding down)."""
    found = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(child.cmdline()) and child.create_time() >= since:
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def logged_epochs(client: MlflowClient, run_id: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, "step"))


def test_killed_worker_resumes_from_checkpoint_without_gaps(ray_local: None, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from reid.distributed.group_starts import group_starts, restarts
    from reid.distributed.train_job import RESULT_FILE, train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    dataset = write_colour_dataset(tmp_path / "dataset")
    config = load_config("pkg://tiny", [
        f"data.uri={dataset}", "data.use_descriptions=false", f"train.epochs={EPOCHS}",
        f"train.steps_per_epoch={STEPS}", "train.max_failures=1", f"train.storage_uri={tmp_path / 'ckpt'}",
        f"tracking.runs_dir={tmp_path / 'runs'}", "train.name=fault",
    ])
    outcome: dict[str, object] = {}
    started = time.time()
    runner = threading.Thread(target=lambda: outcome.update(result=train(config, data="memory")), daemon=True)
    runner.start()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    killed = None
    deadline = time.monotonic() + 780  # a busy 2-core machine needs minutes to start the workers
    while killed is None and runner.is_alive() and time.monotonic() < deadline:
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        if runs and 1 in logged_epochs(client, runs[0].info.run_id):  # epoch 1 is checkpointed and logged
            pids = train_worker_pids(started)
            assert len(pids) == config.train.workers, pids
            killed = pids[-1]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.3)
    runner.join(timeout=780)
    assert killed is not None, "the run ended before a worker could be killed"
    assert not runner.is_alive() and "result" in outcome
    result = outcome["result"]
    assert result.finished and set(result.test_metrics) == {"R1", "R5", "R10", "mAP", "mINP"}
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE
    # the restarted group began from a checkpoint, not from scratch. Ray Train registers a reported
    # checkpoint asynchronously, so a kill right after epoch 1's report may restart from epoch 0's
    # checkpoint: epoch 1 then runs again and must not be logged twice.
    payload = read_json(resolve(result.run_uri).join(RESULT_FILE))
    assert 1 <= payload["started_at_epoch"] < EPOCHS
    # each group's start is on record in the run's storage: the first from scratch, the second where it resumed
    starts = group_starts(result.run_uri)
    assert [s["epoch"] for s in starts] == [0, payload["started_at_epoch"]] and restarts(result.run_uri) == 1
    assert starts[0]["step"] == 0 and starts[1]["step"] == STEPS * payload["started_at_epoch"]
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert logged_epochs(client, run.info.run_id) == list(range(EPOCHS))
    steps = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "step"))
    assert [value for _, value in steps] == [float(STEPS * (e + 1)) for e in range(EPOCHS)]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss/total")) == list(range(EPOCHS))
