"""``reid ui``: open the MLflow UI on the runs of ``tracking.*`` with the comparison view of the last runs."""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reid ui``."""
    p = subparsers.add_parser(
        "ui", help="the MLflow UI of this project's runs, with the comparison view of the last ones",
        description="Prints the experiment's page and the comparison page of its last runs, then serves the MLflow "
                    "UI on 127.0.0.1 (a file or SQLite store; for a tracking server it only prints its pages).",
    )
    p.add_argument("--last", type=int, default=5, help="how many of the newest runs the comparison view shows")
    p.add_argument("--port", type=int, default=5000, help="port of the UI")
    p.add_argument("--no-serve", action="store_true", help="print the pages and exit")
    p.set_defaults(func=run)


TRAINING_VIEW = "workflowType=machine_learning"  # the UI's "Model training" view (its default is GenAI traces)


def experiment_url(base: str, experiment_id: str) -> str:
    """The experiment's run list in the UI's model-training view."""
    return f"{base}/#/experiments/{experiment_id}?{TRAINING_VIEW}"


def compare_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    """The MLflow UI's page comparing ``run_ids`` (charts, parameters and metrics side by side)."""
    runs, experiments = (json.dumps(v, separators=(",", ":")) for v in (run_ids, [experiment_id]))
    return f"{base}/#/compare-runs?runs={runs}&experiments={experiments}&{TRAINING_VIEW}"


def run(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from reid.cli.main import UserFacingError
    from reid.config import load_config
    from reid.distributed.tracking import tracking_uri

    config = load_config(args.config, args.set)
    uri = tracking_uri(config.tracking)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    if experiment is None:
        raise UserFacingError(f"no experiment '{config.tracking.experiment}' in {uri} (tracking.experiment)")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"],
                              max_results=max(1, args.last))
    remote = uri.startswith(("http://", "https://"))
    base = uri.rstrip("/") if remote else f"http://127.0.0.1:{args.port}"
    print(f"experiment '{experiment.name}': {experiment_url(base, experiment.experiment_id)}")
    ids = [r.info.run_id for r in runs]
    print(f"the last {len(runs)} runs compared: {compare_url(base, experiment.experiment_id, ids)}")
    sys.stdout.flush()
    if remote or args.no_serve:
        return 0
    command = ["mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(args.port)]
    os.execvp(command[0], command)  # the UI serves until interrupted
    return 0
