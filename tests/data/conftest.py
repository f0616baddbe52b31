"""Builders of tiny raw datasets in each official annotation format, with planted bad records."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image


def jpeg_bytes(seed: int, size: tuple[int, int] = (48, 24)) -> bytes:
    """A small random-colour JPEG (H, W = ``size``)."""
    rng = np.random.default_rng(seed)
    pixels = np.full((*size, 3), rng.integers(0, 256, 3), dtype=np.uint8)
    pixels[size[0] // 3 :, :, :] = rng.integers(0, 256, 3)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


FORMAT_LAYOUT = {
    "cuhk-pedes": ("reid_raw.json", "file_path"),
    "icfg-pedes": ("ICFG-PEDES.json", "file_path"),
    "rstpreid": ("data_captions.json", "img_path"),
}


def write_raw_dataset(
    root: Path, fmt: str, identities: int = 6, per_identity: int = 3, splits: tuple[str, ...] = ("train", "test"),
    extra_records: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Write ``identities`` x ``per_identity`` good images + annotation records in format ``fmt``."""
    annotation, path_key = FORMAT_LAYOUT[fmt]
    records = []
    for pid in range(identities):
        split = splits[pid % len(splits)]
        for k in range(per_identity):
            rel = f"{split}/{pid:04d}_{k}.jpg"
            (root / "imgs" / split).mkdir(parents=True, exist_ok=True)
            (root / "imgs" / rel).write_bytes(jpeg_bytes(pid * 100 + k))
            record = {path_key: rel, "captions": [f"person {pid} view {k}", f"another text {pid}"],
                      "id": pid + 1 if fmt == "cuhk-pedes" else pid, "split": split}
            if fmt == "cuhk-pedes":
                record["processed_tokens"] = [c.split() for c in record["captions"]]
            records.append(record)
    records.extend(extra_records or [])
    (root / annotation).write_text(json.dumps(records))
    return records


ROUND_TRIP_RAW: dict[str, Any] = {"identities": 6, "per_identity": 3, "splits": ("train", "val", "test")}
"""The raw dataset the round-trip tests prepare (on Ray Data and on threads) ..."""
ROUND_TRIP_COUNTS = {s: {"identities": 2, "images": 6, "captions": 12} for s in ("test", "train", "val")}
"""... and the manifest's counts both must write for it."""


@pytest.fixture()
def raw_writer(tmp_path: Path):
    """``raw_writer(fmt, **kw) -> (root, records)`` writing into a fresh temporary directory."""
    def write(fmt: str, **kwargs: Any) -> tuple[Path, list[dict[str, Any]]]:
        root = tmp_path / f"raw-{fmt}"
        root.mkdir(exist_ok=True)
        return root, write_raw_dataset(root, fmt, **kwargs)

    return write
