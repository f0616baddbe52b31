"""Record and image checks for ``reid prepare``, and the validation report they feed."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reid.data.formats import Issue, RawRecord
from reid.data.transforms import ImageDecodeError, decode_image


def drop_duplicate_paths(records: Sequence[RawRecord]) -> tuple[list[RawRecord], list[Issue]]:
    """Keep the first record of each image path; every later one becomes an issue naming the first."""
    first: dict[str, int] = {}
    kept: list[RawRecord] = []
    issues: list[Issue] = []
    for record in records:
        if record.image_path in first:
            reason = f"duplicate path (first at record {first[record.image_path]})"
            issues.append(Issue(f"record {record.index} ({record.image_path})", reason, record.index))
            continue
        first[record.image_path] = record.index
        kept.append(record)
    return kept, issues


@dataclass(frozen=True)
class ImageCheck:
    """The outcome of opening one image: ``reason`` is empty when the image is usable."""

    reason: str
    sha256: str


def check_image_bytes(data: bytes | None) -> ImageCheck:
    """Decode ``data`` fully (a truncated file fails here, not in training)."""
    if data is None:
        return ImageCheck("image file not found", "")
    if not data:
        return ImageCheck("image file is empty", "")
    try:
        decode_image(data)
    except ImageDecodeError as exc:
        return ImageCheck(f"corrupt or truncated image: {exc}", "")
    return ImageCheck("", hashlib.sha256(data).hexdigest())


def build_report(issues: Iterable[Issue], total: int, strict: bool) -> dict:
    """The validation report: every rejected record with its place and reason, plus counts per reason."""
    items = sorted(issues, key=lambda i: (i.index, i.where))
    kinds = Counter(i.reason.split(":")[0].split(" (")[0] for i in items)
    return {
        "records": total,
        "rejected": len(items),
        "accepted": total - len(items),
        "strict": strict,
        "by_reason": dict(sorted(kinds.items())),
        "issues": [{"index": i.index, "where": i.where, "reason": i.reason} for i in items],
    }


def content_hash(entries: Iterable[tuple[str, str, str, tuple[str, ...]]]) -> str:
    """A hash over ``(split, image_path, image sha256, captions)`` of every accepted image, order-free."""
    digest = hashlib.sha256()
    for split, path, sha, captions in sorted(entries):
        digest.update("\x1f".join((split, path, sha, *captions)).encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()
