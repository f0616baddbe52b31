"""cluster/local_up.sh with its doors locked (REID_STACK_AUTH=1, on 127.0.0.1 and ports of its own): Ray's job API
answers 401 without the token, 403 with a wrong one, and runs a job only for the token's holder; MLflow answers
401 without the admin's password; the secrets are files only their owner reads and the printed lines hold none;
local_down.sh stops this stack's processes (found by its own Ray temp dir, not `ray stop`)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from reid.distributed.runtime import free_ports

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]


def _stack_processes(state: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if f"{state}/ray/".encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def _state_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _job_finishes(dashboard: str, headers: dict[str, str], job: str) -> str:
    for _ in range(120):
        status = requests.get(f"{dashboard}/api/jobs/{job}", headers=headers, timeout=30).json()["status"]
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return status
        time.sleep(1)
    return status


def _submit(dashboard: str, headers: dict[str, str], job: dict[str, str]) -> requests.Response:
    """POST the job; until the head's job agent has registered (seconds after ``ray start`` on a loaded machine)
    Ray answers 500 "No available agent to submit job", as it tells a user to try again."""
    for _ in range(60):
        response = requests.post(f"{dashboard}/api/jobs/", json=job, headers=headers, timeout=30)
        if response.status_code != 500 or "No available agent" not in response.text:
            return response
        time.sleep(1)
    return response


@pytest.fixture()
def state() -> Iterator[Path]:
    """A short directory of its own (Ray's socket paths under it must stay within 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="reid-stack-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_local_up_locks_ray_and_mlflow_and_local_down_stops_only_this_stack(state: Path) -> None:
    s3, mlflow, gcs, dashboard_port, agent = free_ports(5)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "MLFLOW_TRACKING_PASSWORD")}
    # The job agent on a port of its own: the session's Ray of the other tests holds Ray's default 52365, and a
    # head whose agent cannot bind answers every submission with 500 "No available agent".
    env.update({"REID_DASHBOARD_AGENT_PORT": str(agent)})
    env.update({"REID_STACK_DIR": str(state), "REID_STACK_AUTH": "1", "REID_S3_PORT": str(s3),
                "REID_MLFLOW_PORT": str(mlflow), "REID_RAY_PORT": str(gcs), "REID_DASHBOARD_PORT": str(dashboard_port)})
    up = subprocess.run(["bash", "cluster/local_up.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        secrets = {name: (state / "secrets" / name).read_text() for name in ("ray_token", "mlflow_password",
                                                                             "mlflow_flask_key")}
        assert stat.S_IMODE((state / "secrets").stat().st_mode) == 0o700
        for name, value in secrets.items():
            assert stat.S_IMODE((state / "secrets" / name).stat().st_mode) == 0o600 and len(value) >= 32
            assert value not in up.stdout + up.stderr, name
        assert f"RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={state}/secrets/ray_token" in up.stdout
        assert f'MLFLOW_TRACKING_PASSWORD="$(cat {state}/secrets/mlflow_password)"' in up.stdout

        dashboard, token = f"http://127.0.0.1:{dashboard_port}", {"Authorization": f"Bearer {secrets['ray_token']}"}
        job = {"entrypoint": "python -c 'print(6 * 7)'"}
        assert requests.post(f"{dashboard}/api/jobs/", json=job, timeout=30).status_code == 401
        wrong = {"Authorization": f"Bearer {secrets['ray_token'][::-1]}"}
        assert requests.post(f"{dashboard}/api/jobs/", json=job, headers=wrong, timeout=30).status_code == 403
        assert requests.get(f"{dashboard}/api/jobs/", timeout=30).status_code == 401
        assert requests.get(f"{dashboard}/api/jobs/", headers=token, timeout=30).json() == []  # nothing ran
        submitted = _submit(dashboard, token, job)
        assert submitted.status_code == 200, submitted.text
        job_id = submitted.json()["submission_id"]
        assert _job_finishes(dashboard, token, job_id) == "SUCCEEDED"
        logs = requests.get(f"{dashboard}/api/jobs/{job_id}/logs", headers=token, timeout=30).json()["logs"]
        assert "42" in logs

        api = f"http://127.0.0.1:{mlflow}/api/2.0/mlflow/experiments/search?max_results=5"
        assert requests.get(f"http://127.0.0.1:{mlflow}/health", timeout=30).status_code == 200  # open, for probes
        assert requests.get(api, timeout=30).status_code == 401
        assert requests.get(api, auth=("admin", "not-the-password"), timeout=30).status_code == 401
        assert requests.get(api, auth=("admin", secrets["mlflow_password"]), timeout=30).status_code == 200
        assert _stack_processes(state)
        servers = [int((state / f"{name}.pid").read_text()) for name in ("mlflow", "s3")]
    finally:
        down = subprocess.run(["bash", "cluster/local_down.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
    assert down.returncode == 0 and "local stack stopped" in down.stdout
    assert _stack_processes(state) == []
    assert not any(Path(f"/proc/{pid}").exists() and "Z" not in _state_of(pid) for pid in servers)
    for port in (s3, mlflow, dashboard_port, gcs):
        assert _refused(port), port


NODES = """
import json, ray
ray.init(address="127.0.0.1:{port}", logging_level="ERROR")
print("NODES " + json.dumps([{{"alive": n["Alive"], "resources": n["Resources"]}} for n in ray.nodes()]))
"""


def _nodes(gcs: int) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_AUTH_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-c", NODES.format(port=gcs)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    # the driver also prints the cluster's error notices (a dead node's "lagging heartbeats") to stdout
    marked = [line for line in done.stdout.splitlines() if line.startswith("NODES ")]
    assert marked, done.stdout[-2000:]
    return json.loads(marked[-1].removeprefix("NODES "))


def test_local_up_starts_worker_nodes_and_local_node_kills_one_by_its_pid(state: Path) -> None:
    """REID_STACK_WORKERS=2: three raylets on this machine, each worker with its CPU, its object store and its
    node_<i> resource; `local_node.sh kill 1` ends that raylet (Ray then reports the node dead) and leaves the
    others; local_down.sh stops all of them."""
    s3, mlflow, gcs, dashboard_port = free_ports(4)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env.update({"REID_STACK_DIR": str(state), "REID_STACK_WORKERS": "2", "REID_HEAD_CPUS": "1",
                "REID_S3_PORT": str(s3), "REID_MLFLOW_PORT": str(mlflow), "REID_RAY_PORT": str(gcs),
                "REID_DASHBOARD_PORT": str(dashboard_port), "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"})
    up = subprocess.run(["bash", "cluster/local_up.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        nodes = _nodes(gcs)
        assert len(nodes) == 3 and all(n["alive"] for n in nodes)
        workers = {name: n for n in nodes for name in n["resources"] if name.startswith("node_")}
        assert sorted(workers) == ["node_1", "node_2"]
        for node in workers.values():
            assert node["resources"]["CPU"] == 1 and node["resources"]["object_store_memory"] == 512 * 2**20
        pid = int((state / "node-1.pid").read_text())
        killed = subprocess.run(["bash", "cluster/local_node.sh", "kill", "1"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert killed.returncode == 0 and f"raylet pid {pid} killed" in killed.stdout, killed.stderr
        for _ in range(60):  # the GCS marks a node dead after its missed health checks
            alive = {name for n in _nodes(gcs) if n["alive"] for name in n["resources"] if name.startswith("node_")}
            if alive == {"node_2"}:
                break
            time.sleep(2)
        assert alive == {"node_2"}
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state_of(pid)
        listed = subprocess.run(["bash", "cluster/local_node.sh", "list"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60).stdout
        assert "node 2:" in listed and "alive" in listed and "node 1:" not in listed
    finally:
        down = subprocess.run(["bash", "cluster/local_down.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
    assert down.returncode == 0 and "local stack stopped" in down.stdout and down.stderr == ""
    assert _stack_processes(state) == []
