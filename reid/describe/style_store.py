"""The styles output (``<uri>/styles/captions.parquet`` + ``summary.json``) and the per-image style lookup."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from reid.storage import exists, read_bytes, read_json, resolve, write_bytes, write_json
from reid.storage.config import StorageConfig

STYLES_DIR = "styles"
CAPTION_STYLES_SCHEMA = pa.schema([("image_id", pa.string()), ("caption_index", pa.int64()),
                                   ("style_id", pa.int64())])


def write_styles(uri: str, image_ids: Sequence[str], caption_indices: Sequence[int], style_ids: Sequence[int],
                 summary: Mapping[str, Any], storage: StorageConfig | None = None) -> None:
    """Write one style id per caption and the summary (sizes, silhouette, exemplars per style)."""
    table = pa.table({"image_id": list(image_ids), "caption_index": list(map(int, caption_indices)),
                      "style_id": list(map(int, style_ids))}, schema=CAPTION_STYLES_SCHEMA)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    loc = resolve(uri, storage).join(STYLES_DIR)
    write_bytes(loc.join("captions.parquet"), sink.getvalue())
    write_json(loc.join("summary.json"), dict(summary))


@dataclass(frozen=True)
class StyleBook:
    """Which caption style an image's prompt imitates, and that style's exemplar captions.

    ``image_styles`` holds the style of each clustered image's first caption. An image that was not
    clustered (by default every non-train image, so no gallery caption shapes a gallery description)
    gets a style picked by a hash of its id.
    """

    image_styles: dict[str, int] = field(default_factory=dict)
    exemplars: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def style_for(self, image_id: str) -> int:
        """The style id for ``image_id`` (-1 when there are no styles)."""
        if image_id in self.image_styles:
            return self.image_styles[image_id]
        if not self.exemplars:
            return -1
        styles = sorted(self.exemplars)
        digest = int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "big")
        return styles[digest % len(styles)]

    def exemplars_for(self, style_id: int, n: int) -> tuple[str, ...]:
        """Up to ``n`` exemplar captions of ``style_id`` (none for -1 or an unknown style)."""
        return self.exemplars.get(style_id, ())[:n]


def load_style_book(uri: str, storage: StorageConfig | None = None) -> StyleBook:
    """The :class:`StyleBook` of the dataset at ``uri``; empty when ``reid styles`` has not run."""
    loc = resolve(uri, storage).join(STYLES_DIR)
    if not exists(loc.join("summary.json")):
        return StyleBook()
    summary = read_json(loc.join("summary.json"))
    exemplars = {int(k): tuple(v["exemplars"]) for k, v in summary.get("styles", {}).items()}
    table = pq.read_table(io.BytesIO(read_bytes(loc.join("captions.parquet"))))
    image_styles: dict[str, int] = {}
    for row in sorted(table.to_pylist(), key=lambda r: -r["caption_index"]):
        image_styles[row["image_id"]] = int(row["style_id"])
    return StyleBook(image_styles, exemplars)
