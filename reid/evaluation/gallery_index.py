"""A gallery index at a URI: embeddings, ids and thumbnails in Parquet shards, and a manifest naming the checkpoint
and the gallery by their fingerprints, so an index is never served with a model it was not built with.

Layout::

    <uri>/manifest.json              what was indexed, with what, how many (in all, with a description, alone;
                                     written last: a complete index)
    <uri>/shards/<split>/part-NNNNN.parquet   image_id, person_id, embedding [E] float32, thumbnail (JPEG),
                                     description (the identity description the fusion read, or null)

Each shard holds the images of one identity shard of the gallery split, under the same name, so an
interrupted build resumes by skipping the shards already written for the same key.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from reid.evaluation.embedding_cache import cache_key, storage_fingerprint
from reid.storage import exists, list_files, read_json, resolve, write_bytes, write_json
from reid.storage.config import StorageConfig

logger = logging.getLogger(__name__)

FORMAT = "reid-gallery-index"
VERSION = 1
MANIFEST_FILE = "manifest.json"
SHARDS_DIR = "shards"
KEY_METADATA = b"reid.index_key"


class IndexMismatchError(ValueError):
    """An index was built with another checkpoint or gallery than the one it is asked to serve with."""


def index_schema(dim: int) -> pa.Schema:
    return pa.schema([
        ("image_id", pa.string()),
        ("person_id", pa.int64()),
        ("embedding", pa.list_(pa.float32(), dim)),
        ("thumbnail", pa.binary()),
        ("description", pa.string()),
    ])


def checkpoint_identity(checkpoint_uri: str, storage: StorageConfig | None = None) -> dict[str, str]:
    """``{"checkpoint", "checkpoint_fingerprint"}``: the checkpoint's URI and a hash of its files."""
    return {"checkpoint": checkpoint_uri, "checkpoint_fingerprint": storage_fingerprint(checkpoint_uri, storage)}


def gallery_identity(gallery_uri: str, split: str, storage: StorageConfig | None = None) -> dict[str, str]:
    """``{"gallery", "split", "gallery_fingerprint"}``: a hash of the split's shards and the descriptions."""
    root = resolve(gallery_uri, storage)
    parts = [storage_fingerprint(root.join("identities", split).uri, storage),
             storage_fingerprint(root.join("descriptions").uri, storage)]
    return {"gallery": gallery_uri, "split": split, "gallery_fingerprint": "-".join(parts)}


def index_key(identity: dict[str, Any]) -> str:
    """The key a shard is written under: the checkpoint's and the gallery's identities and the settings."""
    return cache_key(identity["checkpoint_fingerprint"], identity["gallery_fingerprint"], identity["split"],
                     {"use_descriptions": identity["use_descriptions"], "thumb_size": identity["thumb_size"]})


@dataclass(frozen=True)
class GalleryIndex:
    """A whole index in memory: ``embeddings [N, E]`` float32 (L2-normalised) with ids, and the manifest."""

    manifest: dict[str, Any]
    image_ids: list[str]
    person_ids: np.ndarray  # [N] int64
    embeddings: np.ndarray  # [N, E] float32
    thumbnails: dict[str, bytes]
    descriptions: list[str | None]

    def check_checkpoint(self, checkpoint_uri: str, storage: StorageConfig | None = None) -> None:
        """Raise :class:`IndexMismatchError` unless ``checkpoint_uri`` is the checkpoint this index was built with
        (same files: a rewritten checkpoint at the same URI is refused too)."""
        found = checkpoint_identity(checkpoint_uri, storage)["checkpoint_fingerprint"]
        if found != self.manifest["checkpoint_fingerprint"]:
            raise IndexMismatchError(
                f"the index at {self.manifest.get('uri', '?')} was built with checkpoint "
                f"{self.manifest['checkpoint']} (fingerprint {self.manifest['checkpoint_fingerprint']}), not with "
                f"{checkpoint_uri} (fingerprint {found or 'none: not found'}); rebuild it with `reid index`")


def write_shard(uri: str, name: str, rows: list[dict[str, Any]] | pa.Table, dim: int, key: str,
                storage: StorageConfig | None = None) -> str:
    """Write one shard (``rows`` with the schema's columns, or a table of :func:`index_schema`) under
    ``<uri>/shards/<name>.parquet``."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=index_schema(dim))
    table = table.cast(index_schema(dim)).replace_schema_metadata({KEY_METADATA: key.encode()})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    loc = resolve(uri, storage).join(SHARDS_DIR, f"{name}.parquet")
    write_bytes(loc, sink.getvalue())
    return loc.uri


def finished_shards(uri: str, key: str, storage: StorageConfig | None = None) -> set[str]:
    """Names of the shards already written under ``key`` (a resumed build skips them)."""
    loc = resolve(uri, storage).join(SHARDS_DIR)
    done = set()
    for path in list_files(loc, ".parquet"):
        metadata = pq.read_schema(path, filesystem=loc.filesystem).metadata or {}
        if metadata.get(KEY_METADATA) == key.encode():
            done.add(path[len(loc.path) + 1:].removesuffix(".parquet"))
    return done


def count_described(uri: str, shards: Iterable[str], storage: StorageConfig | None = None) -> int:
    """How many images of the written ``shards`` were embedded with an identity description (the rest alone)."""
    root = resolve(uri, storage)
    total = 0
    for name in shards:
        column = pq.read_table(root.join(SHARDS_DIR, f"{name}.parquet").path, columns=["description"],
                               filesystem=root.filesystem).column("description")
        total += len(column) - column.null_count
    return total


def write_manifest(uri: str, identity: dict[str, Any], shards: Iterable[str], count: int, dim: int,
                   storage: StorageConfig | None = None, described: int = 0) -> dict[str, Any]:
    """The manifest (written last, after every shard): what was indexed with what, and how many images were
    embedded with their identity description (``described``) and from the image alone (``image_only``)."""
    manifest = {"format": FORMAT, "version": VERSION, **identity, "key": index_key(identity),
                "shards": sorted(shards), "count": count, "described": described, "image_only": count - described,
                "embed_dim": dim,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    write_json(resolve(uri, storage).join(MANIFEST_FILE), manifest)
    return manifest


def read_index(uri: str, storage: StorageConfig | None = None) -> GalleryIndex:
    """The whole index at ``uri``; a missing or partial one (no manifest) is a ``FileNotFoundError``."""
    root = resolve(uri, storage)
    if not exists(root.join(MANIFEST_FILE)):
        raise FileNotFoundError(f"no gallery index at {root.uri} (no {MANIFEST_FILE}: build it with `reid index`)")
    manifest = {**read_json(root.join(MANIFEST_FILE)), "uri": root.uri}
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{root.uri} is not a gallery index (format {manifest.get('format')!r})")
    tables = [pq.read_table(root.join(SHARDS_DIR, f"{name}.parquet").path, filesystem=root.filesystem)
              for name in manifest["shards"]]
    table = pa.concat_tables(tables) if tables else pa.Table.from_pylist([], schema=index_schema(1))
    ids = table.column("image_id").to_pylist()
    if len(ids) != manifest["count"]:
        raise ValueError(f"the index at {root.uri} lists {manifest['count']} images but its shards hold {len(ids)}")
    embeddings = np.asarray(table.column("embedding").combine_chunks().flatten(), dtype=np.float32)
    return GalleryIndex(manifest, ids, np.asarray(table.column("person_id").to_pylist(), dtype=np.int64),
                        embeddings.reshape(len(ids), manifest["embed_dim"]),
                        dict(zip(ids, table.column("thumbnail").to_pylist(), strict=True)),
                        table.column("description").to_pylist())
