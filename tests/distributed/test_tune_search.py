"""A 4-trial ASHA search on the colour dataset: an early stop, one MLflow parent and four children on a real
``mlflow server``, the summary table, the best config and the plot on the parent."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from reid.config import Config, load_config
from reid.search_space import parse_space

pytestmark = pytest.mark.slow

# Trained (lr 3e-3) and frozen (lr 1e-8) trials alternate. Frozen trials score the same value b, trained
# trials the same value a (eval.chunk_size does not change scores); with a != b and rung 1 cut at the median
# (reduction factor 2), trial 2 stops if a > b and trial 3 stops if a < b: at least one stops either way.
SPACE = """
description: trained and frozen trials, alternating
variants:
  trained: {optim.lr: 3.0e-3}
  frozen: {optim.lr: 1.0e-8}
  trained_again: {optim.lr: 3.0e-3, eval.chunk_size: 7}
  frozen_again: {optim.lr: 1.0e-8, eval.chunk_size: 7}
"""


def search_config(dataset: Path, tmp_path: Path, *overrides: str) -> Config:
    return load_config("pkg://tiny", [
        f"data.uri={dataset}", "data.use_descriptions=false", "train.engine=torch", "train.workers=1",
        "train.epochs=2", "train.steps_per_epoch=2", "train.keep_checkpoints=1", f"tune.storage_uri={tmp_path}",
        "tune.name=asha", "tune.reduction_factor=2", "tune.metric=val/mAP", "tune.max_concurrent_trials=1",
        *overrides,
    ])


def test_asha_search_stops_a_trial_and_tracks_parent_and_children(ray_tune: None, tune_dataset: Path,
                                                                    mlflow_server: str, tmp_path: Path) -> None:
    from reid.distributed.tune_job import run_search

    space = parse_space(yaml.safe_load(SPACE), "<test>", "alternating")
    config = search_config(tune_dataset, tmp_path, f"tracking.uri={mlflow_server}", "tracking.experiment=asha")
    started = time.perf_counter()
    outcome = run_search(config, space, data="memory")
    wall = time.perf_counter() - started
    print(f"\n4-trial ASHA search: {wall:.1f} s\n{outcome.table()}")

    rows = outcome.rows
    assert len(rows) == 4 and {r.params["variant"] for r in rows} == set(yaml.safe_load(SPACE)["variants"])
    assert [r.metric for r in rows] == sorted((r.metric for r in rows), reverse=True)
    stopped = [r for r in rows if r.status == "stopped early"]
    assert stopped and all(r.epochs == 1 for r in stopped)
    assert all(r.epochs == 2 for r in rows if r.status == "completed")

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("asha")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == outcome.parent_run_id]
    assert [p.info.run_id for p in parents] == [outcome.parent_run_id] and len(children) == 4
    by_trial = {c.data.tags["tune.trial_id"]: c for c in children}
    assert set(by_trial) == {r.trial_id for r in rows}
    for row in rows:
        child = by_trial[row.trial_id]
        assert child.info.status == ("FINISHED" if row.status == "completed" else "KILLED")
        assert float(child.data.params["optim.lr"]) in (3e-3, 1e-8)
        history = client.get_metric_history(child.info.run_id, "val/mAP")
        assert [m.step for m in history][:row.epochs] == list(range(row.epochs))
        assert max(m.value for m in history[:row.epochs]) == pytest.approx(row.metric)
    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["tune.best_trial_id"] == rows[0].trial_id
    assert parent.data.metrics["best/val/mAP"] == pytest.approx(rows[0].metric)
    assert parent.data.metrics["stopped_early"] == len(stopped)

    files = Path(client.download_artifacts(outcome.parent_run_id, "summary", str(tmp_path / "dl")))
    assert sorted(p.name for p in files.iterdir()) == ["best_config.yaml", "best_overrides.yaml",
                                                       "params_vs_metric.png", "summary.csv", "summary.md"]
    table = list(csv.DictReader(io.StringIO((files / "summary.csv").read_text())))
    assert [t["trial_id"] for t in table] == [r.trial_id for r in rows]
    assert [t["status"] for t in table] == [r.status for r in rows]
    assert (files / "params_vs_metric.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stored = Path(outcome.search_uri) / "summary"  # the same files on the search's storage
    assert (stored / "summary.csv").read_text() == (files / "summary.csv").read_text()
    best_lr = float(by_trial[rows[0].trial_id].data.params["optim.lr"])
    assert yaml.safe_load((files / "best_config.yaml").read_text())["optim"]["lr"] == best_lr
    overrides = yaml.safe_load((files / "best_overrides.yaml").read_text())
    assert overrides == yaml.safe_load(SPACE)["variants"][rows[0].params["variant"]]
    assert load_config("pkg://tiny", [f"{k}={v}" for k, v in overrides.items()]).optim.lr == best_lr


def test_a_search_whose_every_trial_fails_says_why_and_exits_non_zero(ray_tune: None, tune_dataset: Path,
                                                                       tmp_path: Path) -> None:
    """Two trials that cannot build their model: the CLI prints each one's error line in the summary, one line
    naming the first, and exits 1 (it exited 0)."""
    import subprocess
    import sys

    space = tmp_path / "bad.yaml"
    space.write_text("variants:\n  three_heads: {model.bdam.heads: 3}\n  five_heads: {model.bdam.heads: 5}\n")
    overrides = [f"data.uri={tune_dataset}", "data.use_descriptions=false", "train.engine=torch", "train.workers=1",
                 "train.epochs=1", "train.steps_per_epoch=1", f"tune.storage_uri={tmp_path}", "tune.name=bad",
                 f"tracking.runs_dir={tmp_path / 'runs'}", "train.max_failures=0", "tune.max_failures=0"]
    command = [str(Path(sys.executable).parent / "reid"), "tune", "--space", str(space), "--config", "pkg://tiny",
               "--data-source", "memory", *[arg for item in overrides for arg in ("--set", item)]]
    import os

    import ray

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}  # this session's Ray: one per host
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    # each trial's console line and each errored row of the summary name its error
    lines = [line for line in done.stdout.splitlines() if line.startswith("trial ") and ": error: " in line]
    assert len(lines) == 2 and all("not divisible by bdam.heads=" in line for line in lines), done.stdout[-2000:]
    assert done.stdout.count("not divisible by bdam.heads=") == 4
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("reid tune: every trial failed; trial ") and "not divisible by bdam.heads=" in last
