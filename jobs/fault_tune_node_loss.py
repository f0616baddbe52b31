"""A node lost in the middle of a search on the local multi-node stack; prints which trials went on from their
checkpoints and how every MLflow run ended.

    python jobs/fault_tune_node_loss.py [--epochs 4] [--steps 30] [--kill-after-epoch 1] [--replace-after 10]
                                        [--identities 40] [--images 4] [--seed 0]

Starts ``cluster/local_up.sh`` with two worker raylets (1 CPU each) and a head without CPUs, writes a small synthetic
dataset into its S3 bucket and submits ``reid tune`` as a Ray job: a grid of four learning rates on the tiny config,
ASHA (grace 1 epoch, reduction factor 2), four trials at once (each a trial function of 0.05 CPU and one Train
worker of 0.45 CPU, so two trials fit on a node), trial runs and checkpoints in S3, MLflow on the stack's server,
``tune.max_failures=1`` and ``train.max_failures=1``. Once ``--kill-after-epoch`` epochs of some trial are logged, the
raylet of the worker node holding the most Train workers is SIGKILLed (with every worker and trial function on it)
and a replacement node is added ``--replace-after`` seconds later. Prints the search's console, each trial's status,
retries, epochs logged, group starts (epoch resumed from, seconds after the kill) and MLflow status, the parent run's
status and tags, and a table. Stops the stack at the end, also on errors.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from fault_node_loss import (
    BUCKET,
    add_dataset_args,
    job_logs,
    job_status,
    local_node,
    local_stack,
    logged_epochs,
    s3_client,
    s3_keys,
    scratch_dirs,
    stack_nodes,
    submit_entrypoint,
    upload,
    wait_job,
    write_dataset,
)
from mlflow.tracking import MlflowClient

SEARCH = "fault"
EXPERIMENT = "fault-tune"
LEARNING_RATES = (3e-4, 1e-3, 3e-3, 1e-2)
ENDED = ("SUCCEEDED", "FAILED", "STOPPED")


def space_file(directory: Path) -> Path:
    """The searched space: a grid of learning rates (every trial of the grid runs; ASHA stops the weak ones)."""
    path = directory / "fault_space.yaml"
    path.write_text("description: learning rates of the tiny model (the tune fault job)\nparams:\n"
                    f"  optim.lr: {{grid: {list(LEARNING_RATES)}}}\n")
    return path


def search_command(stack: dict[str, str], data_uri: str, space: Path, args: argparse.Namespace) -> list[str]:
    overrides = [f"data.uri={data_uri}", "data.use_descriptions=false", f"seed={args.seed}",
                 f"train.epochs={args.epochs}", f"train.steps_per_epoch={args.steps}", "train.workers=1",
                 "train.cpus_per_worker=0.45", "train.max_failures=1", "train.keep_checkpoints=2",
                 f"tune.storage_uri=s3://{BUCKET}/tune", f"tune.name={SEARCH}", "tune.max_concurrent_trials=4",
                 "tune.grace_period=1", "tune.reduction_factor=2", "tune.max_failures=1",
                 f"tracking.uri={stack['MLFLOW_TRACKING_URI']}", f"tracking.experiment={EXPERIMENT}"]
    return ["python", "jobs/tune.py", "--space", str(space), "--config", "pkg://tiny", "--data-source", "memory",
            *[arg for item in overrides for arg in ("--set", item)]]


def child_runs(client: MlflowClient) -> list[Any]:
    """The search's child runs (one per trial that started), oldest first."""
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is None:
        return []
    runs = client.search_runs([found.experiment_id], "tags.mlflow.parentRunId != ''", order_by=["start_time ASC"])
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId")]


def actors_by_node(stack: dict[str, str], class_name: str) -> dict[str, int]:
    """How many live actors of ``class_name`` each node holds (Ray's state API)."""
    response = requests.get(f"{stack['RAY_ADDRESS']}/api/v0/actors",
                            params={"limit": 1000, "detail": "true",
                                    "filter_keys": ["class_name", "state"], "filter_predicates": ["=", "="],
                                    "filter_values": [class_name, "ALIVE"]}, timeout=30)
    response.raise_for_status()
    counts: dict[str, int] = {}
    for actor in response.json()["data"]["result"]["result"]:
        node = str(actor.get("address", {}).get("node_id") or actor.get("node_id") or "")
        counts[node] = counts.get(node, 0) + 1
    return counts


@dataclass
class Kill:
    """The node killed, when (``time.time()``), and what ran on it then."""

    node: str
    node_id: str
    at: float
    train_workers: int
    trial_functions: int
    trials_logged: dict[str, list[int]] = field(default_factory=dict)


