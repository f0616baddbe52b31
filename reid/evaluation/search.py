"""Text search over a gallery: cached gallery embeddings, ranked hits, ground truth and a contact sheet.

The encoder is any :class:`~reid.evaluation.encoder.RetrievalEncoder`; loading a checkpoint is the
command line's job. Ties in score keep gallery order (lower index first), as in the metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from reid.data.transforms import decode_image, resize
from reid.evaluation.contact_sheet import render_contact_sheet, save_png
from reid.evaluation.descriptions import load_gallery_descriptions
from reid.evaluation.embedding_cache import EmbeddingCache, GalleryEmbeddings, cache_key, storage_fingerprint
from reid.evaluation.encoder import RetrievalEncoder
from reid.evaluation.evaluator import embed_gallery
from reid.evaluation.split_reader import IDENTITIES_DIR, SplitIndex, iter_gallery_batches, read_images, read_split_index
from reid.storage import resolve
from reid.storage.config import StorageConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchHit:
    """One ranked gallery image; ``correct`` is None when the query's person is unknown."""

    rank: int  # 1-based
    image_id: str
    person_id: int
    score: float
    correct: bool | None


@dataclass(frozen=True)
class SearchResult:
    """The ranked hits of a query, the person it is known to describe (if any) and where the sheet went."""

    query: str
    hits: list[SearchHit]
    truth_pid: int | None
    from_cache: bool
    sheet_uri: str | None = None


def normalize_caption(text: str) -> str:
    """Lower case with runs of white space collapsed (how a query is matched against gallery captions)."""
    return " ".join(text.lower().split())


def ground_truth_pid(text: str, index: SplitIndex, query_pid: int | None = None) -> int | None:
    """``query_pid`` when given, else the person whose gallery caption equals ``text`` (None if none or
    ambiguous)."""
    if query_pid is not None:
        if query_pid not in set(index.person_ids.tolist()):
            logger.warning("person %d has no image in this gallery: every hit will be marked wrong", query_pid)
        return int(query_pid)
    wanted = normalize_caption(text)
    owners = {int(pid) for caption, pid in zip(index.captions, index.caption_pids, strict=True)
              if normalize_caption(caption) == wanted}
    if len(owners) > 1:
        logger.warning("the query equals captions of %d different persons; ground truth unknown", len(owners))
    return owners.pop() if len(owners) == 1 else None


def top_hits(query: torch.Tensor, gallery: torch.Tensor, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``top`` best gallery rows for one query embedding ``[E]`` (``gallery`` [Ng, E])."""
    scores = (gallery.float() @ query.float().reshape(-1)).cpu()
    order = torch.sort(-scores, stable=True).indices[:top]
    return order.numpy(), scores[order].numpy()


def load_or_embed_gallery(
    encoder: RetrievalEncoder,
    gallery_uri: str,
    split: str,
    image_size: tuple[int, int],
    checkpoint_id: str,
    cache: EmbeddingCache | None = None,
    index: SplitIndex | None = None,
    batch_size: int = 64,
    use_descriptions: bool = True,
    storage: StorageConfig | None = None,
    progress: bool = True,
) -> tuple[GalleryEmbeddings, bool]:
    """The gallery's embeddings from ``cache`` when present and in step with the split, else computed
    (``encode_gallery`` in batches) and stored. Returns ``(embeddings, from_cache)``.

    The key covers ``checkpoint_id`` (pass the checkpoint URI plus a fingerprint), the gallery URI with
    fingerprints of its identity shards and descriptions, the split, image size and description use.
    """
    index = index or read_split_index(gallery_uri, split, storage)
    root = resolve(gallery_uri, storage)
    gallery_id = "|".join([gallery_uri, storage_fingerprint(root.join(IDENTITIES_DIR, split).uri, storage),
                           storage_fingerprint(root.join("descriptions").uri, storage)])
    extra = {"image_size": list(image_size), "use_descriptions": use_descriptions}
    key = cache_key(checkpoint_id, gallery_id, split, extra)
    if cache is not None:
        cached = cache.load(key)
        if cached is not None and cached.image_ids == index.image_ids:
            return cached, True
        if cached is not None:
            logger.warning("cached gallery embeddings under %s do not match the split; recomputing", key)
    descriptions = load_gallery_descriptions(gallery_uri, index.image_ids, storage) if use_descriptions else None
    batches = iter_gallery_batches(gallery_uri, split, image_size, batch_size, storage)
    embeddings = embed_gallery(encoder, batches, index.image_ids, descriptions, progress).cpu()
    gallery = GalleryEmbeddings(list(index.image_ids), index.person_ids.copy(), embeddings)
    if cache is not None:
        cache.save(key, gallery, {"checkpoint": checkpoint_id, "gallery": gallery_id, "split": split, **extra})
    return gallery, False


def rank_gallery(encoder: RetrievalEncoder, text: str, gallery: GalleryEmbeddings, top: int,
                 truth_pid: int | None) -> list[SearchHit]:
    """Embed ``text`` and return the ``top`` hits, marked against ``truth_pid`` when known."""
    if not text.strip():
        raise ValueError("the search text is empty")
    with torch.no_grad():
        query = encoder.encode_text([text])
    indices, scores = top_hits(query[0], gallery.embeddings, top)
    hits = []
    for place, (i, score) in enumerate(zip(indices, scores, strict=True), start=1):
        pid = int(gallery.person_ids[i])
        correct = None if truth_pid is None else pid == truth_pid
        hits.append(SearchHit(place, gallery.image_ids[i], pid, float(score), correct))
    return hits


def hits_sheet(result: SearchResult, gallery_uri: str, split: str, thumb_size: tuple[int, int] = (128, 64),
               storage: StorageConfig | None = None) -> Image.Image:
    """The contact sheet of ``result`` (thumbnails read from the gallery)."""
    blobs = read_images(gallery_uri, split, [h.image_id for h in result.hits], storage)
    thumbs = [resize(decode_image(blobs[h.image_id]), thumb_size) for h in result.hits]
    labels = [f"#{h.rank}  {h.score:.3f}\nperson {h.person_id}" for h in result.hits]
    return render_contact_sheet(result.query, thumbs, labels, [h.correct for h in result.hits], thumb_size)


def search_gallery(
    encoder: RetrievalEncoder,
    text: str,
    gallery_uri: str,
    split: str,
    image_size: tuple[int, int],
    checkpoint_id: str,
    top: int = 10,
    cache: EmbeddingCache | None = None,
    query_pid: int | None = None,
    sheet_uri: str | None = None,
    thumb_size: tuple[int, int] = (128, 64),
    batch_size: int = 64,
    use_descriptions: bool = True,
    storage: StorageConfig | None = None,
    progress: bool = True,
) -> SearchResult:
    """Search ``text`` in the ``split`` gallery at ``gallery_uri``; write the contact sheet to ``sheet_uri``."""
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    index = read_split_index(gallery_uri, split, storage)
    gallery, from_cache = load_or_embed_gallery(encoder, gallery_uri, split, image_size, checkpoint_id, cache,
                                                index, batch_size, use_descriptions, storage, progress)
    truth = ground_truth_pid(text, index, query_pid)
    result = SearchResult(text, rank_gallery(encoder, text, gallery, top, truth), truth, from_cache)
    if sheet_uri is not None:
        save_png(hits_sheet(result, gallery_uri, split, thumb_size, storage), sheet_uri, storage)
        result = SearchResult(result.query, result.hits, truth, from_cache, sheet_uri)
    return result
