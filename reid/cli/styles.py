"""``reid styles``: cluster the human captions by writing style (paper 3.3) and store a style per caption."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reid styles``."""
    p = subparsers.add_parser(
        "styles", help="style embeddings of the captions + DBSCAN (or a Table 4 alternative); writes <data>/styles",
        description="Encoder, algorithm and its parameters come from the styles.* config section.",
    )
    p.add_argument("--data", default=None, help="prepared dataset URI (default: data.uri of the config)")
    p.add_argument("--local", action="store_true", help="run in this process instead of Ray Data")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray started by this command")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Cluster, write ``styles/captions.parquet`` and ``styles/summary.json``, print the summary."""
    from reid.cli.errors import UserFacingError
    from reid.config import load_config

    config = load_config(args.config, args.set)
    uri = args.data or config.data.uri
    try:
        if args.local:
            from reid.describe.styles import run_styles_local

            summary = run_styles_local(uri, config.styles, config.storage)
        else:
            from reid.distributed.styles_job import compute_styles_dataset

            summary = compute_styles_dataset(uri, config.styles, config.storage, num_cpus=args.num_cpus)
    except (FileNotFoundError, ValueError) as exc:
        raise UserFacingError(str(exc)) from exc
    print(json.dumps(summary, indent=2))
    return 0
