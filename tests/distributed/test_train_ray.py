"""Ray Train + DeepSpeed ZeRO-1 on 2 CPU workers through the Ray Data pipeline: it learns (validation R1 well
above chance and above epoch 0), checkpoints every epoch, tracks in MLflow, scores the best model on test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from reid.config import load_config
from reid.storage import list_files, resolve

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from conftest import write_colour_dataset  # noqa: E402

pytestmark = pytest.mark.slow

EPOCHS = 4
CHANCE_R1 = 100.0 / 12  # 12 validation identities


def test_two_deepspeed_workers_train_checkpoint_and_track(ray_local: None, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from reid.distributed.train_job import RunExistsError, train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    dataset = write_colour_dataset(tmp_path / "dataset")
    config = load_config("pkg://tiny", [
        f"data.uri={dataset}", "data.use_descriptions=false", f"train.epochs={EPOCHS}", "train.steps_per_epoch=25",
        f"train.storage_uri={tmp_path / 'ckpt'}", f"tracking.runs_dir={tmp_path / 'runs'}", "train.name=ray2",
    ])
    outcome = train(config)
    assert outcome.finished and outcome.best_epoch in range(EPOCHS)
    assert set(outcome.test_metrics) == {"R1", "R5", "R10", "mAP", "mINP"}
    files = list_files(resolve(outcome.run_uri))
    checkpoints = {Path(f).relative_to(outcome.run_uri).parts[0] for f in files if "/state/" in f}
    assert len(checkpoints) == config.train.keep_checkpoints
    assert any(f.endswith("zero_pp_rank_1_mp_rank_00_optim_states.pt") for f in files)  # rank 1's shard merged
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    run = client.get_run(outcome.mlflow_run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss/total")]
    assert steps == list(range(EPOCHS))
    r1 = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "val/R1"), key=lambda m: m.step)]
    assert len(r1) == EPOCHS and r1[-1] >= 3 * CHANCE_R1 and r1[-1] > r1[0], r1
    assert [m.value for m in client.get_metric_history(run.info.run_id, "step")] == [25.0 * (e + 1) for e in
                                                                                      range(EPOCHS)]
    assert "test/R1" in run.data.metrics and run.data.tags["best_checkpoint_uri"].endswith("/best")
    assert run.data.tags["fusion_input"] == "image-only"
    assert run.data.tags["fusion_input_reason"] == "data.use_descriptions is false"
    with pytest.raises(RunExistsError):
        train(config)
