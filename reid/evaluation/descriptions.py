"""Gallery descriptions for evaluation, with the no-leakage rule (DESIGN 3.5) applied.

A gallery image's identity description is used only when it was made from the image itself
(provenance ``mllm`` or ``oracle``). Descriptions derived from the human captions (``rules``) would leak
the queries into the gallery, so they are dropped and that image is encoded image-only.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from reid.describe.table import load_descriptions
from reid.storage.config import StorageConfig

logger = logging.getLogger(__name__)

IMAGE_GROUNDED = frozenset({"mllm", "oracle"})
CAPTION_DERIVED = frozenset({"rules"})


def admissible_description(image_id: str, text: str | None, provenance: str) -> str | None:
    """``text`` when a gallery may use it, ``None`` when it must run image-only.

    Raises ``ValueError`` for a provenance that is neither image-grounded nor caption-derived.
    """
    if provenance in IMAGE_GROUNDED:
        return text if text and text.strip() else None
    if provenance in CAPTION_DERIVED:
        return None
    raise ValueError(f"description of image '{image_id}' has unknown provenance {provenance!r} "
                     f"(known: {sorted(IMAGE_GROUNDED | CAPTION_DERIVED)})")


def select_gallery_descriptions(
    image_ids: Sequence[str], rows: Mapping[str, Mapping[str, Any]]
) -> list[str | None]:
    """One identity description or None per gallery image, aligned with ``image_ids``.

    ``rows`` maps image id to a description row (``identity``, ``provenance``, optional ``quarantined``).
    Missing, quarantined and caption-derived descriptions give None; the counts are logged.
    """
    counts: Counter[str] = Counter()
    out: list[str | None] = []
    for image_id in image_ids:
        row = rows.get(image_id)
        if row is None:
            counts["missing"] += 1
            out.append(None)
        elif row.get("quarantined", False):
            counts["quarantined"] += 1
            out.append(None)
        else:
            text = admissible_description(image_id, row.get("identity"), row["provenance"])
            counts["used" if text is not None else f"dropped ({row['provenance']})"] += 1
            out.append(text)
    if counts.get("dropped (rules)"):
        logger.warning("%d gallery descriptions are caption-derived (provenance 'rules'): those images are "
                       "encoded image-only", counts["dropped (rules)"])
    logger.info("gallery descriptions: %s", dict(counts))
    return out


def load_gallery_descriptions(
    dataset_uri: str, image_ids: Sequence[str], storage: StorageConfig | None = None
) -> list[str | None] | None:
    """:func:`select_gallery_descriptions` over the dataset's ``descriptions/`` table.

    Returns None when the dataset has no admissible description for any gallery image.
    """
    rows = load_descriptions(dataset_uri, storage)
    if not rows:
        logger.info("no descriptions under %s: the gallery is encoded image-only", dataset_uri)
        return None
    selected = select_gallery_descriptions(image_ids, rows)
    return selected if any(d is not None for d in selected) else None
