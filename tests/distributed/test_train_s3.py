"""Checkpoints in object storage: a Ray Train run writes every rank's checkpoint to ``s3://`` on a real S3
server (127.0.0.1), stops, and ``--resume`` continues from the checkpoint it reads back from there."""

from __future__ import annotations

import sys
from pathlib import Path

import boto3
import pytest
from mlflow.tracking import MlflowClient

from reid.config import load_config

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from conftest import write_colour_dataset  # noqa: E402

pytestmark = pytest.mark.slow


def test_checkpoints_in_s3_and_resume_from_them(ray_local: None, s3_bucket: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from reid.distributed.train_job import train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    dataset = write_colour_dataset(tmp_path / "dataset")
    overrides = [f"data.uri={dataset}", "data.use_descriptions=false", "train.epochs=3", "train.steps_per_epoch=6",
                 f"train.storage_uri={s3_bucket}/ckpt", f"tracking.runs_dir={tmp_path / 'runs'}",
                 "train.name=s3run", "train.pictures=false", "train.keep_checkpoints=null"]
    stopped = train(load_config("pkg://tiny", [*overrides, "train.stop_after_epochs=2"]))
    assert not stopped.finished and stopped.run_uri == f"{s3_bucket}/ckpt/s3run"

    bucket = s3_bucket.removeprefix("s3://")
    keys = [o["Key"] for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    checkpoints = sorted({k.split("/")[2] for k in keys if k.startswith("ckpt/s3run/checkpoint_") and
                          k.count("/") > 2})
    assert len(checkpoints) == 2, keys
    for rank in (0, 1):  # both ranks' ZeRO shards and RNG states in each checkpoint
        assert all(any(k.startswith(f"ckpt/s3run/{c}/") and k.endswith(f"rng-rank{rank}.pt") for k in keys)
                   for c in checkpoints)
        assert any(f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" in k for k in keys)
    assert any(k.startswith("ckpt/s3run/best/") for k in keys)

    resumed = train(load_config("pkg://tiny", overrides), resume=True)
    assert resumed.finished and resumed.mlflow_run_id == stopped.mlflow_run_id
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    history = client.get_metric_history(resumed.mlflow_run_id, "step")
    assert sorted((m.step, m.value) for m in history) == [(0, 6.0), (1, 12.0), (2, 18.0)]  # continued, no repeats
    assert set(resumed.test_metrics) == {"R1", "R5", "R10", "mAP", "mINP"}
    assert client.get_run(resumed.mlflow_run_id).data.tags["best_checkpoint_uri"] == f"{s3_bucket}/ckpt/s3run/best"
