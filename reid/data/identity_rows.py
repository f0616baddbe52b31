"""Group per-image rows into the identity rows of the prepared shards (pure, Ray-free)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from reid.data.formats import RawRecord


def assign_person_ids(records: Sequence[RawRecord]) -> dict[str, dict[str, int]]:
    """``{split: {source_id: person_id}}`` with ids 0..N-1 per split in order of first appearance."""
    mapping: dict[str, dict[str, int]] = {}
    for record in sorted(records, key=lambda r: r.index):
        ids = mapping.setdefault(record.split, {})
        ids.setdefault(record.source_id, len(ids))
    return mapping


def load_synth_extras(text: str | None) -> dict[str, dict[str, Any]]:
    """Per image path: ``clothes_id`` and the ground-truth attributes JSON written by ``reid synth``."""
    if not text:
        return {}
    data = json.loads(text)
    return {path: dict(value) for path, value in data.items()}


def identity_row(
    images: Mapping[str, Sequence[Any]],
    person_id: int,
    extras: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """One identity row (``reid.data.records.IDENTITY_SCHEMA``) from columns of that person's images.

    ``images`` holds equal-length columns ``index, image_path, source_id, split, captions, image`` and optionally
    ``part_labels`` (PNG label maps, empty bytes for none); images are ordered by their record index so the row
    is deterministic.
    """
    labels = images.get("part_labels")
    order = np.argsort(np.asarray(images["index"]), kind="stable")
    paths = [str(images["image_path"][i]) for i in order]
    return {
        "person_id": int(person_id),
        "source_id": str(images["source_id"][order[0]]),
        "split": str(images["split"][order[0]]),
        "image_ids": paths,
        "images": [bytes(images["image"][i]) for i in order],
        "captions": [[str(c) for c in images["captions"][i]] for i in order],
        "clothes_ids": [int(extras.get(p, {}).get("clothes_id", -1)) for p in paths],
        "attributes": [json.dumps(extras[p], sort_keys=True) if p in extras else "" for p in paths],
        "part_labels": [bytes(labels[i] or b"") if labels is not None else b"" for i in order],
    }
