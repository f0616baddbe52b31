"""The styles stage without Ray: captions -> masked texts -> embeddings -> clusters -> styles output."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reid.describe.clustering import cluster_styles, cosine_silhouette, exemplars
from reid.describe.config import StylesConfig
from reid.describe.inputs import iter_image_records
from reid.describe.style_store import write_styles
from reid.describe.style_text import mask_content
from reid.describe.vocabulary import load_vocabulary
from reid.storage.config import StorageConfig

log = logging.getLogger(__name__)
Encoder = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class CaptionRows:
    """One entry per human caption: its image, its index among that image's captions, its text."""

    image_ids: list[str]
    caption_indices: list[int]
    captions: list[str]


def read_captions(uri: str, splits: Sequence[str], storage: StorageConfig | None = None) -> CaptionRows:
    """Every caption of every image of ``splits``."""
    rows = CaptionRows([], [], [])
    for record in iter_image_records(uri, splits, storage, columns=("image_id", "captions")):
        for index, caption in enumerate(record["captions"]):
            rows.image_ids.append(record["image_id"])
            rows.caption_indices.append(index)
            rows.captions.append(caption)
    return rows


def style_texts(captions: Sequence[str], cfg: StylesConfig) -> list[str]:
    """What gets embedded: the captions with content masked (``cfg.mask_content``) or as written."""
    if not cfg.mask_content:
        return list(captions)
    vocab = load_vocabulary(cfg.vocab_dir)
    return [mask_content(c, vocab) for c in captions]


def summarise_styles(x: np.ndarray, labels: np.ndarray, captions: Sequence[str], texts: Sequence[str],
                     cfg: StylesConfig, clustering: Any) -> dict[str, Any]:
    """Sizes, cosine silhouette, exemplar captions (and their masked templates) per style."""
    raw = exemplars(x, labels, captions, cfg.num_exemplars)
    templates = exemplars(x, labels, texts, cfg.num_exemplars)
    sizes = {int(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True), strict=True)}
    return {
        "algorithm": cfg.algorithm, "encoder": cfg.encoder, "mask_content": cfg.mask_content,
        "eps": cfg.eps, "min_samples": cfg.min_samples, "n_clusters": cfg.n_clusters,
        "merge_threshold": cfg.merge_threshold, "splits": list(cfg.splits), "num_captions": len(captions),
        "num_styles": len(sizes), "raw_clusters": clustering.raw_clusters,
        "noise_reassigned": clustering.noise_reassigned, "merged_clusters": clustering.merged,
        "silhouette": cosine_silhouette(x, labels, seed=cfg.seed),
        "styles": {str(k): {"size": sizes[k], "exemplars": raw[k], "templates": templates[k]} for k in sizes},
    }


def compute_styles(x: np.ndarray, captions: Sequence[str], texts: Sequence[str],
                   cfg: StylesConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """``(labels [N], summary)`` for unit embeddings ``x [N, D]`` of ``texts`` (from ``captions``)."""
    clustering = cluster_styles(x, cfg.algorithm, eps=cfg.eps, min_samples=cfg.min_samples,
                                n_clusters=cfg.n_clusters, merge_threshold=cfg.merge_threshold, seed=cfg.seed)
    return clustering.labels, summarise_styles(x, clustering.labels, captions, texts, cfg, clustering)


def finish_styles(uri: str, rows: CaptionRows, texts: Sequence[str], x: np.ndarray, cfg: StylesConfig,
                  storage: StorageConfig | None, started: float) -> dict[str, Any]:
    """Cluster the embeddings, write ``styles/captions.parquet`` and ``styles/summary.json``, return the summary."""
    if len(rows.captions) == 0:
        raise ValueError(f"no captions in splits {list(cfg.splits)} of {uri}: nothing to cluster")
    labels, summary = compute_styles(x, rows.captions, texts, cfg)
    summary["wall_s"] = time.perf_counter() - started
    write_styles(uri, rows.image_ids, rows.caption_indices, labels, summary, storage)
    log.info("%d captions -> %d styles (silhouette %s)", len(labels), summary["num_styles"], summary["silhouette"])
    return summary


def run_styles_local(uri: str, cfg: StylesConfig, storage: StorageConfig | None = None,
                     encoder: Encoder | None = None) -> dict[str, Any]:
    """The whole stage in one process; ``encoder`` defaults to :class:`TextEmbedder` of ``cfg.encoder``."""
    started = time.perf_counter()
    rows = read_captions(uri, cfg.splits, storage)
    texts = style_texts(rows.captions, cfg)
    if encoder is None:
        from reid.describe.embedding import TextEmbedder

        encoder = TextEmbedder(cfg.encoder, cfg.max_length, cfg.batch_size).encode
    return finish_styles(uri, rows, texts, encoder(texts), cfg, storage, started)
