"""The identity-row schema of prepared shards and the conversion to per-image records."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1

IDENTITY_SCHEMA = pa.schema(
    [
        ("person_id", pa.int64()),
        ("source_id", pa.string()),
        ("split", pa.string()),
        ("image_ids", pa.list_(pa.string())),
        ("images", pa.list_(pa.binary())),
        ("captions", pa.list_(pa.list_(pa.string()))),
        ("clothes_ids", pa.list_(pa.int64())),
        ("attributes", pa.list_(pa.string())),
        ("part_labels", pa.list_(pa.binary())),
    ]
)
"""``part_labels`` holds each image's part label map as PNG bytes (:mod:`reid.data.parts`), empty when it has
none; shards written before it existed lack the column, and only part-aware training asks for it."""

IMAGE_FIELDS = ("image_id", "person_id", "split", "image", "captions", "clothes_id", "attributes")


def explode_identity(row: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield one record per image of an identity row, in stored order.

    Each record has the keys of :data:`IMAGE_FIELDS`.
    """
    for i, image_id in enumerate(row["image_ids"]):
        yield {
            "image_id": image_id,
            "person_id": int(row["person_id"]),
            "split": row["split"],
            "image": row["images"][i],
            "captions": list(row["captions"][i]),
            "clothes_id": int(row["clothes_ids"][i]),
            "attributes": row["attributes"][i],
        }
