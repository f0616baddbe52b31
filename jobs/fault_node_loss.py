"""A worker node lost mid-run, and the driver killed, on the local multi-node stack; prints what recovery cost.

    python jobs/fault_node_loss.py [--epochs 4] [--steps 60] [--kill-epoch 2] [--replace-after 5]
                                   [--identities 40] [--images 4] [--seed 0] [--skip-driver]

Starts ``cluster/local_up.sh`` with two worker raylets, writes a small synthetic dataset into its S3 bucket and
submits ``reid train`` (the tiny config, 2 workers, ``STRICT_SPREAD``, checkpoints in S3, MLflow on the stack's
server) three times with the same seed: uninterrupted; with the raylet of a node holding a rank SIGKILLed (with
its workers) once epoch ``--kill-epoch`` is running and a replacement node added ``--replace-after`` seconds
later; and with the job's driver stopped (``ray job stop``) in that epoch, then submitted again with ``--resume``.
Prints a table: the epoch killed, seconds from the kill to the restarted group's first step, steps redone, the
MLflow runs and their epoch histories, and the final val/test R1 of each run. Stops the stack at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import requests
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
BUCKET = "reid"
STACK_VARS = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "MLFLOW_TRACKING_URI",
              "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# The console's line after a lost worker group (reid.distributed.restarts.RestartWatch).
RESTART_LINE = re.compile(r"^worker group lost \((?P<why>.*)\) in epoch (?P<epoch>\d+): restarted from (?:the "
                          r"checkpoint of epoch (?P<origin>\d+)|the start \(no checkpoint yet\)), (?P<redone>\d+) "
                          r"steps? redone(?:, back in (?P<back>\d+) s)?$", re.M)
RESUMED_LINE = re.compile(r"^resumed from the checkpoint of epoch (?P<origin>\d+) \(step (?P<step>\d+)\).*$", re.M)
SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of the checkpoints it registered


@contextmanager
def scratch_dirs(prefix: str) -> Iterator[tuple[Path, Path]]:
    """Two fresh temporary directories, the stack's state and the job's data, removed afterwards."""
    state = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))  # short: Ray's socket paths under it stay < 108 bytes
    data = Path(tempfile.mkdtemp(prefix=f"{prefix}-data-"))
    try:
        yield state, data
    finally:
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def local_stack(state: Path, workers: int = 2, head_cpus: int = 1) -> Iterator[dict[str, str]]:
    """``cluster/local_up.sh`` with ``workers`` worker raylets (1 CPU each, the head ``head_cpus``) on ports of its
    own; yields the environment a client uses (its ``REID_STACK_DIR`` too, for ``local_node.sh``) and stops it
    all."""
    from reid.distributed.runtime import free_ports

    s3, mlflow, gcs, dashboard, agent = free_ports(5)
    env = {k: v for k, v in os.environ.items() if k not in STACK_VARS}
    env.update({"REID_STACK_DIR": str(state), "REID_STACK_WORKERS": str(workers), "REID_HEAD_CPUS": str(head_cpus),
                "REID_S3_PORT": str(s3), "REID_MLFLOW_PORT": str(mlflow), "REID_RAY_PORT": str(gcs),
                "REID_DASHBOARD_PORT": str(dashboard), "REID_DASHBOARD_AGENT_PORT": str(agent),
                "RAY_AUTH_MODE": "disabled", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"})
    try:
        up = subprocess.run(["bash", "cluster/local_up.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
        if up.returncode != 0:
            raise RuntimeError(f"local_up.sh failed:\n{up.stderr[-3000:]}")
        client = dict(env)
        for line in up.stdout.splitlines():  # the `export A=x B=y` lines it prints
            if line.startswith("export "):
                client.update(item.split("=", 1) for item in line.removeprefix("export ").split())
        yield client
    finally:
        subprocess.run(["bash", "cluster/local_down.sh"], cwd=ROOT, env=env, capture_output=True, timeout=120)


def s3_client(stack: dict[str, str]):  # noqa: ANN201 - boto3's client type is generated
    return boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], aws_access_key_id="local",
                        aws_secret_access_key="local", region_name="us-east-1")


def upload(stack: dict[str, str], directory: Path, prefix: str) -> str:
    """Every file under ``directory`` to ``s3://reid/<prefix>/``; returns that URI."""
    s3 = s3_client(stack)
    for path in directory.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(directory)}")
    return f"s3://{BUCKET}/{prefix}"


