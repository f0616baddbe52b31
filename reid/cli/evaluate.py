"""``reid evaluate``: score a checkpoint on a split of a prepared dataset (table on stdout, JSON to a URI)."""

from __future__ import annotations

import argparse
import json

from reid.config import load_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reid evaluate``."""
    parser = subparsers.add_parser(
        "evaluate", help="R@1/5/10, mAP and mINP of a checkpoint on a dataset split",
        description="Embed every caption (queries) and image (gallery) of a split with a checkpoint and score "
                    "text-to-image retrieval. Model settings come from the checkpoint; evaluation settings "
                    "(eval.*, data.eval_batch_size, storage.*) from --config/--set.",
    )
    parser.add_argument("--checkpoint", required=True, help="inference checkpoint URI (local path or s3://)")
    parser.add_argument("--data", "--gallery", dest="data", default=None,
                        help="prepared dataset URI (default: the dataset the checkpoint was trained on)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--output", default=None, help="write metrics and per-query ranks as JSON to this URI")
    parser.add_argument("--image-to-text", action="store_true", help="also score image-to-text retrieval")
    parser.add_argument("--no-descriptions", action="store_true", help="encode the gallery image-only")
    parser.add_argument("--protocol", choices=("standard", "cc"), default=None,
                        help="standard: rank the whole gallery; cc (clothes-changing): for each query, leave out "
                             "the gallery images of its person in the outfit its caption describes "
                             "(default: eval.protocol, standard)")
    parser.add_argument("--batch-size", type=int, default=None, help="encoder batch size")
    parser.add_argument("--device", default="auto", help="torch device for the encoder (default: auto)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the checkpoint, evaluate, print the table and write the JSON."""
    from reid.cli.main import UserFacingError
    from reid.evaluation import loading
    from reid.evaluation.evaluator import Evaluator
    from reid.evaluation.table import metrics_table
    from reid.storage import resolve, write_json

    settings = load_config(args.config, args.set)
    batch_size = args.batch_size or settings.data.eval_batch_size
    try:
        encoder, ckpt_config = loading.load_encoder(args.checkpoint, args.device, batch_size, settings.storage)
        data = args.data or ckpt_config.data.uri
        evaluator = Evaluator(
            data, ckpt_config.data.image_size, batch_size, settings.eval.chunk_size,
            args.image_to_text or settings.eval.image_to_text,
            settings.data.use_descriptions and not args.no_descriptions, settings.eval.rank_backend,
            settings.storage, progress=not args.no_progress, protocol=args.protocol or settings.eval.protocol,
        )
        result = evaluator.evaluate(encoder, args.split)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise UserFacingError(str(exc)) from exc
    rows = {"t2i": result.metrics}
    if result.image_to_text is not None:
        rows["i2t"] = result.image_to_text
    protocol = args.protocol or settings.eval.protocol
    print(f"{args.split}: {result.num_queries} queries, {result.num_gallery} gallery images, protocol {protocol}")
    print(metrics_table(rows))
    if args.output:
        payload = {"checkpoint": args.checkpoint, "data": data, "protocol": protocol,
                   **result.to_dict()}
        write_json(resolve(args.output, settings.storage), payload)
        print(f"wrote {args.output}")
    else:
        print(json.dumps({"t2i": result.metrics}))
    return 0
