"""Training across nodes: ``cluster/local_up.sh`` with two worker raylets (their own object stores, temp dirs and
the resources ``node_1``, ``node_2``), the S3-protocol server and the ``mlflow server`` it starts; ``ray job submit``
of ``reid train`` with 2 workers under ``train.placement=STRICT_SPREAD`` (each on a node of its own), the dataset
read from S3 and the checkpoints written there. The MLflow run records each rank's node, the console names them, and
nothing the run leaves behind sits on the driver's disk only (the log and the pictures reach S3 and MLflow). Then a
worker node is lost mid-epoch (its raylet SIGKILLed with its workers, a replacement node added): Ray Train restarts
the group from the last registered S3 checkpoint, into the same MLflow run, each epoch logged once.

Subprocess level: these tests never join a Ray themselves; one stack serves the module and is stopped by
local_down.sh (its own temp dir). On 2 busy cores: 177 s for both (the stack's start 20 s, the first job and
its checks 64 s, the node-loss job and its checks 68 s, the stop 22 s; one test alone with its own stack took 157 s)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
from conftest import write_colour_dataset  # noqa: E402
from test_local_stack import _stack_processes  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
BUCKET = "reid"
DATA = f"s3://{BUCKET}/data/colour"


def _fault_job():
    """jobs/fault_node_loss.py (the stack, submission and node helpers; loaded by path: jobs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("fault_node_loss", ROOT / "jobs" / "fault_node_loss.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


fault = _fault_job()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The local stack with 2 worker nodes (1 CPU each, the head 1 CPU) on ports of its own and the colour
    dataset in its bucket, for every test of this module; yields the environment a client uses (job address, S3
    endpoint and keys, tracking URI, the stack's directory) and stops it all."""
    state = Path(tempfile.mkdtemp(prefix="reid-stack-"))  # short: Ray's socket paths under it stay < 108 bytes
    try:
        with fault.local_stack(state) as client:
            dataset = write_colour_dataset(tmp_path_factory.mktemp("nodes") / "dataset", train=8, val=4, test=4,
                                           images=2)
            fault.upload(client, dataset, "data/colour")
            yield client
        assert _stack_processes(state) == []
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _submit_and_wait(stack: dict[str, str], overrides: list[str], cwd: Path) -> str:
    submit = [str(VENV_BIN / "ray"), "job", "submit", "--address", stack["RAY_ADDRESS"], "--working-dir", str(ROOT),
              "--runtime-env", str(ROOT / "cluster" / "runtime_env.yaml"), "--",
              "python", "jobs/train.py", "--config", "pkg://tiny", "--data-source", "memory",
              *[arg for key in overrides for arg in ("--set", key)]]
    deadline = time.monotonic() + 120
    while True:  # the head's job agent registers seconds after `ray start` returns; nothing is created before
        done = subprocess.run(submit, env=stack, cwd=cwd, capture_output=True, text=True, timeout=600)
        if "No available agent to submit job" not in done.stderr + done.stdout or time.monotonic() > deadline:
            break
        time.sleep(3)
    console = done.stdout + done.stderr
    assert done.returncode == 0 and "succeeded" in console, console[-5000:]
    return console


def test_two_workers_on_two_nodes_read_s3_write_s3_and_track_their_nodes(stack: dict[str, str],
                                                                          tmp_path: Path) -> None:
    started = time.monotonic()
    overrides = [f"data.uri={DATA}", "data.use_descriptions=false", "train.epochs=1",
                 "train.steps_per_epoch=2", "train.workers=2", "train.cpus_per_worker=0.5",
                 "train.placement=STRICT_SPREAD", f"train.storage_uri=s3://{BUCKET}/ckpt", "train.name=spread",
                 f"tracking.uri={stack['MLFLOW_TRACKING_URI']}", "tracking.experiment=spread"]
    console = _submit_and_wait(stack, overrides, tmp_path)

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

    keys = fault.s3_keys(stack, "ckpt/spread/")
    for rank in (0, 1):  # each rank's part of the epoch's checkpoint, uploaded from its own node
        assert any(re.match(rf"ckpt/spread/checkpoint_[^/]+/.*rng-rank{rank}\.pt$", k) for k in keys), keys
    assert "ckpt/spread/best/config.yaml" in keys and "ckpt/spread/result.json" in keys
    (log,) = [k for k in keys if k.startswith("ckpt/spread/logs/train-")]
    assert f"full log: s3://{BUCKET}/{log}" in console
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "logs", "pictures"} <= artifacts, artifacts
    assert any(a.path.endswith(".png") for a in client.list_artifacts(run.info.run_id, "pictures"))
    print(f"\n{line}\ntrain job + checks: {time.monotonic() - started:.0f} s")


EPOCHS, STEPS = 4, 40  # 40 steps: an epoch of a few seconds, so that the kill lands inside one


def test_a_node_lost_mid_epoch_restarts_the_group_from_the_last_checkpoint_in_one_mlflow_run(
        stack: dict[str, str]) -> None:
    """SIGKILL the raylet (with its workers) of a worker node holding a rank once epoch 1's checkpoint is registered,
    add a replacement node 3 s later: the job succeeds; one MLflow run, epochs 1..4 logged once each with the step
    counts of an uninterrupted run; the group resumed from the checkpoint registered before the kill (at most one
    epoch of steps redone); the console says so in one line and no Ray error paragraphs; the final group's two
    nodes are tagged, and the dead node is not one of them."""
    started = time.monotonic()
    name = "nodeloss"
    job = fault.submit(stack, fault.train_overrides(stack, DATA, name, EPOCHS, STEPS))
    loss = fault.kill_a_rank_node(stack, job, name, after_epoch=0, delay=0.0, replacement="3", replace_after=3.0)
    assert fault.wait_job(stack, job) == "SUCCEEDED", fault.job_logs(stack, job)[-5000:]
    console = fault.job_logs(stack, job)

    client = MlflowClient(tracking_uri=stack["MLFLOW_TRACKING_URI"])
    (run,) = fault.experiment_runs(client, name)  # one run, not one per worker group
    assert run.info.run_id == loss.run_id and run.info.status == "FINISHED"
    assert fault.logged_epochs(client, run.info.run_id) == list(range(EPOCHS))  # each epoch once, none missing
    steps = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "step"))
    assert [value for _, value in steps] == [float(STEPS * (e + 1)) for e in range(EPOCHS)]

    (line,) = [m.group(0) for m in fault.RESTART_LINE.finditer(console)]
    found = fault.RESTART_LINE.search(console)
    assert found.group("why") == f"node {loss.node_id[:12]} died", line
    resumed, died_in, redone = int(found.group("origin") or 0), int(found.group("epoch")), int(found.group("redone"))
    # the checkpoint registered before the kill (epoch 1; epoch 2's if it was registered in the instant before)
    assert max(loss.registered) + 1 <= resumed <= max(loss.registered) + 2, (loss.registered, line)
    assert died_in == resumed + 1 and 0 <= redone <= STEPS, line
    assert run.data.tags["restarts"] == "1" and run.data.tags["restart/1"] == line
    assert "(raylet)" not in console and "marked dead" not in console, console[-5000:]

    placements = re.findall(r"^2 workers on 2 nodes: .*$", console, re.M)
    assert len(placements) == 2, placements  # the first group's, the restarted group's
    assert loss.node_id[:12] in placements[0] and loss.node_id[:12] not in placements[1]
    assert console.index(placements[0]) < console.index(line) < console.index(placements[1])
    rank0, rank1 = run.data.tags["node/rank_0"], run.data.tags["node/rank_1"]
    assert len({rank0, rank1, loss.node_id}) == 3 and run.data.tags["nodes"] == "2"
    assert rank0[:12] in placements[1] and rank1[:12] in placements[1] and f"  placement: {placements[1]}" in console
    alive = {n["node_id"] for n in fault.stack_nodes(stack) if n["state"] == "ALIVE"}
    assert {rank0, rank1} <= alive and loss.node_id not in alive
    print(f"\n{line}\nregistered before the kill: epochs {[e + 1 for e in loss.registered]}; restart line "
          f"{loss.recovered_after} s after the kill; job + checks: {time.monotonic() - started:.0f} s")
