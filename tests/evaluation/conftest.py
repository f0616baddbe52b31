"""Fixtures: a tiny prepared dataset of coloured figures and a colour-reading stand-in encoder."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image, ImageDraw

from reid.data.records import IDENTITY_SCHEMA

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
# person id -> colour; each person has three images; p0_a is pure red, the others a figure on black.
PERSONS = ["red", "green", "blue", "yellow"]


def draw_figure(rgb: tuple[int, int, int], variant: int, size: tuple[int, int] = (24, 12)) -> bytes:
    """A PNG of ``size = (H, W)``: a coloured rectangle (the "person") on black; variant 0 is all colour."""
    height, width = size
    image = Image.new("RGB", (width, height), (0, 0, 0) if variant else rgb)
    if variant:
        ImageDraw.Draw(image).rectangle((2, 1 + variant, width - 3, height - 2), fill=rgb)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def identity_row(pid: int, colour: str, split: str) -> dict:
    """Three images; two captions each, the last caption of the last image names the next person's colour
    (a query that must miss at rank 1)."""
    ids = [f"{split}/p{pid}_{v}" for v in "abc"]
    wrong = PERSONS[(pid + 1) % len(PERSONS)]
    captions = [[f"A person in a {colour} shirt {v}", f"{colour} clothes, image {v}"] for v in range(3)]
    captions[2][1] = f"{wrong} clothes, image 2"
    return {
        "person_id": pid,
        "source_id": str(100 + pid),
        "split": split,
        "image_ids": ids,
        "images": [draw_figure(COLOURS[colour], v) for v in range(3)],
        "captions": captions,
        "clothes_ids": [-1, -1, -1],
        "attributes": ["", "", ""],
    }


def write_dataset(root: Path, split: str = "test", shards: int = 2) -> Path:
    """Persons spread over ``shards`` files: 12 images, 24 captions."""
    rows = [identity_row(pid, colour, split) for pid, colour in enumerate(PERSONS)]
    out = root / "identities" / split
    out.mkdir(parents=True, exist_ok=True)
    per = int(np.ceil(len(rows) / shards))
    for i in range(shards):
        table = pa.Table.from_pylist(rows[i * per:(i + 1) * per], schema=IDENTITY_SCHEMA)
        pq.write_table(table, out / f"part-{i:05d}.parquet", row_group_size=1)
    return root


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "dataset")


class ColourEncoder:
    """Stand-in encoder: a caption maps to the sum of the colours it names, an image to its mean colour.

    Records every call so tests can count them and see the descriptions the gallery was given.
    """

    def __init__(self) -> None:
        self.text_calls = 0
        self.gallery_calls = 0
        self.seen_descriptions: list[str | None] = []
        self.seen_none = 0

    def encode_text(self, captions: list[str]) -> torch.Tensor:
        self.text_calls += 1
        rows = []
        for text in captions:
            vec = np.full(3, 1e-3)
            for word in text.lower().replace(",", " ").split():
                if word in COLOURS:
                    vec = vec + np.array(COLOURS[word], dtype=float)
            rows.append(vec / np.linalg.norm(vec))
        return torch.tensor(np.array(rows), dtype=torch.float32)

    def encode_gallery(self, images: torch.Tensor, descriptions: Sequence[str | None] | None) -> torch.Tensor:
        self.gallery_calls += 1
        if descriptions is None:
            self.seen_none += 1
        else:
            assert len(descriptions) == len(images)
            self.seen_descriptions.extend(descriptions)
        assert images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3
        mean = images.float().mean(dim=(2, 3)) + 1e-3
        return torch.nn.functional.normalize(mean, dim=1)


@pytest.fixture()
def encoder() -> ColourEncoder:
    return ColourEncoder()


@pytest.fixture()
def encoder_cls() -> type[ColourEncoder]:
    """The stand-in encoder class (test modules cannot import conftest under importlib mode)."""
    return ColourEncoder


@pytest.fixture()
def dataset_writer():
    """:func:`write_dataset`, for tests that need a second dataset or another split."""
    return write_dataset
