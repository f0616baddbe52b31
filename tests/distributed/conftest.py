"""Fixtures for the Ray tests: a dashboard-enabled local Ray, a real ``mlflow server`` and the colour dataset."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from reid.distributed.runtime import free_port

TRAINING_CONFTEST = Path(__file__).parents[1] / "training" / "conftest.py"


def _training_fixtures():
    """The Ray-free dataset writer of ``tests/training/conftest.py`` (loaded by path: conftests are not modules)."""
    spec = importlib.util.spec_from_file_location("reid_training_fixtures", TRAINING_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tune_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two-colour figures dataset (train/val/test identities, one shard per split)."""
    return _training_fixtures().write_colour_dataset(tmp_path_factory.mktemp("tune") / "dataset")


@pytest.fixture(scope="session")
def ray_tune(ray_local: None) -> Iterator[None]:
    """The session's Ray, with its dashboard (Tune's stopped trials free their workers through the state
    API); a Ray started without one by another fixture is replaced by one with it."""
    import ray
    from ray.util.state import list_nodes

    from reid.distributed.runtime import ensure_ray

    try:
        list_nodes(limit=1, timeout=10)
    except Exception:
        ray.shutdown()
        ensure_ray(num_cpus=2, dashboard=True)
    yield


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 (SQLite store and artifacts in a temporary directory, one worker, no
    job execution), one for the session (each test names its own experiment); yields its URI once ``/health``
    answers and stops it (by its process group) at the end."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts")]
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(uri, proc, root / "server.log")
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _wait_healthy(uri: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server at {uri} not healthy after {timeout:.0f} s:\n{log.read_text()[-2000:]}")
