"""Fixtures: a small prepared dataset of two-colour figures written without Ray, and the tiny config."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from reid.config import Config, load_config
from reid.data.records import IDENTITY_SCHEMA

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 40),
           "black": (20, 20, 20), "white": (240, 240, 240), "purple": (140, 40, 170), "orange": (250, 140, 20)}
NAMES = sorted(COLOURS)
SIZE = (64, 32)


def figure(upper: str, lower: str, rng: np.random.Generator) -> bytes:
    """A PNG: grey noisy background, an upper-body block and a lower-body block at a jittered place."""
    h, w = SIZE
    pixels = rng.integers(90, 160, (h, w, 3)).astype(np.int16)
    dx, dy = rng.integers(-3, 4, 2)
    top, mid, bottom, left, right = 8 + dy, 32 + dy, 58 + dy, 8 + dx, 24 + dx
    pixels[top:mid, left:right] = COLOURS[upper]
    pixels[mid:bottom, left:right] = COLOURS[lower]
    pixels += rng.integers(-20, 21, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def identity_rows(split: str, pairs: list[tuple[str, str]], images: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for pid, (upper, lower) in enumerate(pairs):
        ids = [f"{split}/p{pid:03d}_{k}.png" for k in range(images)]
        captions = [[f"a person wearing a {upper} shirt and {lower} trousers",
                     f"the {lower} pants go with a {upper} top"] for _ in range(images)]
        rows.append({"person_id": pid, "source_id": f"{split}-{pid}", "split": split, "image_ids": ids,
                     "images": [figure(upper, lower, rng) for _ in range(images)], "captions": captions,
                     "clothes_ids": [-1] * images, "attributes": [""] * images})
    return rows


def write_colour_dataset(root: Path, train: int = 24, val: int = 12, test: int = 12, images: int = 3) -> Path:
    """Identities are distinct (upper, lower) colour pairs, split train/val/test; one shard per split."""
    pairs = [(a, b) for a in NAMES for b in NAMES if a != b]
    order = np.random.default_rng(0).permutation(len(pairs))
    pairs = [pairs[i] for i in order]
    start = 0
    for split, count in (("train", train), ("val", val), ("test", test)):
        rows = identity_rows(split, pairs[start:start + count], images, seed=start)
        start += count
        out = root / "identities" / split
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=IDENTITY_SCHEMA), out / "part-00000.parquet")
    return root


@pytest.fixture(scope="session")
def colour_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("colour") / "dataset")


def describe_colours(dataset: Path) -> None:
    """Image-grounded identity descriptions of the colour figures (what an MLLM would see in each image)."""
    from reid.describe.schema import Description
    from reid.describe.table import append_descriptions

    rows = []
    for path in sorted((dataset / "identities").rglob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            upper, lower = row["captions"][0][0].split(" a ")[1].split(" shirt and ")
            lower = lower.split(" trousers")[0]
            assert upper in COLOURS and lower in COLOURS
            rows += [Description(image_id, f"A figure, {upper} above and {lower} below.", f"A {upper} top.",
                                 "oracle") for image_id in row["image_ids"]]
    append_descriptions(str(dataset), rows)


def tiny_config(dataset: Path, *overrides: str) -> Config:
    """``pkg://tiny`` on ``dataset`` with no descriptions, plus ``overrides``."""
    return load_config("pkg://tiny", [f"data.uri={dataset}", "data.use_descriptions=false", *overrides])


@pytest.fixture(scope="session")
def make_config(colour_dataset: Path) -> Callable[..., Config]:
    """``make_config(*overrides)``: the tiny config on the colour dataset."""
    return lambda *overrides: tiny_config(colour_dataset, *overrides)


def run_single_rank_deepspeed(script: str, dataset: Path, root: Path) -> dict[str, Any]:
    """Run ``script`` (a ``str.format`` template of ``conftest_dir``, ``dataset`` and ``root`` that prints
    one JSON line last) in a fresh process set up as a one-rank DeepSpeed job on the CPU accelerator; the
    parsed JSON."""
    import json
    import os
    import socket
    import subprocess
    import sys

    pytest.importorskip("deepspeed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = script.format(conftest_dir=str(Path(__file__).parent), dataset=str(dataset), root=str(root))
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "LOCAL_RANK": "0",
           "WORLD_SIZE": "1", "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, text=True, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
