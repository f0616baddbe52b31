"""``reid synth`` -> ``reid prepare`` round trip: manifest counts equal what was generated, local and s3://."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reid.data.synth import generate
from reid.distributed.prepare_job import prepare_dataset

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.mark.parametrize("target", ["local", "s3"])
def test_synth_then_prepare_counts_match(tmp_path: Path, target: str, request) -> None:
    summary = generate(str(tmp_path / "raw"), identities=10, images_per_identity=3, seed=4, clothes_changing=True)
    out = str(tmp_path / "ds") if target == "local" else f"{request.getfixturevalue('s3_bucket')}/ds"
    result = prepare_dataset("cuhk-pedes", str(tmp_path / "raw"), out)
    counts = result.manifest["counts"]
    assert {s: c["identities"] for s, c in counts.items()} == {s: n for s, n in summary.identities.items() if n}
    assert {s: c["images"] for s, c in counts.items()} == {s: n for s, n in summary.images.items() if n}
    assert {s: c["captions"] for s, c in counts.items()} == {s: n for s, n in summary.captions.items() if n}
    assert result.report["rejected"] == 0
    if target == "local":
        attributes = json.loads((tmp_path / "raw" / "synth_attributes.json").read_text())
        import pyarrow.parquet as pq

        rows = pq.read_table(str(tmp_path / "ds" / "identities")).to_pylist()
        clothes = {i: c for r in rows for i, c in zip(r["image_ids"], r["clothes_ids"], strict=True)}
        assert clothes == {path: value["clothes_id"] for path, value in attributes.items()}
