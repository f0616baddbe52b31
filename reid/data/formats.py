"""Readers for the official annotation files of CUHK-PEDES, ICFG-PEDES and RSTPReid.

Each reader turns the file into :class:`RawRecord` objects plus a list of :class:`Issue` for records
that cannot be used. Images are not opened here (see :mod:`reid.data.validation`).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("cuhk-pedes", "icfg-pedes", "rstpreid")


class FormatError(ValueError):
    """The annotation file is not of the expected format (the message names the expected fields)."""


@dataclass(frozen=True)
class RawRecord:
    """One annotated image: ``image_path`` is relative to the image root (posix separators)."""

    image_path: str
    source_id: str
    split: str
    captions: tuple[str, ...]
    index: int


@dataclass(frozen=True)
class Issue:
    """A record left out of the dataset: where it is and why."""

    where: str
    reason: str
    index: int = -1


@dataclass
class ReadResult:
    """What a reader found: usable records and the issues of the others."""

    records: list[RawRecord] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)


@dataclass(frozen=True)
class FormatSpec:
    """Field names and split values of one official format."""

    name: str
    annotation_file: str
    image_dir: str
    path_key: str
    splits: tuple[str, ...]


SPECS = {
    # CUHK-PEDES reid_raw.json, one record:
    # {"split": "train", "captions": ["A woman wearing a white shirt ..."], "file_path": "CUHK01/0363004.png",
    #  "processed_tokens": [["a", "woman", ...]], "id": 1}            (ids are 1-based)
    "cuhk-pedes": FormatSpec("cuhk-pedes", "reid_raw.json", "imgs", "file_path", ("train", "val", "test")),
    # ICFG-PEDES ICFG-PEDES.json, one record:
    # {"file_path": "test/0000/0000_000_01_0303morning_0000_0.jpg", "captions": ["The man is wearing ..."],
    #  "id": 0, "split": "test"}
    "icfg-pedes": FormatSpec("icfg-pedes", "ICFG-PEDES.json", "imgs", "file_path", ("train", "test")),
    # RSTPReid data_captions.json, one record:
    # {"id": 0, "img_path": "3903_c14_0007.jpg", "captions": ["The woman is wearing ...", "A woman ..."],
    #  "split": "train"}
    "rstpreid": FormatSpec("rstpreid", "data_captions.json", "imgs", "img_path", ("train", "val", "test")),
}


def required_fields(spec: FormatSpec) -> tuple[str, ...]:
    """The keys every record of ``spec`` must carry."""
    return (spec.path_key, "captions", "id", "split")


def parse_annotations(text: str, fmt: str, where: str) -> ReadResult:
    """Parse the JSON text of an annotation file of format ``fmt`` (one of :data:`FORMATS`).

    Raises :class:`FormatError` when the file as a whole is not of that format; bad single records
    become :class:`Issue` entries instead, so one bad record never drops its neighbours.
    """
    spec = SPECS[fmt]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{where}: not valid JSON ({exc})") from exc
    expected = ", ".join(required_fields(spec))
    if not isinstance(data, list):
        raise FormatError(f"{where}: a {fmt} annotation file is a JSON list of records with {expected}")
    dicts = [d for d in data if isinstance(d, dict)]
    if data and not any(set(required_fields(spec)) <= set(d) for d in dicts):
        seen = sorted(set().union(*(d.keys() for d in dicts))) if dicts else []
        raise FormatError(
            f"{where}: no record has the {fmt} fields {expected} (found fields: {', '.join(seen) or 'none'})"
        )
    result = ReadResult()
    for index, item in enumerate(data):
        record, problem = _parse_record(item, spec, index)
        if problem is not None:
            result.issues.append(problem)
        elif record is not None:
            result.records.append(record)
    return result


def _parse_record(item: Any, spec: FormatSpec, index: int) -> tuple[RawRecord | None, Issue | None]:
    where = f"record {index}"
    if not isinstance(item, dict):
        return None, Issue(where, f"record is a {type(item).__name__}, not an object", index)
    named = item.get(spec.path_key)
    if isinstance(named, str) and named.strip():  # name a bad record by the image it carries, when it has one
        where = f"record {index} ({named})"
    missing = [k for k in required_fields(spec) if k not in item]
    if missing:
        return None, Issue(where, f"missing field(s): {', '.join(missing)}", index)
    path = item[spec.path_key]
    if not isinstance(path, str) or not path.strip():
        return None, Issue(where, f"'{spec.path_key}' must be a non-empty string", index)
    where = f"record {index} ({path})"
    clean = _safe_relative_path(path)
    if clean is None:
        return None, Issue(where, "path escapes the dataset root", index)
    split = item["split"]
    if split not in spec.splits:
        return None, Issue(where, f"unknown split {split!r} (expected one of {list(spec.splits)})", index)
    pid = item["id"]
    if isinstance(pid, bool) or not isinstance(pid, (int, str)) or str(pid).strip() == "":
        return None, Issue(where, f"'id' must be an integer or string, got {pid!r}", index)
    captions, problem = _clean_captions(item["captions"])
    if problem:
        return None, Issue(where, problem, index)
    return RawRecord(clean, str(pid), split, captions, index), None


def _safe_relative_path(path: str) -> str | None:
    """Normalise ``path`` to a relative posix path; ``None`` if it is absolute or climbs out of the root."""
    normal = posixpath.normpath(path.replace("\\", "/"))
    if normal.startswith("/") or normal == ".." or normal.startswith("../") or ":" in normal.split("/")[0]:
        return None
    return normal


def _clean_captions(captions: Any) -> tuple[tuple[str, ...], str | None]:
    if isinstance(captions, str):
        captions = [captions]
    if not isinstance(captions, list) or not captions:
        return (), "'captions' must be a non-empty list of strings"
    if not all(isinstance(c, str) for c in captions):
        return (), "'captions' holds a value that is not text"
    kept = tuple(c.strip() for c in captions)
    if not all(kept):
        return (), "'captions' holds an empty caption"
    return kept, None


def split_off_validation(records: Sequence[RawRecord], identities: int, seed: int) -> list[RawRecord]:
    """Move ``identities`` train identities (chosen by ``seed``) to a ``val`` split.

    For formats without an official validation split (ICFG-PEDES), so checkpoints are never selected on test.
    """
    import random

    train_ids = sorted({r.source_id for r in records if r.split == "train"})
    chosen = set(random.Random(seed).sample(train_ids, min(identities, max(len(train_ids) - 1, 0))))
    return [
        RawRecord(r.image_path, r.source_id, "val", r.captions, r.index) if r.source_id in chosen else r
        for r in records
    ]


