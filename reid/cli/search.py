"""``reid search``: rank a gallery for a text query, print the hits and write a contact sheet."""

from __future__ import annotations

import argparse

from reid.config import load_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reid search``."""
    parser = subparsers.add_parser(
        "search", help="search a gallery with a text query",
        description="Rank the images of a gallery split for a text query with a checkpoint. The gallery's "
                    "embeddings are cached (eval.embedding_cache or --cache), so later searches only embed "
                    "the text. Hits are marked right/wrong when --query-pid is given or the text equals a "
                    "caption of the gallery.",
    )
    parser.add_argument("text", help="the query, e.g. 'a woman in a red coat'")
    parser.add_argument("--checkpoint", required=True, help="inference checkpoint URI")
    parser.add_argument("--gallery", "--data", dest="gallery", required=True,
                        help="prepared dataset URI holding the gallery")
    parser.add_argument("--split", default="test", help="gallery split (default: test)")
    parser.add_argument("--top", type=int, default=None, help="number of hits (default: eval.search_top)")
    parser.add_argument("--query-pid", type=int, default=None, help="person id the query describes, if known")
    parser.add_argument("--sheet", default="search.png", help="contact-sheet PNG path or URI ('' for none)")
    parser.add_argument("--thumb", default="128x64", help="thumbnail size HxW (default: 128x64)")
    parser.add_argument("--cache", default=None, help="embedding cache URI (default: eval.embedding_cache; "
                                                      "'' disables)")
    parser.add_argument("--json", default=None, help="also write the hits as JSON to this URI")
    parser.add_argument("--device", default="auto", help="torch device for the encoder (default: auto)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--no-descriptions", action="store_true",
                        help="embed the gallery from its images alone (as a gallery nobody described is)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the checkpoint, search, print the hits and write the sheet (and JSON)."""
    from reid.cli.main import UserFacingError
    from reid.evaluation import loading
    from reid.evaluation.embedding_cache import EmbeddingCache, storage_fingerprint
    from reid.evaluation.search import search_gallery
    from reid.storage import resolve, write_json

    if not args.text.strip():
        raise UserFacingError("the search text is empty; give a description, e.g. \"a woman in a red coat\"")
    settings = load_config(args.config, args.set)
    cache_uri = settings.eval.embedding_cache if args.cache is None else args.cache
    try:
        thumb = _parse_size(args.thumb)
        encoder, ckpt_config = loading.load_encoder(args.checkpoint, args.device, settings.data.eval_batch_size,
                                                    settings.storage)
        result = search_gallery(
            encoder, args.text, args.gallery, args.split, ckpt_config.data.image_size,
            checkpoint_id=f"{args.checkpoint}@{storage_fingerprint(args.checkpoint, settings.storage)}",
            top=args.top or settings.eval.search_top,
            cache=EmbeddingCache(cache_uri, settings.storage) if cache_uri else None,
            query_pid=args.query_pid, sheet_uri=args.sheet or None, thumb_size=thumb,
            batch_size=settings.data.eval_batch_size,
            use_descriptions=settings.data.use_descriptions and not args.no_descriptions,
            storage=settings.storage, progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise UserFacingError(str(exc)) from exc
    mode = "images alone" if args.no_descriptions or not settings.data.use_descriptions else "with descriptions"
    print(f"query: {result.query!r}  (gallery {mode}; embeddings {'from cache' if result.from_cache else 'computed'})")
    print(f"{'rank':>4}  {'score':>7}  {'person':>6}  {'':5}  image_id")
    for hit in result.hits:
        mark = "" if hit.correct is None else ("right" if hit.correct else "wrong")
        print(f"{hit.rank:>4}  {hit.score:>7.4f}  {hit.person_id:>6}  {mark:5}  {hit.image_id}")
    if result.sheet_uri:
        print(f"contact sheet: {result.sheet_uri}")
    if args.json:
        payload = {"query": result.query, "truth_pid": result.truth_pid,
                   "hits": [hit.__dict__ for hit in result.hits]}
        write_json(resolve(args.json, settings.storage), payload)
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise ValueError(f"--thumb must look like 128x64, got {text!r}") from exc
    if height < 1 or width < 1:
        raise ValueError(f"--thumb sizes must be positive, got {text!r}")
    return height, width
