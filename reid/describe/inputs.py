"""Image records to describe: identity shards of chosen splits, exploded, minus finished images."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow.parquet as pq

from reid.storage import list_files, resolve
from reid.storage.config import StorageConfig

RECORD_COLUMNS = ("image_id", "image", "captions", "attributes")
IDENTITY_COLUMNS = {"image_id": "image_ids", "image": "images", "captions": "captions", "attributes": "attributes",
                    "clothes_id": "clothes_ids"}
"""Per-image record field -> the list column of the identity row it comes from."""


def identity_shards(uri: str, splits: Sequence[str], storage: StorageConfig | None = None) -> list[str]:
    """Paths (inside the dataset's filesystem) of ``identities/<split>/*.parquet`` for ``splits``.

    Raises ``FileNotFoundError`` naming the URI when no split has a shard (not a prepared dataset).
    """
    root = resolve(uri, storage)
    shards = [p for split in splits for p in list_files(root.join("identities", split), ".parquet")]
    if not shards:
        raise FileNotFoundError(f"no identity shards for splits {list(splits)} under {root.uri}/identities "
                                "(run `reid prepare` first)")
    return shards


def iter_image_records(uri: str, splits: Sequence[str], storage: StorageConfig | None = None,
                       columns: Iterable[str] = RECORD_COLUMNS) -> Iterator[dict[str, Any]]:
    """Per-image records with only ``columns`` (keys of :data:`IDENTITY_COLUMNS`), shard by shard.

    Only the needed identity columns are read, so describing from captions never loads image bytes.
    """
    root = resolve(uri, storage)
    keep = tuple(columns)
    unknown = sorted(set(keep) - set(IDENTITY_COLUMNS))
    if unknown:
        raise ValueError(f"unknown record column(s) {unknown} (known: {sorted(IDENTITY_COLUMNS)})")
    for path in identity_shards(uri, splits, storage):
        try:
            table = pq.read_table(path, filesystem=root.filesystem, columns=[IDENTITY_COLUMNS[k] for k in keep])
        except (KeyError, ValueError, OSError) as exc:
            raise ValueError(f"identity shard '{path}' cannot be read as identity rows: {exc}") from exc
        for row in table.to_pylist():
            lists = [row[IDENTITY_COLUMNS[k]] for k in keep]
            lengths = {len(v) for v in lists}
            if len(lengths) != 1:
                raise ValueError(f"identity shard '{path}': an identity row has list columns of lengths "
                                 f"{sorted(lengths)} for {list(keep)}")
            for values in zip(*lists, strict=True):
                yield dict(zip(keep, values, strict=True))


def record_columns(backend: str) -> tuple[str, ...]:
    """The record fields a describer backend reads (image bytes for the MLLM only)."""
    return ("image_id", "image", "captions", "attributes") if backend == "mllm" else ("image_id", "captions",
                                                                                       "attributes")


def pending(records: Iterable[dict[str, Any]], finished: set[str],
            limit: int | None = None) -> Iterator[dict[str, Any]]:
    """``records`` whose image is not in ``finished``, each image once, at most ``limit`` of them."""
    seen: set[str] = set()
    for record in records:
        if limit is not None and len(seen) >= limit:
            return
        image_id = record["image_id"]
        if image_id in finished or image_id in seen:
            continue
        seen.add(image_id)
        yield record
