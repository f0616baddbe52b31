"""The styles stage on Ray Data: caption texts embedded by encoder actors, clustered on the driver."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import ray

from reid.describe.config import StylesConfig
from reid.describe.styles import finish_styles, read_captions, style_texts
from reid.distributed.runtime import ensure_ray
from reid.storage.config import StorageConfig

log = logging.getLogger(__name__)


class _EmbedBatch:
    """``map_batches`` callable: ``{"index", "text"}`` -> ``{"index", "embedding" [B, D]}``."""

    def __init__(self, encoder: str, max_length: int, batch_size: int) -> None:
        from reid.describe.embedding import TextEmbedder

        self.embedder = TextEmbedder(encoder, max_length, batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"index": batch["index"], "embedding": self.embedder.encode([str(t) for t in batch["text"]])}


def compute_styles_dataset(uri: str, cfg: StylesConfig, storage: StorageConfig | None = None,
                           num_cpus: int | None = None) -> dict[str, Any]:
    """Embed every caption of ``cfg.splits`` with ``cfg.actors`` encoder actors, cluster, write the styles output."""
    started = time.perf_counter()
    ensure_ray(num_cpus)
    rows = read_captions(uri, cfg.splits, storage)
    texts = style_texts(rows.captions, cfg)
    if not texts:
        raise ValueError(f"no captions in splits {list(cfg.splits)} of {uri}: nothing to cluster")
    ds = ray.data.from_items([{"index": i, "text": t} for i, t in enumerate(texts)])
    ds = ds.map_batches(_EmbedBatch, fn_constructor_kwargs={"encoder": cfg.encoder, "max_length": cfg.max_length,
                                                            "batch_size": cfg.batch_size},
                        batch_size=cfg.batch_size, concurrency=cfg.actors, num_cpus=1, batch_format="numpy")
    index, chunks = [], []
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        index.append(batch["index"])
        chunks.append(np.asarray(batch["embedding"], dtype=np.float32))
    x = np.empty((len(texts), chunks[0].shape[1]), dtype=np.float32)
    x[np.concatenate(index)] = np.concatenate(chunks)
    return finish_styles(uri, rows, texts, x, cfg, storage, started)
