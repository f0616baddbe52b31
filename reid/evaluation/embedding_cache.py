"""Gallery embeddings cached at a URI, keyed by checkpoint, gallery and split, so a second search is fast.

Layout: ``<cache>/<key>/embeddings.npy`` (float32 ``[Ng, E]``) and ``<cache>/<key>/meta.json`` (image ids,
person ids and what the key was made of). ``meta.json`` is written last and marks a complete entry.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import torch

from reid.storage import exists, read_bytes, read_json, resolve, write_bytes, write_json
from reid.storage.config import StorageConfig

logger = logging.getLogger(__name__)

EMBEDDINGS_FILE = "embeddings.npy"
META_FILE = "meta.json"


@dataclass(frozen=True)
class GalleryEmbeddings:
    """Embeddings ``[Ng, E]`` (float32, CPU) of a gallery with its image and person ids, in split order."""

    image_ids: list[str]
    person_ids: np.ndarray  # [Ng] int64
    embeddings: torch.Tensor  # [Ng, E]

    def __post_init__(self) -> None:
        if not (len(self.image_ids) == len(self.person_ids) == self.embeddings.shape[0]):
            raise ValueError(f"gallery has {len(self.image_ids)} ids, {len(self.person_ids)} person ids and "
                             f"{self.embeddings.shape[0]} embeddings")


def storage_fingerprint(uri: str, storage: StorageConfig | None = None) -> str:
    """A short hash of the names, sizes and modification times of the files at ``uri`` ("" when absent).

    It changes when a checkpoint or dataset at the same URI is rewritten.
    """
    loc = resolve(uri, storage)
    info = loc.filesystem.get_file_info(loc.path)
    if info.type == pafs.FileType.NotFound:
        return ""
    infos = [info]
    if info.type == pafs.FileType.Directory:
        infos = loc.filesystem.get_file_info(pafs.FileSelector(loc.path, recursive=True))
    entries = sorted((i.path, i.size, i.mtime_ns) for i in infos if i.type == pafs.FileType.File)
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def cache_key(checkpoint: str, gallery: str, split: str, extra: Mapping[str, Any] | None = None) -> str:
    """A hex key of the checkpoint identity, gallery identity, split and any other setting in ``extra``."""
    payload = json.dumps({"checkpoint": checkpoint, "gallery": gallery, "split": split, "extra": extra or {}},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class EmbeddingCache:
    """Reads and writes :class:`GalleryEmbeddings` under a cache URI (local or s3://)."""

    def __init__(self, uri: str, storage: StorageConfig | None = None) -> None:
        self.uri = uri
        self.storage = storage

    def load(self, key: str) -> GalleryEmbeddings | None:
        """The entry at ``key``, or None when there is no complete one."""
        loc = resolve(self.uri, self.storage).join(key)
        if not exists(loc.join(META_FILE)):
            return None
        meta = read_json(loc.join(META_FILE))
        array = np.load(io.BytesIO(read_bytes(loc.join(EMBEDDINGS_FILE))), allow_pickle=False)
        try:
            gallery = GalleryEmbeddings(meta["image_ids"], np.asarray(meta["person_ids"], dtype=np.int64),
                                        torch.from_numpy(array))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"embedding cache entry {loc.uri} is inconsistent ({exc}); delete it") from exc
        logger.info("loaded %d cached gallery embeddings from %s", len(gallery.image_ids), loc.uri)
        return gallery

    def save(self, key: str, gallery: GalleryEmbeddings, description: Mapping[str, Any] | None = None) -> str:
        """Write ``gallery`` under ``key``; ``description`` (what the key stands for) goes into meta.json."""
        loc = resolve(self.uri, self.storage).join(key)
        buffer = io.BytesIO()
        np.save(buffer, gallery.embeddings.detach().float().cpu().numpy(), allow_pickle=False)
        write_bytes(loc.join(EMBEDDINGS_FILE), buffer.getvalue())
        meta = {"image_ids": list(gallery.image_ids), "person_ids": gallery.person_ids.tolist(),
                "shape": list(gallery.embeddings.shape), "key": dict(description or {})}
        write_json(loc.join(META_FILE), meta)
        logger.info("cached %d gallery embeddings at %s", len(gallery.image_ids), loc.uri)
        return loc.uri
