"""``reid serve``: the search service (Ray Serve) over a gallery index, with an HTTP API and a web page."""

from __future__ import annotations

import argparse
import os

from reid.serving.audit import DEFAULT_MAX_BYTES, default_audit_path
from reid.serving.auth import MIN_TOKEN_CHARS, TOKEN_ENV
from reid.serving.policy import AccessPolicy


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reid serve``."""
    p = subparsers.add_parser(
        "serve", help="serve a gallery index: POST /search, GET /image/ID, GET /healthz and a search page at /",
        description="A Ray Serve application: a query-encoder deployment and a search deployment over the index "
                    "written by `reid index`. The index's checkpoint is used unless --checkpoint names one, which "
                    "must be the checkpoint the index was built with. With a token (the environment variable "
                    f"{TOKEN_ENV} or --token-file) every route but /healthz needs 'Authorization: Bearer <token>'; "
                    "an address other than loopback is refused without one. Every search and image fetch is "
                    "appended to an audit log.",
    )
    p.add_argument("--index", required=True, help="gallery index URI (from `reid index`)")
    p.add_argument("--checkpoint", default=None, help="inference checkpoint (default: the index's own)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (127.0.0.1: this machine only; any other needs a token)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port")
    p.add_argument("--replicas", type=int, default=1,
                   help="replicas of each deployment (one per node when the cluster has that many nodes)")
    p.add_argument("--approx", choices=("none", "hnsw", "ivf"), default="none",
                   help="exact top-k (none) or a FAISS index (for galleries of a million images and more)")
    p.add_argument("--token-file", default=None,
                   help=f"file holding the bearer token ({MIN_TOKEN_CHARS}+ characters; default: the environment "
                        f"variable {TOKEN_ENV}, else no token, which only loopback allows)")
    p.add_argument("--audit-log", default=None,
                   help="audit file, one JSON line per search and image fetch (default: audit/search-audit.jsonl "
                        "under a local index, runs/audit/<index>.jsonl for an s3:// one)")
    p.add_argument("--audit-max-mb", type=float, default=DEFAULT_MAX_BYTES / 2**20,
                   help="size at which the audit file is rotated (10 rotated files are kept)")
    p.add_argument("--rate", type=float, default=10.0,
                   help="requests per second allowed to one client address, over its burst (0: no limit)")
    p.add_argument("--burst", type=int, default=60,
                   help="requests one client address may send at once (a page search is 1 + 20 thumbnails)")
    p.set_defaults(func=run)


def access_policy(args: argparse.Namespace) -> tuple[AccessPolicy, str]:
    """The policy of ``args`` (the token read, checked against --host, then dropped from the environment so the
    processes Ray starts do not inherit it) and one line saying who may search."""
    from reid.cli.main import UserFacingError
    from reid.serving.auth import TokenError, check_exposure, read_token

    try:
        token = read_token(args.token_file)
        check_exposure(args.host, token is not None)
        if args.rate < 0 or args.burst < 1 or args.audit_max_mb <= 0:
            raise TokenError("--rate must be >= 0, --burst >= 1 and --audit-max-mb > 0")
        policy = AccessPolicy.with_token(token, rate=args.rate or None, burst=args.burst, audit_log=args.audit_log,
                                         audit_max_bytes=max(1024, int(args.audit_max_mb * 2**20)))
    except TokenError as exc:
        raise UserFacingError(str(exc)) from None
    os.environ.pop(TOKEN_ENV, None)
    if token is None:
        who = (f"no token: anyone on this machine may search ({args.host} is loopback; set {TOKEN_ENV} or "
               "--token-file to require one)")
    else:
        who = f"searches need the bearer token from {'--token-file' if args.token_file else TOKEN_ENV}"
    return policy, who


def run(args: argparse.Namespace) -> int:
    from reid.cli.main import UserFacingError
    from reid.config import load_config
    from reid.distributed.serve_app import serve_index
    from reid.evaluation.gallery_index import IndexMismatchError

    if args.replicas < 1:
        raise UserFacingError(f"--replicas must be >= 1, got {args.replicas}")
    policy, who = access_policy(args)  # first: a refused address starts nothing
    config = load_config(args.config, args.set)
    rate = f"{args.rate:g}/s per client, burst {args.burst}" if args.rate else "no rate limit"
    audit = policy.audit_log or default_audit_path(args.index)
    print(f"reid serve: http://{args.host}:{args.port}/ (Ctrl-C stops); {who}; {rate}; audit log {audit}",
          flush=True)
    try:
        serve_index(args.index, args.checkpoint, args.host, args.port, args.replicas,
                    None if args.approx == "none" else args.approx, config.storage, policy=policy)
    except (FileNotFoundError, IndexMismatchError, ValueError) as exc:
        raise UserFacingError(str(exc)) from exc
    except KeyboardInterrupt:
        return 0
    return 0
