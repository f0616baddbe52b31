"""A serving node lost under load on the local multi-node stack; prints the requests that failed and the recovery.

    python jobs/fault_serve_node_loss.py [--per-kind 30] [--concurrency 4] [--kill-after 0.25]
                                         [--replace-after 10] [--steps 20] [--identities 40] [--images 4] [--seed 0]

Starts ``cluster/local_up.sh`` with two worker raylets (1 CPU each) and a head without CPUs (only Serve's controller,
its HTTP proxy and the gatekeeper, which need none, run there), writes a small synthetic dataset into its S3 bucket,
trains the tiny config for one epoch (2 workers, ``STRICT_SPREAD``), indexes the test gallery into S3 with one
embedding actor per node (``reid index --actors 0``) and serves it with ``reid serve --replicas 2`` (one replica of
each deployment per worker node), all as Ray jobs. Then a bounded load (:mod:`reid.serving.load`: 11 kinds of request,
``--per-kind`` each, good, malformed and unauthenticated) is sent from 127.0.0.1; once ``--kill-after`` of it has
been answered the raylet of the node holding the second search replica is SIGKILLed with its workers
(``cluster/local_node.sh kill``) and a replacement node is added ``--replace-after`` seconds later. Prints where each
replica ran, the load's figures, a table (requests sent, failed by status or error, seconds from the kill until
every request sent got its status, when and where Serve had its replicas again) and a short load afterwards. Stops
the stack at the end, also on errors.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Sequence
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
    scratch_dirs,
    stack_nodes,
    submit,
    submit_entrypoint,
    train_overrides,
    upload,
    wait_job,
    write_dataset,
)

from reid.distributed.runtime import free_port
from reid.serving.load import Answer, bounded_load, format_figures, recovery

APP = "reid-search"
DEPLOYMENTS = ("QueryEncoder", "SearchService")  # the replicated ones; the Gatekeeper is one replica
KINDS = 11  # requests of the load per --per-kind (reid.serving.load.probe_kinds)
BEST_LINE = re.compile(r"best checkpoint: (\S+)")
INDEX_LINE = re.compile(r"embedded on \d+ nodes?: .*")


def job_output(stack: dict[str, str], job: str, what: str) -> str:
    """The console of ``job`` once it has succeeded; fails with its tail otherwise."""
    status = wait_job(stack, job)
    console = job_logs(stack, job)
    if status != "SUCCEEDED":
        raise RuntimeError(f"{what} job {job} {status}:\n{console[-3000:]}")
    return console


def train_checkpoint(stack: dict[str, str], data_uri: str, args: argparse.Namespace) -> str:
    """The tiny config trained for one epoch on the stack; returns its best checkpoint's URI."""
    overrides = train_overrides(stack, data_uri, "serve-model", 1, args.steps, [f"seed={args.seed}"])
    console = job_output(stack, submit(stack, overrides), "training")
    found = BEST_LINE.search(console)
    if not found:
        raise RuntimeError(f"no best checkpoint in the training console:\n{console[-3000:]}")
    return found.group(1)


def build_index(stack: dict[str, str], checkpoint: str, data_uri: str) -> tuple[str, str]:
    """``reid index --actors 0`` of the test gallery into S3; returns the index URI and its placement line."""
    out = f"s3://{BUCKET}/index/synth"
    console = job_output(stack, submit_entrypoint(stack, ["reid", "index", "--checkpoint", checkpoint, "--gallery",
                                                          data_uri, "--split", "test", "--out", out, "--actors", "0",
                                                          "--no-descriptions", "--thumb", "64x32"]), "index")
    found = INDEX_LINE.search(console)
    return out, found.group(0) if found else "(no placement line)"


def replicas(stack: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Each deployment's replicas of the application (Serve's REST API): ``replica_id``, ``state``, ``node_id``."""
    response = requests.get(f"{stack['RAY_ADDRESS']}/api/serve/applications/", timeout=30)
    response.raise_for_status()
    app = (response.json().get("applications") or {}).get(APP) or {}
    return {name: [{k: r.get(k) for k in ("replica_id", "state", "node_id")} for r in d.get("replicas", [])]
            for name, d in (app.get("deployments") or {}).items()}


def running_everywhere(found: dict[str, list[dict[str, Any]]], want: int, alive: set[str]) -> bool:
    """Every replicated deployment has ``want`` replicas RUNNING on alive nodes, each on a node of its own."""
    for name in DEPLOYMENTS:
        nodes = [r["node_id"] for r in found.get(name, []) if r["state"] == "RUNNING" and r["node_id"] in alive]
        if len(nodes) != want or len(set(nodes)) != want:
            return False
    return True


def wait_replicas(stack: dict[str, str], job: str, want: int, timeout: float) -> dict[str, list[dict[str, Any]]]:
    """Wait until each replicated deployment runs ``want`` replicas on distinct alive nodes; returns them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job_status(stack, job) in ("SUCCEEDED", "FAILED", "STOPPED"):
            raise RuntimeError(f"the serve job ended:\n{job_logs(stack, job)[-3000:]}")
        try:
            found = replicas(stack)
        except (requests.RequestException, ValueError):
            found = {}
        alive = {str(n["node_id"]) for n in stack_nodes(stack) if n["state"] == "ALIVE"}
        if running_everywhere(found, want, alive):
            return found
        time.sleep(1)
    raise TimeoutError(f"{want} running replicas of each deployment not seen within {timeout:.0f} s")