def s3_keys(stack: dict[str, str], prefix: str) -> list[str]:
    s3 = s3_client(stack)
    return [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
            for o in page.get("Contents", [])]


def train_overrides(stack: dict[str, str], data_uri: str, name: str, epochs: int, steps: int,
                    extra: Sequence[str] = ()) -> list[str]:
    """The tiny config's run on the stack: 2 workers on 2 nodes, checkpoints in S3, MLflow on its server."""
    return [f"data.uri={data_uri}", "data.use_descriptions=false", f"train.epochs={epochs}",
            f"train.steps_per_epoch={steps}", "train.workers=2", "train.cpus_per_worker=0.5",
            "train.placement=STRICT_SPREAD", f"train.storage_uri=s3://{BUCKET}/ckpt", f"train.name={name}",
            f"tracking.uri={stack['MLFLOW_TRACKING_URI']}", f"tracking.experiment={name}", *extra]


def submit(stack: dict[str, str], overrides: Sequence[str], resume: bool = False, cwd: Path | None = None) -> str:
    """``ray job submit --no-wait`` of ``reid train`` (the tiny config, data held in memory); returns the job id."""
    return submit_entrypoint(stack, ["python", "jobs/train.py", "--config", "pkg://tiny", "--data-source", "memory",
                                     *(["--resume"] if resume else []),
                                     *[arg for key in overrides for arg in ("--set", key)]], cwd)


def submit_entrypoint(stack: dict[str, str], entrypoint: Sequence[str], cwd: Path | None = None) -> str:
    """``ray job submit --no-wait`` of ``entrypoint`` (the repository as working directory); returns the job id.
    Retries while the head's job agent has not registered yet ("No available agent")."""
    command = [str(VENV_BIN / "ray"), "job", "submit", "--no-wait", "--address", stack["RAY_ADDRESS"],
               "--working-dir", str(ROOT), "--runtime-env", str(ROOT / "cluster" / "runtime_env.yaml"), "--",
               *entrypoint]
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run(command, env=stack, cwd=cwd or tempfile.gettempdir(), capture_output=True, text=True,
                              timeout=300)
        out = done.stdout + done.stderr
        if "No available agent to submit job" not in out or time.monotonic() > deadline:
            break
        time.sleep(3)
    found = re.search(r"Job '([^']+)' submitted successfully", out)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"ray job submit failed:\n{out[-3000:]}")
    return found.group(1)


def job_status(stack: dict[str, str], job: str) -> str:
    response = requests.get(f"{stack['RAY_ADDRESS']}/api/jobs/{job}", timeout=30)
    response.raise_for_status()
    return str(response.json()["status"])


def job_logs(stack: dict[str, str], job: str) -> str:
    response = requests.get(f"{stack['RAY_ADDRESS']}/api/jobs/{job}/logs", timeout=30)
    response.raise_for_status()
    return str(response.json()["logs"])


def wait_job(stack: dict[str, str], job: str, timeout: float = 900) -> str:
    """The job's final status (SUCCEEDED, FAILED or STOPPED), polling until ``timeout``."""
    deadline = time.monotonic() + timeout
    while (status := job_status(stack, job)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job} still {status} after {timeout:.0f} s")
        time.sleep(2)
    return status


def stack_nodes(stack: dict[str, str]) -> list[dict[str, object]]:
    """Every Ray node of the stack (the state API): ``node_id``, ``state`` and ``name`` (``node_<i>`` for a
    worker node of local_node.sh, ``head`` for the head)."""
    response = requests.get(f"{stack['RAY_ADDRESS']}/api/v0/nodes", params={"limit": 100, "detail": "true"},
                            timeout=30)
    response.raise_for_status()
    nodes = []
    for node in response.json()["data"]["result"]["result"]:
        names = [k for k in node.get("resources_total", {}) if re.fullmatch(r"node_\w+", k)]
        nodes.append({"node_id": node["node_id"], "state": node["state"],
                      "name": names[0] if names else ("head" if node.get("is_head_node") else "?")})
    return nodes


