"""``ray job submit`` of jobs/train.py to a Ray head started here, tracked by the session's ``mlflow server``
(``mlflow_server`` in tests/distributed/conftest.py).

Subprocess level: this test never joins a Ray itself. The head runs with the project's virtualenv first on
PATH (the entrypoint's ``python``), on ports of its own, under a temporary directory by which it is stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from conftest import write_colour_dataset  # noqa: E402

from reid.distributed.runtime import free_port  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
EPOCHS = 2


def stop_tree(roots: list[psutil.Process]) -> None:
    """SIGTERM then SIGKILL ``roots`` and all their descendants (children first)."""
    procs: list[psutil.Process] = []
    for root in roots:
        try:
            procs += root.children(recursive=True) + [root]
        except psutil.Error:
            continue
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


def processes_mentioning(text: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(text in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture()
def ray_head() -> Iterator[str]:
    """A Ray head (dashboard on 127.0.0.1) under its own temp dir; stopped by the processes naming it."""
    temp = tempfile.mkdtemp(prefix="reid-ray-", dir="/tmp")  # short: Ray's socket paths are length-limited
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0"}
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):  # never the Ray of the pytest process
        env.pop(name, None)
    dashboard = free_port()
    command = [
        str(VENV_BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(free_port()),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--include-dashboard", "true",
        "--dashboard-agent-listen-port", str(free_port()), "--ray-client-server-port", str(free_port()),
        "--num-cpus", "2", "--temp-dir", temp, "--disable-usage-stats",
    ]
    try:
        subprocess.run(command, env=env, check=True, timeout=240, capture_output=True)
        yield f"http://127.0.0.1:{dashboard}"
    finally:
        stop_tree(processes_mentioning(temp))
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_job_submit_trains_and_tracks_in_mlflow_server(ray_head: str, mlflow_server: str,
                                                            tmp_path: Path) -> None:
    dataset = write_colour_dataset(tmp_path / "dataset")
    overrides = [
        f"data.uri={dataset}", "data.use_descriptions=false", f"train.epochs={EPOCHS}", "train.steps_per_epoch=2",
        "train.workers=1", f"train.storage_uri={tmp_path / 'ckpt'}", "train.name=submitted",
        f"tracking.uri={mlflow_server}", "tracking.experiment=submitted",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):  # submit to the head this test started
        env.pop(name, None)
    submit = [
        str(VENV_BIN / "ray"), "job", "submit", "--address", ray_head, "--working-dir", str(REPO),
        "--runtime-env", str(REPO / "cluster" / "runtime_env.yaml"), "--",
        "python", "jobs/train.py", "--config", "pkg://tiny", "--data-source", "memory", "--json",
        *[arg for key in overrides for arg in ("--set", key)],
    ]
    deadline = time.monotonic() + 120
    while True:  # the head's dashboard agent registers a little after `ray start` returns; nothing is created before
        done = subprocess.run(submit, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        if "No available agent to submit job" not in done.stderr + done.stdout or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    printed = json.loads(next(line for line in reversed(done.stdout.splitlines()) if line.startswith("{")))
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("submitted")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [printed["mlflow_run_id"]]
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.params["train.name"] == "submitted"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss/total")) == list(range(EPOCHS))
    assert {"val/R1", "test/R1", "test/mAP", "samples_per_s"} <= set(run.data.metrics)
    assert run.data.metrics["test/R1"] == pytest.approx(printed["test"]["R1"])
    checkpoint = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "best_checkpoint")}
    assert "config.yaml" in checkpoint and len(checkpoint) >= 2, checkpoint
    assert {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "config")} == {"resolved.yaml"}
