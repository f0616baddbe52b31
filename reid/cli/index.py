"""``reid index``: embed a gallery with a checkpoint into a gallery index (Ray Data), for ``reid serve``."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reid index``."""
    p = subparsers.add_parser(
        "index", help="embed a gallery split into a searchable index (Ray Data batch inference)",
        description="Gallery embeddings (with the image-grounded identity descriptions the fusion reads), ids and "
                    "thumbnails as Parquet shards plus a manifest naming the checkpoint and the gallery by their "
                    "fingerprints. Resumes by shard; GPUs when the cluster has them.",
    )
    p.add_argument("--checkpoint", required=True, help="inference checkpoint URI")
    p.add_argument("--gallery", "--data", dest="gallery", required=True, help="prepared dataset URI")
    p.add_argument("--split", default="test", help="gallery split")
    p.add_argument("--out", required=True, help="where the index goes (local path or s3://)")
    p.add_argument("--actors", type=int, default=1,
                   help="model replicas in the actor pool (0: one on each node of the cluster)")
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs each replica reserves")
    p.add_argument("--no-descriptions", action="store_true", help="index the images alone")
    p.add_argument("--thumb", default="128x64", help="thumbnail size HxW")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reid.cli.main import UserFacingError
    from reid.cli.search import _parse_size
    from reid.config import load_config
    from reid.distributed.index_job import build_index, placement_summary

    if args.actors < 0:
        raise UserFacingError(f"--actors must be >= 0 (0: one on each node), got {args.actors}")
    config = load_config(args.config, args.set)
    placement: dict[str, int] = {}
    try:
        manifest = build_index(args.checkpoint, args.gallery, args.split, args.out, config.storage,
                               use_descriptions=config.data.use_descriptions and not args.no_descriptions,
                               actors=args.actors, gpus_per_actor=args.gpus_per_actor,
                               batch_size=config.data.eval_batch_size, thumb_size=_parse_size(args.thumb),
                               placement=placement)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise UserFacingError(str(exc)) from exc
    print(f"reid index: {manifest['count']} images of {manifest['gallery']} ({manifest['split']}) embedded with "
          f"{manifest['checkpoint']} into {args.out} ({len(manifest['shards'])} shards)\n"
          f"  {manifest.get('described', 0)} with their identity description, "
          f"{manifest.get('image_only', manifest['count'])} from the image alone")
    if placement:
        print(f"  {placement_summary(placement)}")
    return 0
