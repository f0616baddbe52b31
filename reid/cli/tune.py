"""``reid tune``: a Ray Tune search over a ``tune_spaces/*.yaml`` space, each trial trained like ``reid train``."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reid tune``."""
    p = subparsers.add_parser(
        "tune", help="hyper-parameter search (Ray Tune, ASHA): one MLflow parent run, a child run per trial",
        description="Scheduler, metric, concurrency and storage come from tune.*; every trial trains with "
                    "train.*/optim.* plus its drawn values. The space is checked before any trial starts.",
    )
    p.add_argument("--space", required=True, help="search space YAML, e.g. tune_spaces/optimisation.yaml, or "
                                                   "pkg://NAME for a shipped one (pkg://optimisation)")
    p.add_argument("--num-samples", type=int, default=None,
                   help="draws from the space (a grid is repeated this many times); default tune.num_samples")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted search at <tune.storage_uri>/<tune.name>")
    p.add_argument("--data-source", choices=("ray", "memory"), default=None,
                   help="Ray Data pipeline or the training split held in each worker's memory (default: "
                        "train.data_source)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Search, then print the summary table (best first) and a JSON line with the best trial."""
    from reid.cli.main import UserFacingError
    from reid.config import load_config
    from reid.search_space import load_space

    if args.num_samples is not None and args.num_samples < 1:
        raise UserFacingError(f"--num-samples must be >= 1, got {args.num_samples}")
    config = load_config(args.config, args.set)
    space = load_space(args.space)
    from reid.distributed.tracking import TrackingStoreError
    from reid.distributed.tune_job import SearchExistsError, run_search
    from reid.distributed.tune_summary import ERROR

    try:
        outcome = run_search(config, space, args.num_samples, args.resume, args.data_source)
    except (SearchExistsError, TrackingStoreError, FileNotFoundError) as exc:
        raise UserFacingError(str(exc)) from exc
    print(outcome.table())
    failed = [row for row in outcome.rows if row.status == ERROR]
    best = outcome.rows[0] if outcome.rows else None
    print(json.dumps({"search_uri": outcome.search_uri, "metric": outcome.metric, "wall_s": round(outcome.wall_s, 1),
                      "parent_run_id": outcome.parent_run_id, "best_trial": best.trial_id if best else None,
                      "best_value": best.metric if best else None, "best_params": dict(best.params) if best else None,
                      "trials": len(outcome.rows), "retried_trials": outcome.retried_trials},
                     default=str))
    if outcome.rows and len(failed) == len(outcome.rows):
        print(f"reid tune: every trial failed; trial {failed[0].trial_id}: {failed[0].error}", file=sys.stderr)
        return 1
    return 0
