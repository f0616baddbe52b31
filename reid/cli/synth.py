"""``reid synth``: draw a synthetic pedestrian dataset in the CUHK-PEDES format (local path or s3:// URI)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reid synth``."""
    p = subparsers.add_parser("synth", help="draw synthetic pedestrians with captions (CUHK-PEDES format)")
    p.add_argument("--out", required=True, help="output directory or s3:// URI")
    p.add_argument("--identities", type=int, required=True, help="number of people")
    p.add_argument("--images-per-identity", type=int, required=True, help="images drawn of each person")
    p.add_argument("--seed", type=int, default=0, help="same seed, byte-identical output")
    p.add_argument("--clothes-changing", action="store_true",
                   help="every test person wears >= 2 outfits, so captions and gallery clothes differ")
    p.add_argument("--image-size", type=int, nargs=2, default=(128, 64), metavar=("H", "W"), help="image size")
    p.add_argument("--splits", type=float, nargs=3, default=(0.7, 0.1, 0.2), metavar=("TRAIN", "VAL", "TEST"),
                   help="fractions of identities per split")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the dataset and print one summary line per split."""
    from reid.cli.main import UserFacingError
    from reid.config import load_config
    from reid.data.synth import STYLE_NAMES, generate

    config = load_config(getattr(args, "config", None), getattr(args, "set", []))
    try:
        summary = generate(args.out, args.identities, args.images_per_identity, args.seed,
                           clothes_changing=args.clothes_changing, image_size=tuple(args.image_size),
                           splits=tuple(args.splits), storage=config.storage)
    except (ValueError, FileExistsError) as exc:
        raise UserFacingError(str(exc)) from exc
    print(f"synthetic dataset at {summary.uri}: {summary.total_images} images, {summary.outfits} outfits, "
          f"captions in {len(STYLE_NAMES)} styles")
    for split, count in summary.identities.items():
        print(f"  {split:5s} {count:6d} identities {summary.images[split]:7d} images "
              f"{summary.captions[split]:7d} captions")
    return 0
