"""The seeds protocol (paper 4.2) through ``reid train --seeds 0,1,2``: one child MLflow run per seed under one
parent, whose mean and std of the test metrics equal those computed from the children."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from conftest import write_colour_dataset  # noqa: E402

pytestmark = pytest.mark.slow

SEEDS = (0, 1, 2)
METRICS = ("R1", "R5", "R10", "mAP", "mINP")


def test_seeds_protocol_logs_children_and_mean_std_on_parent(ray_local: None, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from reid.cli.main import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    dataset = write_colour_dataset(tmp_path / "dataset")
    sets = [f"data.uri={dataset}", "data.use_descriptions=false", "train.epochs=1", "train.steps_per_epoch=2",
            f"train.storage_uri={tmp_path / 'ckpt'}", f"tracking.runs_dir={tmp_path / 'runs'}", "train.name=proto",
            "tracking.experiment=seeds"]
    args = ["train", "--config", "pkg://tiny", "--seeds", ",".join(map(str, SEEDS)), "--data-source", "memory",
            "--json"]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    parent = client.get_run(printed["parent_run_id"])
    assert parent.info.run_name == "proto-seeds" and parent.info.status == "FINISHED"
    experiment = parent.info.experiment_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.info.run_name for c in children) == [f"proto-seed{s}" for s in SEEDS]
    assert {c.data.params["seed"] for c in children} == {str(s) for s in SEEDS}
    for metric in METRICS:
        values = np.array([c.data.metrics[f"test/{metric}"] for c in children])
        assert parent.data.metrics[f"test_mean/{metric}"] == pytest.approx(values.mean(), abs=1e-6)
        assert parent.data.metrics[f"test_std/{metric}"] == pytest.approx(values.std(ddof=1), abs=1e-6)
        assert printed["mean"][metric] == pytest.approx(values.mean(), abs=1e-6)
    # different seeds give different models: not every child has the same test mAP
    assert len({round(c.data.metrics["test/mAP"], 6) for c in children}) > 1
    artifacts = [a.path for a in client.list_artifacts(parent.info.run_id, "seeds")]
    assert artifacts == ["seeds/seeds.txt"]
