"""Training across nodes: ``cluster/local_up.sh`` with two worker raylets (their own object stores and the
resources ``node_1``, ``node_2``), the S3-protocol server and the ``mlflow server`` it starts; ``ray job submit`` of
``reid train`` with 2 workers under ``train.placement=STRICT_SPREAD`` (each on a node of its own), the dataset read
from S3 and the checkpoints written there. The MLflow run records each rank's node, the console names them, and
nothing the run leaves behind sits on the driver's disk only (the log and the pictures reach S3 and MLflow).

Subprocess level: this test never joins a Ray itself; the stack is stopped by local_down.sh (its own temp dir).
About 2.5 minutes on 2 busy cores: the stack starts in ~55 s, the job and the checks ~75 s, the stop ~30 s."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from conftest import write_colour_dataset  # noqa: E402
from test_local_stack import _free_ports, _stack_processes, state  # noqa: E402, F401 - `state` is a fixture

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
BUCKET = "reid"


@pytest.fixture()
def stack(state: Path) -> Iterator[dict[str, str]]:  # noqa: F811 - the imported fixture
    """The local stack with 2 worker nodes (1 CPU each, the head 1 CPU) on ports of its own; yields the
    environment a client uses (job address, S3 endpoint and keys, tracking URI) and stops it all."""
    s3, mlflow, gcs, dashboard, agent = _free_ports(5)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
                        "MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update({"REID_STACK_DIR": str(state), "REID_STACK_WORKERS": "2", "REID_HEAD_CPUS": "1",
                "REID_S3_PORT": str(s3), "REID_MLFLOW_PORT": str(mlflow), "REID_RAY_PORT": str(gcs),
                "REID_DASHBOARD_PORT": str(dashboard), "REID_DASHBOARD_AGENT_PORT": str(agent),
                "PATH": f"{VENV_BIN}:{os.environ['PATH']}"})
    up = subprocess.run(["bash", "cluster/local_up.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        client = dict(env)
        for line in up.stdout.splitlines():  # the `export A=x B=y` lines it prints
            if line.startswith("export "):
                client.update(item.split("=", 1) for item in line.removeprefix("export ").split())
        yield client
    finally:
        subprocess.run(["bash", "cluster/local_down.sh"], cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert _stack_processes(state) == []


def test_two_workers_on_two_nodes_read_s3_write_s3_and_track_their_nodes(stack: dict[str, str],
                                                                          tmp_path: Path) -> None:
    started = time.monotonic()
    s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], aws_access_key_id="local",
                      aws_secret_access_key="local", region_name="us-east-1")
    dataset = write_colour_dataset(tmp_path / "dataset", train=8, val=4, test=4, images=2)
    for path in dataset.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), BUCKET, f"data/colour/{path.relative_to(dataset)}")
    overrides = [f"data.uri=s3://{BUCKET}/data/colour", "data.use_descriptions=false", "train.epochs=1",
                 "train.steps_per_epoch=2", "train.workers=2", "train.cpus_per_worker=0.5",
                 "train.placement=STRICT_SPREAD", f"train.storage_uri=s3://{BUCKET}/ckpt", "train.name=spread",
                 f"tracking.uri={stack['MLFLOW_TRACKING_URI']}", "tracking.experiment=spread"]
    submit = [str(VENV_BIN / "ray"), "job", "submit", "--address", stack["RAY_ADDRESS"], "--working-dir", str(ROOT),
              "--runtime-env", str(ROOT / "cluster" / "runtime_env.yaml"), "--",
              "python", "jobs/train.py", "--config", "pkg://tiny", "--data-source", "memory",
              *[arg for key in overrides for arg in ("--set", key)]]
    deadline = time.monotonic() + 120
    while True:  # the head's job agent registers seconds after `ray start` returns; nothing is created before
        done = subprocess.run(submit, env=stack, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        if "No available agent to submit job" not in done.stderr + done.stdout or time.monotonic() > deadline:
            break
        time.sleep(3)
    console = done.stdout + done.stderr
    assert done.returncode == 0 and "succeeded" in console, console[-5000:]

    client = MlflowClient(tracking_uri=stack["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("spread").experiment_id])
    assert run.info.status == "FINISHED" and f"MLflow run: {run.info.run_id}" in console
    tags = run.data.tags
    rank0, rank1 = tags["node/rank_0"], tags["node/rank_1"]
    assert re.fullmatch(r"[0-9a-f]{56}", rank0) and re.fullmatch(r"[0-9a-f]{56}", rank1) and rank0 != rank1
    assert tags["nodes"] == "2" and "node/rank_2" not in tags
    (line,) = {line.strip() for line in console.splitlines() if line.startswith("2 workers on 2 nodes: ")}
    assert re.fullmatch(rf"2 workers on 2 nodes: rank 0 on node {rank0[:12]} \(\S+\), rank 1 on node {rank1[:12]} "
                        r"\(\S+\)", line), line
    assert f"  placement: {line}" in console  # and again in the summary

    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="ckpt/spread/")
            for o in page.get("Contents", [])]
    for rank in (0, 1):  # each rank's part of the epoch's checkpoint, uploaded from its own node
        assert any(re.match(rf"ckpt/spread/checkpoint_[^/]+/.*rng-rank{rank}\.pt$", k) for k in keys), keys
    assert "ckpt/spread/best/config.yaml" in keys and "ckpt/spread/result.json" in keys
    (log,) = [k for k in keys if k.startswith("ckpt/spread/logs/train-")]
    assert f"full log: s3://{BUCKET}/{log}" in console
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "logs", "pictures"} <= artifacts, artifacts
    assert any(a.path.endswith(".png") for a in client.list_artifacts(run.info.run_id, "pictures"))
    print(f"\n{line}\ntrain job + checks: {time.monotonic() - started:.0f} s")