def kill_busiest_node(stack: dict[str, str], job: str, after_epochs: int, replace_after: float,
                      timeout: float = 900) -> Kill:
    """Once a trial has logged ``after_epochs`` epochs, SIGKILL the worker node holding the most Train workers (ties:
    the most trial functions) and add node 3 ``replace_after`` s later."""
    client = MlflowClient(tracking_uri=stack["MLFLOW_TRACKING_URI"])
    deadline = time.monotonic() + timeout
    while True:
        logged = {r.info.run_name: logged_epochs(client, r.info.run_id) for r in child_runs(client)}
        if any(len(epochs) >= after_epochs for epochs in logged.values()):
            break
        if job_status(stack, job) in ENDED:
            raise RuntimeError(f"the search ended before the kill:\n{job_logs(stack, job)[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no trial logged {after_epochs} epochs in {timeout:.0f} s")
        time.sleep(0.5)
    names = {str(n["node_id"]): str(n["name"]) for n in stack_nodes(stack) if n["state"] == "ALIVE"}
    workers, functions = actors_by_node(stack, "RayTrainWorker"), actors_by_node(stack, "ImplicitFunc")
    candidates = [node for node, name in names.items() if name.startswith("node_")]
    victim = max(candidates, key=lambda node: (workers.get(node, 0), functions.get(node, 0), names[node]))
    kill = Kill(names[victim], victim, time.time(), workers.get(victim, 0), functions.get(victim, 0), logged)
    print(f"killing {kill.node} ({victim[:12]}): {kill.train_workers} Train workers and {kill.trial_functions} trial "
          f"functions on it; epochs logged per trial: {logged}", flush=True)
    print(local_node(stack, "kill", kill.node.removeprefix("node_")), flush=True)
    time.sleep(replace_after)
    print(f"{time.time() - kill.at:.1f} s after the kill: {local_node(stack, 'add', '3')}", flush=True)
    return kill


def trial_starts(stack: dict[str, str], trial_id: str) -> list[dict[str, Any]]:
    """The trial's recorded worker-group starts (reid.distributed.group_starts), oldest first."""
    s3 = s3_client(stack)
    keys = sorted(k for k in s3_keys(stack, f"tune/{SEARCH}/trials/{trial_id}/starts/") if k.endswith(".json"))
    return [json.loads(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()) for k in keys]


def summary_rows(stack: dict[str, str]) -> list[dict[str, str]]:
    body = s3_client(stack).get_object(Bucket=BUCKET, Key=f"tune/{SEARCH}/summary/summary.csv")["Body"].read()
    return list(csv.DictReader(io.StringIO(body.decode())))


def report(stack: dict[str, str], kill: Kill, status: str, console: str) -> str:
    """Print each trial's figures and return the table."""
    client = MlflowClient(tracking_uri=stack["MLFLOW_TRACKING_URI"])
    rows = summary_rows(stack)
    lines = ["| trial | optim.lr | status | retries | group starts (epoch begun, s after the kill) | epochs logged "
             "| MLflow status | best val/R1 |", "|" + " --- |" * 8]
    for row in rows:
        run = client.get_run(row["mlflow_run_id"]) if row["mlflow_run_id"] else None
        epochs = logged_epochs(client, run.info.run_id) if run else []
        starts = trial_starts(stack, row["trial_id"])
        begun = ", ".join(f"{s['epoch'] + 1}" + (f" (+{s['time'] - kill.at:.0f} s)" if s["time"] > kill.at else "")
                          for s in starts)
        metric = row.get("val/R1") or "-"
        lines.append(f"| {row['trial_id']} | {row['optim.lr']} | {row['status']} | {row['retries']} | {begun} | "
                     f"{', '.join(str(e + 1) for e in epochs)} | {run.info.status if run else '-'} | "
                     f"{metric if metric == '-' else f'{float(metric):.1f}'} |")
    parent = next((r for r in client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                                                 "tags.`tune.role` = 'search'")), None)
    if parent is not None:
        tags = parent.data.tags
        print(f"parent run {parent.info.run_id}: {parent.info.status}; tune.trials={tags.get('tune.trials')} "
              f"tune.retried_trials={tags.get('tune.retried_trials')} tune.stopped_early="
              f"{tags.get('tune.stopped_early')}", flush=True)
    retried = sum(int(r["retries"]) > 0 for r in rows)
    print(f"search job {status}; {len(rows)} trials, {retried} retried; killed {kill.node} holding "
          f"{kill.train_workers} Train workers and {kill.trial_functions} trial functions", flush=True)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30, help="steps per epoch")
    parser.add_argument("--kill-after-epoch", type=int, default=1,
                        help="kill once some trial has logged this many epochs")
    parser.add_argument("--replace-after", type=float, default=10.0, help="seconds from the kill to the new node")
    add_dataset_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with scratch_dirs("reid-ftune") as (state, data):
        dataset = write_dataset(data, args.identities, args.images, args.seed)
        space = space_file(data)
        with local_stack(state, workers=2, head_cpus=0) as stack:
            data_uri = upload(stack, dataset, "data/synth")
            started = time.monotonic()
            job = submit_entrypoint(stack, search_command(stack, data_uri, space, args))
            kill = kill_busiest_node(stack, job, args.kill_after_epoch, args.replace_after)
            status = wait_job(stack, job, timeout=1800)
            console = job_logs(stack, job)
            print(f"\n===== the search's console ({status}, {time.monotonic() - started:.0f} s)\n{console}")
            if status != "SUCCEEDED":
                return 1
            print("\n" + report(stack, kill, status, console))
            return 0


if __name__ == "__main__":
    sys.exit(main())
