"""A training that cannot start says why in one line and leaves no MLflow run behind; one that fails after its
run exists ends that run FAILED; a fresh run under a taken name creates none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from reid.config import load_config

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from conftest import write_colour_dataset  # noqa: E402

REID = Path(sys.executable).parent / "reid"


def _reid(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REID), *args], capture_output=True, text=True, timeout=300)


def _runs(store: Path) -> list:
    if not (store / "mlflow.db").exists():
        return []
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


@pytest.mark.parametrize("case", ["missing_data", "resume_nothing"])
def test_a_run_that_cannot_start_says_why_in_one_line_and_leaves_no_run(tmp_path: Path, case: str) -> None:
    dataset = write_colour_dataset(tmp_path / "dataset")
    common = ["train", "--config", "pkg://tiny", "--set", f"tracking.runs_dir={tmp_path / 'runs'}",
              "--set", f"train.storage_uri={tmp_path / 'ckpt'}", "--set", "train.name=x1"]
    extra = (["--set", "data.uri=/nope"] if case == "missing_data"
             else ["--set", f"data.uri={dataset}", "--resume"])
    done = _reid(*common, *extra)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert ("no 'train' shards under /nope" if case == "missing_data" else "--resume: no run 'x1'") in lines[0]
    assert _runs(tmp_path / "runs") == []


@pytest.mark.slow
def test_a_failure_inside_training_ends_the_run_failed(ray_local: None, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from reid.distributed.train_job import RunExistsError, train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    dataset = write_colour_dataset(tmp_path / "dataset")
    config = load_config("pkg://tiny", [
        f"data.uri={dataset}", "data.use_descriptions=false", "train.epochs=1", "train.steps_per_epoch=1",
        f"train.storage_uri={tmp_path / 'ckpt'}", f"tracking.runs_dir={tmp_path / 'runs'}", "train.name=bad",
        "model.bdam.heads=3", "train.max_failures=0",  # a 32-wide BDAM cannot have 3 heads: fails on the workers
    ])
    with pytest.raises(Exception, match="not divisible by bdam.heads=3"):
        train(config, data="memory")
    (run,) = _runs(tmp_path / "runs")
    assert run.info.status == "FAILED" and run.info.run_name == "bad"
    (tmp_path / "ckpt" / "bad" / "state").mkdir(parents=True)  # as if it had checkpointed
    with pytest.raises(RunExistsError):
        train(config, data="memory")
    assert len(_runs(tmp_path / "runs")) == 1  # the refused start created no run
