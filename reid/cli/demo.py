"""``reid demo``: the main job on embedded defaults (a local Ray, local storage)."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reid demo``."""
    p = subparsers.add_parser("demo", help="run the whole pipeline on a small synthetic dataset with embedded defaults")
    p.add_argument("--workdir", default="runs/demo", help="where the demo writes (local path or s3:// URI)")
    p.add_argument("--identities", type=int, default=60)
    p.add_argument("--images-per-identity", type=int, default=6)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print a summary; exit 1 if the batches were not P x K."""
    from reid.config import load_config
    from reid.distributed.demo_job import run_demo

    overrides = [f"data.uri={args.workdir.rstrip('/')}/dataset", *args.set]
    config = load_config(args.config or "pkg://demo", overrides)
    s = run_demo(config, args.workdir, args.identities, args.images_per_identity)
    print(f"\nreid demo: dataset {s.dataset_uri}")
    for split, c in s.counts.items():
        print(f"  {split:5s} {c['identities']:4d} identities {c['images']:5d} images {c['captions']:5d} captions")
    print(f"  rejected records: {s.rejected}")
    p, k = config.data.batch.p, config.data.batch.k
    print(f"  one training epoch: {s.batches} batches of P x K = {p} x {k}, {s.images} images, "
          f"{s.images_per_s:.0f} images/s; identity-balanced: {'yes' if s.pk_ok else 'NO'}")
    for key, shape in s.batch_shapes.items():  # the log file's, not the console's
        logger.info("batch tensor %-14s %s", key, shape)
    if s.training is not None:
        print("\n".join(s.training.lines()))
    return 0 if s.pk_ok else 1
