"""``reid inspect``: print a prepared dataset's manifest and validation summary."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reid inspect``."""
    p = subparsers.add_parser("inspect", help="show a prepared dataset's manifest and validation summary")
    p.add_argument("--data", required=True, help="prepared dataset URI")
    p.add_argument("--issues", type=int, default=10, help="how many rejected records to list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the manifest and the first ``--issues`` rejected records."""
    from reid.cli.main import UserFacingError
    from reid.config import load_config
    from reid.storage import exists, read_json, resolve

    config = load_config(args.config, args.set)
    root = resolve(args.data, config.storage)
    if not exists(root.join("manifest.json")):
        raise UserFacingError(f"no prepared dataset at {root.uri} (manifest.json missing)")
    manifest = read_json(root.join("manifest.json"))
    report = read_json(root.join("validation_report.json"))
    print(json.dumps(manifest, indent=2))
    print(f"rejected: {report['rejected']} of {report['records']} records {report['by_reason']}")
    for issue in report["issues"][: args.issues]:
        print(f"  {issue['where']}: {issue['reason']}")
    return 0