def local_node(stack: dict[str, str], action: str, node: str) -> str:
    """``cluster/local_node.sh ACTION NODE`` (add or kill); returns its line."""
    done = subprocess.run(["bash", "cluster/local_node.sh", action, node], cwd=ROOT, env=stack, capture_output=True,
                          text=True, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"local_node.sh {action} {node} failed: {done.stderr[-2000:]}")
    return done.stdout.strip()


def logged_epochs(client: MlflowClient, run_id: str) -> list[int]:
    """The epochs (0-based) of the run's per-epoch history, as logged (a repeated epoch appears twice)."""
    return sorted(m.step for m in client.get_metric_history(run_id, "step"))


def experiment_runs(client: MlflowClient, experiment: str) -> list:  # noqa: ANN001 - mlflow's Run
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def wait_for_epoch(stack: dict[str, str], job: str, experiment: str, epoch: int, timeout: float = 600) -> str:
    """Wait until the run of ``experiment`` has logged ``epoch`` (0-based) and its checkpoint is registered;
    returns the MLflow run id. Fails if the job ends first."""
    client = MlflowClient(tracking_uri=stack["MLFLOW_TRACKING_URI"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = experiment_runs(client, experiment)
        if runs and epoch in logged_epochs(client, runs[0].info.run_id):
            return runs[0].info.run_id
        if job_status(stack, job) in ("SUCCEEDED", "FAILED", "STOPPED"):
            raise RuntimeError(f"job {job} ended before epoch {epoch + 1} was logged:\n{job_logs(stack, job)[-3000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"epoch {epoch + 1} not logged after {timeout:.0f} s")


@dataclass
class Outcome:
    """One run's figures for the table."""

    label: str
    status: str
    console: str
    runs: list[str] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    val_r1: float | None = None
    test_r1: float | None = None
    last_loss: float | None = None
    killed_epoch: int | None = None
    resumed_from: int | None = None
    recovery_s: float | None = None
    redone: int | None = None
    note: str = ""


def summarise(stack: dict[str, str], label: str, experiment: str, status: str, console: str) -> Outcome:
    client = MlflowClient(tracking_uri=stack["MLFLOW_TRACKING_URI"])
    runs = experiment_runs(client, experiment)
    outcome = Outcome(label, status, console, [r.info.run_id for r in runs])
    if runs:
        outcome.epochs = logged_epochs(client, runs[0].info.run_id)
        metrics = runs[0].data.metrics
        outcome.val_r1, outcome.test_r1 = metrics.get("best_val/R1"), metrics.get("test/R1")
        outcome.last_loss = metrics.get("loss/total")  # the last epoch's
    if found := RESTART_LINE.search(console):
        outcome.note = found.group(0)
        outcome.redone = int(found.group("redone"))
        outcome.killed_epoch = int(found.group("epoch"))
        outcome.resumed_from = int(found.group("origin") or 0)
    elif found := RESUMED_LINE.search(console):
        outcome.note = found.group(0)
        outcome.resumed_from = int(found.group("origin"))
    return outcome


def add_dataset_args(parser: argparse.ArgumentParser) -> None:
    """``--identities``, ``--images`` and ``--seed`` of the synthetic set a fault job writes (:func:`write_dataset`)."""
    parser.add_argument("--identities", type=int, default=40)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)


def write_dataset(directory: Path, identities: int, images: int, seed: int) -> Path:
    """A small synthetic CUHK-PEDES-style set (64 x 32 images), prepared into shards under ``directory``."""
    from reid.data.prepare import prepare_dataset
    from reid.data.synth import generate

    generate(str(directory / "raw"), identities, images, seed, image_size=(64, 32))
    prepare_dataset("cuhk-pedes", str(directory / "raw"), str(directory / "prepared"), overwrite=True, seed=seed)
    return directory / "prepared"


def run_plain(stack: dict[str, str], data_uri: str, args: argparse.Namespace) -> Outcome:
    name = "plain"
    job = submit(stack, train_overrides(stack, data_uri, name, args.epochs, args.steps, [f"seed={args.seed}"]))
    status = wait_job(stack, job)
    return summarise(stack, "uninterrupted", name, status, job_logs(stack, job))


def registered_epochs(stack: dict[str, str], name: str) -> list[int]:
    """The epochs (0-based) whose checkpoints Ray Train's controller has registered for run ``name`` (its snapshot
    in S3, rewritten at each registration); empty before the first."""
    try:
        body = s3_client(stack).get_object(Bucket=BUCKET, Key=f"ckpt/{name}/{SNAPSHOT}")["Body"].read()
    except Exception:
        return []
    results = json.loads(body).get("checkpoint_results", [])
    return sorted({int(r["metrics"]["epoch"]) for r in results if "epoch" in r.get("metrics", {})})


def wait_registered(stack: dict[str, str], job: str, name: str, epoch: int, timeout: float = 600) -> None:
    """Wait until the checkpoint of ``epoch`` (0-based) is registered: a group lost after it resumes from it."""
    deadline = time.monotonic() + timeout
    while epoch not in registered_epochs(stack, name):
        if time.monotonic() > deadline:
            raise TimeoutError(f"checkpoint of epoch {epoch + 1} not registered after {timeout:.0f} s")
        if job_status(stack, job) in ("SUCCEEDED", "FAILED", "STOPPED"):
            raise RuntimeError(f"job {job} ended first:\n{job_logs(stack, job)[-3000:]}")
        time.sleep(0.3)


@dataclass
class NodeLoss:
    """What the kill did: the node killed (its stack name and Ray id), when, and the epochs registered then."""

    node: str
    node_id: str
    killed_at: float
    registered: list[int]
    run_id: str
    recovered_after: float | None = None


def kill_a_rank_node(stack: dict[str, str], job: str, name: str, after_epoch: int, delay: float,
                     replacement: str, replace_after: float) -> NodeLoss:
    """Once epoch ``after_epoch`` (0-based) is logged and its checkpoint registered, wait ``delay`` s, SIGKILL the
    raylet (with its workers) of a worker node holding a rank, and add node ``replacement`` ``replace_after`` s
    later; wait until the restarted group has tagged its nodes in MLflow (or the job ended)."""
    run_id = wait_for_epoch(stack, job, name, after_epoch)
    wait_registered(stack, job, name, after_epoch)
    time.sleep(delay)
    before = rank_tags(stack, run_id)
    names = {n["node_id"]: str(n["name"]) for n in stack_nodes(stack)}
    held = sorted({names.get(v, "?") for v in before.values()} - {"head", "?"})
    if not held:
        raise RuntimeError(f"no rank runs on a worker node: {before} {names}")
    victim = held[-1]
    node_id = next(v for v in before.values() if names.get(v) == victim)
    registered = registered_epochs(stack, name)
    killed_at = time.monotonic()
    print(local_node(stack, "kill", victim.removeprefix("node_")), flush=True)
    time.sleep(replace_after)
    print(local_node(stack, "add", replacement), flush=True)
    loss = NodeLoss(victim, node_id, killed_at, registered, run_id)
    loss.recovered_after = wait_console(stack, job, RESTART_LINE, killed_at)
    return loss


def rank_tags(stack: dict[str, str], run_id: str) -> dict[str, str]:
    """The run's ``node/rank_<r>`` tags: each rank's node, as the latest worker group wrote them."""
    tags = MlflowClient(tracking_uri=stack["MLFLOW_TRACKING_URI"]).get_run(run_id).data.tags
    return {k: v for k, v in tags.items() if k.startswith("node/rank_")}


def wait_console(stack: dict[str, str], job: str, line: re.Pattern[str], since: float) -> float | None:
    """Seconds from ``since`` (``time.monotonic``) until ``job``'s console shows ``line`` (the restarted or resumed
    group has restored its checkpoint), None if the job ended first."""
    while job_status(stack, job) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        if line.search(job_logs(stack, job)):
            return time.monotonic() - since
        time.sleep(0.5)
    return None


def run_node_loss(stack: dict[str, str], data_uri: str, args: argparse.Namespace) -> Outcome:
    """The node-loss run: see :func:`kill_a_rank_node`."""
    name = "nodeloss"
    job = submit(stack, train_overrides(stack, data_uri, name, args.epochs, args.steps, [f"seed={args.seed}"]))
    loss = kill_a_rank_node(stack, job, name, args.kill_epoch - 2, args.kill_delay, "3", args.replace_after)
    status = wait_job(stack, job)
    outcome = summarise(stack, "node lost", name, status, job_logs(stack, job))
    outcome.recovery_s = loss.recovered_after
    print(f"killed {loss.node} ({loss.node_id[:12]}) with checkpoints of epochs "
          f"{[e + 1 for e in loss.registered]} registered; restored {loss.recovered_after} s after the kill")
    return outcome


def run_driver_killed(stack: dict[str, str], data_uri: str, args: argparse.Namespace) -> Outcome:
    """Stop the job (SIGTERM, then SIGKILL, to its driver) in epoch ``kill_epoch``, then submit the same run again
    with ``--resume``: it continues the MLflow run from the last registered checkpoint."""
    name = "driverloss"
    overrides = train_overrides(stack, data_uri, name, args.epochs, args.steps, [f"seed={args.seed}"])
    first = submit(stack, overrides)
    run_id = wait_for_epoch(stack, first, name, args.kill_epoch - 2)
    wait_registered(stack, first, name, args.kill_epoch - 2)
    time.sleep(args.kill_delay)
    stopped_at = time.monotonic()
    subprocess.run([str(VENV_BIN / "ray"), "job", "stop", "--address", stack["RAY_ADDRESS"], first], env=stack,
                   capture_output=True, timeout=120)
    stopped = wait_job(stack, first)
    client = MlflowClient(tracking_uri=stack["MLFLOW_TRACKING_URI"])
    killed_epoch = max(logged_epochs(client, run_id), default=-1) + 2  # 1-based: the epoch after the last logged
    status_at_stop = client.get_run(run_id).info.status
    first_console = job_logs(stack, first)
    second = submit(stack, overrides, resume=True)
    recovered = wait_console(stack, second, RESUMED_LINE, stopped_at)
    status = wait_job(stack, second)
    console = job_logs(stack, second)
    outcome = summarise(stack, "driver stopped, resubmitted with --resume", name, status,
                        first_console + "\n----- resubmitted with --resume\n" + console)
    outcome.status = f"{stopped} -> {status}"
    outcome.killed_epoch, outcome.recovery_s = killed_epoch, recovered
    print(f"driver stopped in epoch {killed_epoch}; the MLflow run was {status_at_stop} until the resubmitted job "
          f"continued it; resumed {recovered} s after the stop (with the resubmission)")
    return outcome


def table(rows: Sequence[Outcome]) -> str:
    """The runs side by side (epochs 1-based)."""
    def num(value: float | None, digits: int = 0) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = ["| run | job | epoch killed | resumed from checkpoint of epoch | recovery (s) | steps redone | "
             "MLflow runs | epochs logged | last epoch's loss | best val R1 | test R1 |", "|" + " --- |" * 11]
    for r in rows:
        lines.append(f"| {r.label} | {r.status} | {num(r.killed_epoch)} | {num(r.resumed_from)} | "
                     f"{num(r.recovery_s)} | {num(r.redone)} | {len(r.runs)} | "
                     f"{', '.join(str(e + 1) for e in r.epochs)} | {num(r.last_loss, 4)} | {num(r.val_r1, 1)} | "
                     f"{num(r.test_r1, 1)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60, help="steps per epoch")
    parser.add_argument("--kill-epoch", type=int, default=2, help="1-based epoch in which the node dies")
    parser.add_argument("--kill-delay", type=float, default=0.5,
                        help="seconds after the previous epoch's checkpoint is registered")
    parser.add_argument("--replace-after", type=float, default=5.0, help="seconds from the kill to the new node")
    add_dataset_args(parser)
    parser.add_argument("--skip-plain", action="store_true", help="no uninterrupted run")
    parser.add_argument("--skip-driver", action="store_true", help="no driver-killed run")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with scratch_dirs("reid-fault") as (state, data):
        dataset = write_dataset(data, args.identities, args.images, args.seed)
        with local_stack(state) as stack:
            data_uri = upload(stack, dataset, "data/synth")
            rows = [] if args.skip_plain else [run_plain(stack, data_uri, args)]
            rows.append(run_node_loss(stack, data_uri, args))
            if not args.skip_driver:
                rows.append(run_driver_killed(stack, data_uri, args))
            for row in rows:
                print(f"\n===== {row.label}: {row.status}\n{row.console[-4000:]}")
        print("\n" + table(rows))
        for row in rows:
            if row.note:
                print(f"{row.label}: {row.note}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
