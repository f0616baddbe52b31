"""A search killed mid-way (``reid tune`` in a subprocess, SIGKILL) resumes with ``--resume`` semantics and
finishes without training a completed trial again; the interrupted trial continues its own MLflow run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from reid.config import load_config

pytestmark = pytest.mark.slow

SPACE = {"description": "three learning rates, run one after the other",
         "variants": {"lr_3e-3": {"optim.lr": 3.0e-3}, "lr_1e-3": {"optim.lr": 1.0e-3},
                      "lr_5e-4": {"optim.lr": 5.0e-4}}}


def settings(dataset: Path, root: Path, tracking: str) -> list[str]:
    return [f"data.uri={dataset}", "data.use_descriptions=false", "train.engine=torch", "train.workers=1",
            "train.epochs=3", "train.steps_per_epoch=2", "train.keep_checkpoints=1", f"tune.storage_uri={root}",
            "tune.name=resume", "tune.scheduler=fifo", "tune.max_concurrent_trials=1", f"tracking.uri={tracking}",
            "tracking.experiment=resume"]


def wait_for_midway(trials: Path, proc: subprocess.Popen, log: Path, timeout: float = 600.0) -> tuple[str, str]:
    """Until one trial has finished (``result.json``) and a second has written a checkpoint: their trial ids."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the search ended early:\n{log.read_text()[-3000:]}"
        runs = sorted(p for p in trials.glob("*") if p.is_dir()) if trials.is_dir() else []
        done = [p.name for p in runs if (p / "result.json").is_file()]
        going = [p.name for p in runs if p.name not in done and any(p.glob("checkpoint_*/*"))]
        if done and going:
            return done[0], going[0]
        time.sleep(0.5)
    raise AssertionError(f"no trial finished within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def test_killed_search_resumes_without_rerunning_finished_trials(ray_tune: None, tune_dataset: Path,
                                                                  mlflow_server: str, tmp_path: Path) -> None:
    import ray

    from reid.distributed.tune_job import SEARCH_FILE, run_search
    from reid.search_space import load_space

    space_file = tmp_path / "three.yaml"
    space_file.write_text(yaml.safe_dump(SPACE))
    overrides = settings(tune_dataset, tmp_path / "tune", mlflow_server)
    cmd = [sys.executable, "-m", "reid.cli.main", "tune", "--space", str(space_file), "--config", "pkg://tiny",
           "--data-source", "memory", *(f"--set={o}" for o in overrides)]
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    log = tmp_path / "search.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            trials = tmp_path / "tune" / "resume" / "trials"
            finished, interrupted = wait_for_midway(trials, proc, log)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    result_file = trials / finished / "result.json"
    before = (result_file.stat().st_mtime_ns, result_file.read_bytes())
    checkpoints = sorted(p.name for p in (trials / finished).glob("checkpoint_*"))
    run_ids = {t: yaml.safe_load((trials / t / "mlflow_run.json").read_text())["run_id"]
               for t in (finished, interrupted)}

    outcome = run_search(load_config("pkg://tiny", overrides), load_space(space_file), resume=True, data="memory")

    assert len(outcome.rows) == 3 and all(r.status == "completed" and r.epochs == 3 for r in outcome.rows)
    assert (result_file.stat().st_mtime_ns, result_file.read_bytes()) == before  # not trained again
    assert sorted(p.name for p in (trials / finished).glob("checkpoint_*")) == checkpoints
    saved = yaml.safe_load((tmp_path / "tune" / "resume" / SEARCH_FILE).read_text())
    assert outcome.parent_run_id == saved["parent_run_id"]
    client = MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    children = {r.data.tags["tune.trial_id"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(runs) == 4 and len(children) == 3
    assert all(c.data.tags["mlflow.parentRunId"] == outcome.parent_run_id for c in children.values())
    assert {t: children[t].info.run_id for t in run_ids} == run_ids  # both kept their child runs
    for trial_id, child in children.items():
        assert child.info.status == "FINISHED", trial_id
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "loss/total"))
        if trial_id == interrupted:  # epochs after its last committed checkpoint may have been logged twice
            assert set(steps) == {0, 1, 2}, steps
        else:
            assert steps == [0, 1, 2], (trial_id, steps)
