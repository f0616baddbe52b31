"""Embed a split's captions and gallery with an encoder, in batches, and score text-to-image retrieval."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from reid.evaluation.descriptions import load_gallery_descriptions
from reid.evaluation.encoder import RetrievalEncoder
from reid.evaluation.ranking import Backend, metrics_from_ranks, query_ranks_from_embeddings
from reid.evaluation.split_reader import GalleryBatch, SplitIndex, iter_gallery_batches, read_split_index
from reid.storage.config import StorageConfig

if TYPE_CHECKING:
    from reid.config import Config

logger = logging.getLogger(__name__)

Protocol = Literal["standard", "cc"]
PROTOCOLS = ("standard", "cc")
"""``standard``: the whole gallery; ``cc`` (clothes-changing): each query's same-person same-outfit images
are left out, as clothes-changing re-id benchmarks do."""


@dataclass(frozen=True)
class SplitEmbeddings:
    """Query embeddings ``[Nq, E]`` (one per caption) and gallery embeddings ``[Ng, E]`` of a split."""

    index: SplitIndex
    query: torch.Tensor
    gallery: torch.Tensor


@dataclass(frozen=True)
class EvalResult:
    """Text-to-image metrics (percent), optional image-to-text metrics, and per-query rank positions.

    ``first_ranks[i]`` / ``last_ranks[i]``: 0-based positions of the best and worst ranked image of
    caption ``i``'s person.
    """

    split: str
    metrics: dict[str, float]
    image_to_text: dict[str, float] | None
    first_ranks: np.ndarray  # [Nq] int64
    last_ranks: np.ndarray  # [Nq] int64
    num_queries: int
    num_gallery: int

    def to_dict(self, per_query: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; ``per_query`` adds the rank lists."""
        out: dict[str, Any] = {
            "split": self.split, "num_queries": self.num_queries, "num_gallery": self.num_gallery,
            "t2i": self.metrics,
        }
        if self.image_to_text is not None:
            out["i2t"] = self.image_to_text
        if per_query:
            out["per_query"] = {"first_rank": self.first_ranks.tolist(), "last_rank": self.last_ranks.tolist()}
        return out


