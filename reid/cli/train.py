"""``reid train``: Ray Train + DeepSpeed training with per-epoch checkpoints, MLflow tracking and seeds."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reid train``."""
    p = subparsers.add_parser(
        "train", help="train on Ray Train (DeepSpeed), select on validation, score the best on test",
        description="Workers, DeepSpeed, checkpoints and schedule come from train.*/optim.*; tracking from "
                    "tracking.* (default: MLFLOW_TRACKING_URI or a local SQLite store).",
    )
    p.add_argument("--resume", action="store_true", help="continue the run at <train.storage_uri>/<train.name>")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (paper protocol: 0,1,2): one child run "
                                                 "per seed, mean ± std on the parent run")
    p.add_argument("--data-source", choices=("ray", "memory"), default=None,
                   help="Ray Data pipeline or the training split held in each worker's memory (default: "
                        "train.data_source, 'ray' unless the config says otherwise)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line instead of a summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train (once or per seed), a progress bar and one line per epoch on the way; print a summary (or JSON)."""
    from reid.cli.main import UserFacingError
    from reid.config import load_config
    from reid.distributed.tracking import TrackingStoreError
    from reid.distributed.train_job import RunExistsError, publish_log, train, train_seeds
    from reid.evaluation.selection import parse_seeds

    config = load_config(args.config, args.set)
    try:
        if args.seeds:
            out = train_seeds(config, parse_seeds(args.seeds), args.resume, args.data_source,
                              console=not args.json)
            print(out["summary"].table())
            if args.json:
                print(json.dumps({"parent_run_id": out["parent_run_id"], **out["summary"].to_dict()}))
            return 0
        outcome = train(config, args.resume, data=args.data_source, console=not args.json)
    except (RunExistsError, TrackingStoreError, FileNotFoundError, ValueError) as exc:
        raise UserFacingError(str(exc)) from exc
    from reid.cli.console import log_file, log_text

    log_uri = publish_log(config, outcome, log_file().name, log_text()) if log_file() is not None else None
    if args.json:
        print(json.dumps({"run_uri": outcome.run_uri, "best_checkpoint": outcome.best_uri,
                          "best_epoch": outcome.best_epoch, "val": outcome.val_metrics,
                          "test": outcome.test_metrics, "mlflow_run_id": outcome.mlflow_run_id,
                          "workers": [{"rank": r, "node_id": n, "node_ip": a}
                                      for r, (n, a) in enumerate(outcome.placement)]}))
        return 0
    print("\n".join(summary_lines(outcome, log_uri)))
    return 0


def summary_lines(outcome, log_uri: str | None = None) -> list[str]:
    """The end of ``reid train``: best epoch on validation, test metrics, where the workers ran, where the run
    and its logs are (``log_uri``: where the log was copied, for a run in object storage)."""
    from reid.cli.console import log_file
    from reid.distributed.nodes import placement_line
    from reid.evaluation.table import gallery_mode_lines
    from reid.evaluation.table import metrics_line as metrics

    best = "none" if outcome.best_epoch is None else outcome.best_epoch + 1  # 1-based, as the epoch lines
    lines = [f"reid train: {'finished' if outcome.finished else 'stopped early'}; best epoch {best} on validation "
             f"({metrics(outcome.val_metrics)})"]
    if outcome.test_metrics:
        lines += gallery_mode_lines(outcome.test_metrics, "  test (best checkpoint)")
    lines += [f"  best checkpoint: {outcome.best_uri}", f"  run: {outcome.run_uri}"]
    if outcome.placement:
        lines.append(f"  placement: {placement_line(outcome.placement)}")
    if outcome.mlflow_run_id:
        lines.append(f"  MLflow run: {outcome.mlflow_run_id}")
    if log_uri is not None:
        lines.append(f"  full log: {log_uri}")
    elif log_file() is not None:
        lines.append(f"  full log: {log_file()}")
    return lines
