"""``reid prepare``: a raw dataset in an official format -> the prepared, versioned dataset."""

from __future__ import annotations

import argparse
import json

from reid.data.formats import FORMATS, FormatError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reid prepare``."""
    p = subparsers.add_parser("prepare", help="validate a raw dataset and write identity-grouped Parquet shards")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--root", required=True, help="raw dataset directory or s3:// prefix")
    p.add_argument("--out", required=True, help="output URI (directory or s3:// prefix)")
    p.add_argument("--strict", action="store_true", help="exit non-zero if any record is bad")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already at --out")
    p.add_argument("--val-identities", type=int, default=0,
                   help="move this many train identities to a val split (ICFG-PEDES has no val split)")
    p.add_argument("--annotation", default=None, help="annotation file relative to --root (default: the official name)")
    p.add_argument("--image-dir", default=None, help="image directory relative to --root (default: imgs)")
    p.add_argument("--local", action="store_true", help="run in this process with threads instead of Ray Data")
    p.add_argument("--part-masks", default="auto", metavar="MODE",
                   help="part label maps for local alignment: files (under --root/masks/, as reid synth writes "
                        "them), none, heuristic (a colour-and-position stand-in for a parsing model) or "
                        "module:function (your segmenter); auto: files when masks/ exists (default: auto)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Prepare the dataset and print the manifest counts and the number of rejected records."""
    from reid.cli.main import UserFacingError
    from reid.config import load_config
    from reid.data.prepare import PrepareError
    from reid.distributed.prepare_job import prepare_dataset

    config = load_config(args.config, args.set)
    try:
        result = prepare_dataset(
            args.format, args.root, args.out, strict=args.strict, overwrite=args.overwrite,
            val_identities=args.val_identities, seed=config.seed, annotation=args.annotation,
            image_dir=args.image_dir, storage=config.storage, local=args.local,
            part_masks=args.part_masks,
        )
    except (PrepareError, FormatError) as exc:
        raise UserFacingError(str(exc)) from exc
    print(json.dumps({"uri": result.uri, "counts": result.manifest["counts"],
                      "rejected": result.report["rejected"], "by_reason": result.report["by_reason"],
                      "part_masks": result.manifest["part_masks"]}, indent=2))
    return 0
