"""``reid serve``: the search service (Ray Serve) over a gallery index, with an HTTP API and a web page."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reid serve``."""
    p = subparsers.add_parser(
        "serve", help="serve a gallery index: POST /search, GET /image/ID, GET /healthz and a search page at /",
        description="A Ray Serve application: a query-encoder deployment and a search deployment over the index "
                    "written by `reid index`. The index's checkpoint is used unless --checkpoint names one, which "
                    "must be the checkpoint the index was built with.",
    )
    p.add_argument("--index", required=True, help="gallery index URI (from `reid index`)")
    p.add_argument("--checkpoint", default=None, help="inference checkpoint (default: the index's own)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port")
    p.add_argument("--replicas", type=int, default=1, help="replicas of each deployment")
    p.add_argument("--approx", choices=("none", "hnsw", "ivf"), default="none",
                   help="exact top-k (none) or a FAISS index (for galleries of a million images and more)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reid.cli.main import UserFacingError
    from reid.config import load_config
    from reid.distributed.serve_app import serve_index
    from reid.evaluation.gallery_index import IndexMismatchError

    config = load_config(args.config, args.set)
    if args.replicas < 1:
        raise UserFacingError(f"--replicas must be >= 1, got {args.replicas}")
    print(f"reid serve: http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    try:
        serve_index(args.index, args.checkpoint, args.host, args.port, args.replicas,
                    None if args.approx == "none" else args.approx, config.storage)
    except (FileNotFoundError, IndexMismatchError, ValueError) as exc:
        raise UserFacingError(str(exc)) from exc
    except KeyboardInterrupt:
        return 0
    return 0