def where(found: dict[str, list[dict[str, Any]]], names: dict[str, str]) -> str:
    """``QueryEncoder on node_1, node_2; SearchService on ...`` (running replicas only)."""
    return "; ".join(f"{name} on " + ", ".join(sorted(names.get(str(r["node_id"]), "?") for r in reps
                                                      if r["state"] == "RUNNING"))
                     for name, reps in sorted(found.items()))


def healthy(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url}/healthz did not answer 200 within {timeout:.0f} s")


def table(sent: int, cost: dict[str, Any], back_s: float | None, back_on: str, after: dict[str, Any]) -> str:
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    failures = ", ".join(f"{code}: {n}" for code, n in cost["failures"].items()) or "-"
    return "\n".join([
        "| requests sent | answered after the kill | failed (status or error) | last failure sent (s after kill) | "
        "its answer (s after kill) | replicas back (s after kill) | replicas then on | load afterwards |",
        "|" + " --- |" * 8,
        f"| {sent} | {cost['answered']} | {cost['failed']} ({failures}) | {num(cost['last_failure_sent_s'])} | "
        f"{num(cost['last_failure_answered_s'])} | {num(back_s)} | {back_on} | {after['sent']} sent, "
        f"lost {after['lost']}, unexpected {after['unexpected']} |"])


def run(stack: dict[str, str], dataset: Path, token_file: Path, token: str, args: argparse.Namespace) -> int:
    data_uri = upload(stack, dataset, "data/synth")
    checkpoint = train_checkpoint(stack, data_uri, args)
    index_uri, index_line = build_index(stack, checkpoint, data_uri)
    names = {str(n["node_id"]): str(n["name"]) for n in stack_nodes(stack)}
    print(f"checkpoint {checkpoint}; index {index_uri}: {index_line}", flush=True)
    for node_id, name in sorted(names.items(), key=lambda item: item[1]):
        index_line = index_line.replace(node_id[:12], name)
    print(f"  ({index_line})", flush=True)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve_job = submit_entrypoint(stack, ["reid", "serve", "--index", index_uri, "--replicas", "2", "--port",
                                          str(port), "--rate", "0", "--token-file", str(token_file)])
    placed = wait_replicas(stack, serve_job, 2, args.start_timeout)
    healthy(url)
    gate = replicas(stack).get("Gatekeeper", [])
    print(f"serving at {url}: {where(placed, names)}; Gatekeeper on "
          f"{', '.join(names.get(str(r['node_id']), '?') for r in gate)}", flush=True)
    victim = sorted(names.get(str(r["node_id"]), "?") for r in placed["SearchService"])[-1]
    if not victim.startswith("node_"):
        raise RuntimeError(f"the second search replica is on {victim}, not on a worker node")

    answers: list[Answer] = []
    result: dict[str, Any] = {}
    load = threading.Thread(target=lambda: result.update(bounded_load(url, token, args.per_kind, args.concurrency,
                                                                      timeout=args.request_timeout,
                                                                      answers=answers)))
    started = time.monotonic()
    load.start()
    total = KINDS * args.per_kind
    while len(answers) < args.kill_after * total and load.is_alive():
        time.sleep(0.05)
    killed_at = time.monotonic()
    print(f"{len(answers)} of {total} requests answered in {killed_at - started:.1f} s: "
          f"{local_node(stack, 'kill', victim.removeprefix('node_'))}", flush=True)
    time.sleep(max(0.0, args.replace_after - (time.monotonic() - killed_at)))
    print(f"{time.monotonic() - killed_at:.1f} s after the kill: {local_node(stack, 'add', '3')}", flush=True)
    load.join()
    if not result:
        raise RuntimeError("the load did not finish")
    print(f"load done {time.monotonic() - killed_at:.1f} s after the kill\n{format_figures(result)}", flush=True)
    cost = recovery(answers, killed_at)
    back_s, back_on = None, "not back"
    try:
        back = wait_replicas(stack, serve_job, 2, args.recover_timeout)
        back_s = time.monotonic() - killed_at
        names = {str(n["node_id"]): str(n["name"]) for n in stack_nodes(stack)}
        back_on = where(back, names)
    except TimeoutError as exc:
        print(f"replicas: {exc}; now {where(replicas(stack), names)}", flush=True)
    after = bounded_load(url, token, per_kind=3, concurrency=2, timeout=args.request_timeout)
    print(f"a load after the recovery:\n{format_figures(after)}")
    failed = sorted((round(a.sent_at - killed_at, 2), a.kind, a.got) for a in answers if a.failed)
    print(f"failed requests (sent s after the kill, kind, got): {failed}")
    print("\n" + table(len(answers), cost, back_s, back_on, after))
    return 0 if after["lost"] == 0 and after["unexpected"] == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=30, help="requests of each of the 11 kinds of the load")
    parser.add_argument("--concurrency", type=int, default=4, help="threads sending at once")
    parser.add_argument("--kill-after", type=float, default=0.25, help="share of the load answered before the kill")
    parser.add_argument("--replace-after", type=float, default=10.0, help="seconds from the kill to the new node")
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds a request may take")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds for the service to start")
    parser.add_argument("--recover-timeout", type=float, default=180.0,
                        help="seconds after the load for the replicas to be back")
    parser.add_argument("--steps", type=int, default=20, help="training steps of the model served")
    add_dataset_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with scratch_dirs("reid-serve") as (state, data):
        dataset = write_dataset(data, args.identities, args.images, args.seed)
        token = secrets.token_urlsafe(32)
        token_file = data / "serve_token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        with local_stack(state, workers=2, head_cpus=0) as stack:
            return run(stack, dataset, token_file, token, args)


if __name__ == "__main__":
    sys.exit(main())
