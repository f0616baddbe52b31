"""Image records to describe: identity shards of chosen splits, exploded, minus finished images."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow.parquet as pq

from reid.data.records import explode_identity
from reid.storage import Location, list_files, read_bytes, resolve
from reid.storage.config import StorageConfig

RECORD_COLUMNS = ("image_id", "image", "captions", "attributes")


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
    """Per-image records (only ``columns``) of every identity row of ``splits``, shard by shard."""
    root = resolve(uri, storage)
    keep = tuple(columns)
    for path in identity_shards(uri, splits, storage):
        shard = Location(uri=path, filesystem=root.filesystem, path=path)
        table = pq.read_table(io.BytesIO(read_bytes(shard)))
        for row in table.to_pylist():
            for record in explode_identity(row):
                yield {k: record[k] for k in keep}


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