class Evaluator:
    """Evaluates an encoder on splits of one prepared dataset (no Ray: one process, batched)."""

    def __init__(
        self,
        dataset_uri: str,
        image_size: tuple[int, int],
        batch_size: int = 64,
        chunk_size: int = 1024,
        image_to_text: bool = False,
        use_descriptions: bool = True,
        rank_backend: Backend = "auto",
        storage: StorageConfig | None = None,
        progress: bool = True,
        workers: int = 1,
        protocol: Protocol = "standard",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset_uri = dataset_uri
        self.image_size = tuple(image_size)
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.image_to_text = image_to_text
        self.use_descriptions = use_descriptions
        self.rank_backend = rank_backend
        self.storage = storage
        self.progress = progress
        self.workers = workers
        if protocol not in PROTOCOLS:
            raise ValueError(f"evaluation protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.protocol = protocol

    def evaluate(self, encoder: RetrievalEncoder, split: str) -> EvalResult:
        """Embed ``split`` with ``encoder`` and score it."""
        return self.score(self.embed(encoder, split), split)

    def embed(self, encoder: RetrievalEncoder, split: str) -> SplitEmbeddings:
        """Every caption of ``split`` through ``encode_text`` and every image through ``encode_gallery``."""
        index = read_split_index(self.dataset_uri, split, self.storage)
        if not index.captions:
            raise ValueError(f"split '{split}' of {self.dataset_uri} has no captions to query with")
        descriptions = None
        if self.use_descriptions:
            descriptions = load_gallery_descriptions(self.dataset_uri, index.image_ids, self.storage)
        query = embed_captions(encoder, index.captions, self.batch_size, self.progress)
        batches = iter_gallery_batches(self.dataset_uri, split, self.image_size, self.batch_size,
                                       self.storage, workers=self.workers)
        gallery = embed_gallery(encoder, batches, index.image_ids, descriptions, self.progress)
        return SplitEmbeddings(index, query, gallery)

    def score(self, embeddings: SplitEmbeddings, split: str) -> EvalResult:
        """Metrics of already computed embeddings (text-to-image, and image-to-text when enabled)."""
        index = embeddings.index
        groups = clothes_groups(index, split, self.dataset_uri) if self.protocol == "cc" else (None, None)
        ranks = query_ranks_from_embeddings(embeddings.query, embeddings.gallery, index.caption_pids,
                                            index.person_ids, self.chunk_size, self.rank_backend, *groups)
        i2t = None
        if self.image_to_text:
            i2t_ranks = query_ranks_from_embeddings(embeddings.gallery, embeddings.query, index.person_ids,
                                                    index.caption_pids, self.chunk_size, self.rank_backend)
            i2t = metrics_from_ranks(i2t_ranks)
        result = EvalResult(split, metrics_from_ranks(ranks), i2t, ranks.first, ranks.last,
                            len(index.captions), len(index.image_ids))
        logger.info("%s: %s", split, " ".join(f"{k}={v:.2f}" for k, v in result.metrics.items()))
        return result


def clothes_groups(index: SplitIndex, split: str, dataset_uri: str) -> tuple[np.ndarray, np.ndarray]:
    """Outfit ids of the queries ``[Nq]`` and of the gallery ``[Ng]`` for the clothes-changing protocol:
    for each query, gallery images of its person in the outfit its caption describes are left out."""
    if index.clothes_ids is None or (index.clothes_ids < 0).any():
        raise ValueError(f"the clothes-changing protocol needs an outfit id for every image; split '{split}' of "
                         f"{dataset_uri} has none for some (synthetic data from `reid synth` records them)")
    return index.caption_clothes(), index.clothes_ids


def embed_captions(encoder: RetrievalEncoder, captions: list[str], batch_size: int,
                   progress: bool = True) -> torch.Tensor:
    """``encode_text`` over ``captions`` in batches; returns ``[N, E]`` float32."""
    chunks = []
    with torch.no_grad(), tqdm(total=len(captions), desc="captions", unit="txt", disable=not progress) as bar:
        for start in range(0, len(captions), batch_size):
            batch = captions[start:start + batch_size]
            chunks.append(_checked(encoder.encode_text(batch), len(batch), "encode_text"))
            bar.update(len(batch))
    return torch.cat(chunks).float()


def embed_gallery(
    encoder: RetrievalEncoder,
    batches: Iterable[GalleryBatch],
    image_ids: list[str],
    descriptions: list[str | None] | None,
    progress: bool = True,
) -> torch.Tensor:
    """``encode_gallery`` over streamed ``batches`` whose ids must follow ``image_ids``; returns ``[Ng, E]``.

    ``descriptions`` is aligned with ``image_ids`` (already filtered by the no-leakage rule) or None.
    """
    chunks = []
    done = 0
    with torch.no_grad(), tqdm(total=len(image_ids), desc="gallery", unit="img", disable=not progress) as bar:
        for batch in batches:
            stop = done + len(batch.image_ids)
            if batch.image_ids != image_ids[done:stop]:
                raise RuntimeError(f"gallery stream is out of step with the split index at image {done} "
                                   f"('{batch.image_ids[0]}'); did the dataset change while reading?")
            texts = None if descriptions is None else descriptions[done:stop]
            chunks.append(_checked(encoder.encode_gallery(batch.images, texts), len(batch.image_ids),
                                   "encode_gallery"))
            done = stop
            bar.update(len(batch.image_ids))
    if done != len(image_ids):
        raise RuntimeError(f"gallery stream gave {done} images but the split index lists {len(image_ids)}")
    return torch.cat(chunks).float()


def _checked(embeddings: torch.Tensor, rows: int, what: str) -> torch.Tensor:
    if embeddings.ndim != 2 or embeddings.shape[0] != rows:
        raise ValueError(f"{what} returned shape {tuple(embeddings.shape)} for {rows} inputs; expected [{rows}, E]")
    return embeddings


def create_evaluator(config: Config, dataset_uri: str | None = None, progress: bool = True) -> Evaluator:
    """An :class:`Evaluator` from ``config.data`` (dataset, image size, batch size, descriptions) and
    ``config.eval`` (chunk size, image-to-text, rank backend)."""
    return Evaluator(
        dataset_uri or config.data.uri, config.data.image_size, config.data.eval_batch_size,
        config.eval.chunk_size, config.eval.image_to_text, config.data.use_descriptions,
        config.eval.rank_backend, config.storage, progress, protocol=config.eval.protocol,
    )
