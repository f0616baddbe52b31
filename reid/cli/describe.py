"""``reid describe``: identity and clothing descriptions for every image of a prepared dataset (resumable)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reid describe``."""
    p = subparsers.add_parser(
        "describe", help="describe every image (rules, oracle or an OpenAI-compatible MLLM); re-runs resume",
        description="Backend, endpoint, concurrency and validation come from the describe.* config section; "
                    "the MLLM key is read from the environment variable named by describe.api_key_env.",
    )
    p.add_argument("--data", default=None, help="prepared dataset URI (default: data.uri of the config)")
    p.add_argument("--limit", type=int, default=None, help="describe at most this many unfinished images")
    p.add_argument("--local", action="store_true", help="run in this process with threads instead of Ray Data")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray started by this command")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Describe, write the run report under ``<data>/reports`` and print the run summary."""
    from reid.cli.errors import UserFacingError
    from reid.config import load_config
    from reid.describe.mllm import EndpointFatalError

    config = load_config(args.config, args.set)
    uri = args.data or config.data.uri
    if args.limit is not None and args.limit < 0:
        raise UserFacingError(f"--limit must be >= 0, got {args.limit}")
    try:
        if args.local:
            from reid.describe.runner import describe_dataset_local

            summary = describe_dataset_local(uri, config.describe, config.storage, limit=args.limit)
        else:
            from reid.distributed.describe_job import describe_dataset

            summary = describe_dataset(uri, config.describe, config.storage, limit=args.limit,
                                       num_cpus=args.num_cpus)
    except (FileNotFoundError, ValueError, EndpointFatalError) as exc:
        raise UserFacingError(str(exc)) from exc
    print(json.dumps(summary, indent=2))
    return 1 if summary["failed"] else 0
