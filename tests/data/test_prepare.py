"""``reid prepare`` on Ray Data: round trip to local and s3:// outputs, planted bad records, --strict."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from reid.cli.main import main
from reid.data import prepare
from reid.data.records import explode_identity
from reid.distributed.prepare_job import prepare_dataset
from reid.storage import list_files, read_json, resolve

from .conftest import ROUND_TRIP_COUNTS, ROUND_TRIP_RAW

pytestmark = pytest.mark.usefixtures("ray_local")


def read_identity_rows(uri: str) -> list[dict]:
    loc = resolve(uri)
    rows = []
    for path in list_files(loc.join("identities"), ".parquet"):
        rows.extend(pq.read_table(path, filesystem=loc.filesystem).to_pylist())
    return rows


def plant_bad_records(root: Path) -> dict[str, str]:
    """Add bad images and records next to good ones; returns {path or marker: expected reason fragment}."""
    (root / "imgs" / "bad").mkdir(parents=True)
    good = (root / "imgs" / "train" / "0000_0.jpg").read_bytes()
    (root / "imgs" / "bad" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "imgs" / "bad" / "garbage.jpg").write_bytes(b"not an image at all")
    (root / "imgs" / "bad" / "empty.jpg").write_bytes(b"")
    annotation = root / "reid_raw.json"
    records = json.loads(annotation.read_text())
    extra = [
        {"file_path": "bad/truncated.jpg", "captions": ["x"], "id": 1, "split": "train"},
        {"file_path": "bad/garbage.jpg", "captions": ["x"], "id": 1, "split": "train"},
        {"file_path": "bad/empty.jpg", "captions": ["x"], "id": 1, "split": "train"},
        {"file_path": "bad/missing.jpg", "captions": ["x"], "id": 1, "split": "train"},
        {"file_path": "train/0000_1.jpg", "captions": ["dup"], "id": 1, "split": "train"},
        {"file_path": "../outside.jpg", "captions": ["x"], "id": 1, "split": "train"},
        {"file_path": "train/0000_2.jpg", "captions": [""], "id": 1, "split": "train"},
        {"file_path": "bad/nosplit.jpg", "captions": ["x"], "id": 1, "split": "elsewhere"},
        {"captions": ["x"], "id": 1, "split": "train"},
    ]
    annotation.write_text(json.dumps(records + extra))
    return {
        "bad/truncated.jpg": "corrupt or truncated", "bad/garbage.jpg": "corrupt or truncated",
        "bad/empty.jpg": "empty", "bad/missing.jpg": "not found", "train/0000_1.jpg": "duplicate path",
        "../outside.jpg": "escapes", "train/0000_2.jpg": "empty caption", "bad/nosplit.jpg": "unknown split",
        "record": "missing field(s): file_path",
    }


def test_prepare_round_trip_local(raw_writer, tmp_path: Path) -> None:
    root, records = raw_writer("cuhk-pedes", **ROUND_TRIP_RAW)
    out = tmp_path / "prepared"
    result = prepare_dataset("cuhk-pedes", str(root), str(out))
    assert result.manifest["counts"] == ROUND_TRIP_COUNTS
    rows = read_identity_rows(str(out))
    assert len(rows) == 6
    assert sorted(r["person_id"] for r in rows if r["split"] == "train") == [0, 1]
    images = [img for row in rows for img in explode_identity(row)]
    assert sorted(i["image_id"] for i in images) == sorted(r["file_path"] for r in records)
    by_path = {r["file_path"]: r for r in records}
    for image in images:
        assert image["image"] == (root / "imgs" / image["image_id"]).read_bytes()
        assert image["captions"] == by_path[image["image_id"]]["captions"]
    assert result.report["rejected"] == 0
    assert len(result.manifest["content_hash"]) == 64


def test_validation_report_names_every_planted_bad_record(raw_writer, tmp_path: Path) -> None:
    root, _ = raw_writer("cuhk-pedes", identities=4, per_identity=3)
    planted = plant_bad_records(root)
    result = prepare_dataset("cuhk-pedes", str(root), str(tmp_path / "out"))
    report = read_json(resolve(str(tmp_path / "out")).join("validation_report.json"))
    assert report["rejected"] == len(planted)
    for key, reason in planted.items():
        matching = [i for i in report["issues"] if key in i["where"] and reason in i["reason"]]
        assert matching, f"{key}: no issue with reason '{reason}' in {report['issues']}"
    # the 12 good images all survive, including the first copy of the duplicated path
    assert sum(c["images"] for c in result.manifest["counts"].values()) == 12


def test_strict_exits_non_zero_with_the_same_report(raw_writer, tmp_path: Path, capsys) -> None:
    root, _ = raw_writer("cuhk-pedes", identities=4, per_identity=3)
    planted = plant_bad_records(root)
    out = tmp_path / "strict"
    code = main(["prepare", "--format", "cuhk-pedes", "--root", str(root), "--out", str(out), "--strict"])
    assert code == 2
    assert "bad record" in capsys.readouterr().err
    report = json.loads((out / "validation_report.json").read_text())
    assert report["rejected"] == len(planted) and report["strict"] is True
    assert not (out / "manifest.json").exists()


def test_prepare_refuses_to_overwrite(raw_writer, tmp_path: Path, capsys) -> None:
    root, _ = raw_writer("rstpreid", identities=3, per_identity=2)
    args = ["prepare", "--format", "rstpreid", "--root", str(root), "--out", str(tmp_path / "o")]
    assert main(args) == 0
    assert main(args) == 2
    assert "already holds a dataset" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_prepare_from_and_to_s3(raw_writer, s3_bucket: str) -> None:
    import boto3

    root, records = raw_writer("icfg-pedes", identities=4, per_identity=2)
    s3 = boto3.client("s3")
    bucket = s3_bucket[len("s3://"):]
    for path in root.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"raw/{path.relative_to(root).as_posix()}")
    result = prepare_dataset("icfg-pedes", f"{s3_bucket}/raw", f"{s3_bucket}/prepared", val_identities=1)
    counts = result.manifest["counts"]
    assert sum(c["images"] for c in counts.values()) == len(records)
    assert counts["val"]["identities"] == 1
    rows = read_identity_rows(f"{s3_bucket}/prepared")
    assert sum(len(r["image_ids"]) for r in rows) == len(records)


def test_inspect_prints_counts_and_rejections(raw_writer, tmp_path: Path, capsys) -> None:
    root, _ = raw_writer("cuhk-pedes", identities=4, per_identity=3)
    planted = plant_bad_records(root)
    out = tmp_path / "inspected"
    assert main(["prepare", "--format", "cuhk-pedes", "--root", str(root), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["inspect", "--data", str(out), "--issues", "3"]) == 0
    text = capsys.readouterr().out
    assert f"rejected: {len(planted)} of {12 + len(planted)} records" in text
    assert text.count("record ") >= 3 and '"images": 6' in text
    assert main(["inspect", "--data", str(tmp_path / "nothing")]) == 2


def test_local_prepare_writes_what_ray_data_writes(raw_writer, tmp_path: Path) -> None:
    """The Ray-free pipeline on its thread executors (``reid prepare --local``): the same shards, manifest and
    report as on Ray Data, bad records too."""
    root, _ = raw_writer("cuhk-pedes", identities=70, per_identity=2, splits=("train", "val", "test"))
    plant_bad_records(root)
    on_ray = prepare_dataset("cuhk-pedes", str(root), str(tmp_path / "ray"))
    local = prepare.prepare_dataset("cuhk-pedes", str(root), str(tmp_path / "local"),
                                    load_images=prepare.load_on_threads, write_shards=prepare.write_in_process)
    assert local.report == on_ray.report
    assert {**local.manifest, "created": ""} == {**on_ray.manifest, "created": ""}  # content hash included
    shards = [sorted(p.relative_to(tmp_path / name).as_posix() for p in (tmp_path / name).rglob("*.parquet"))
              for name in ("ray", "local")]
    assert shards[0] == shards[1] and len(shards[0]) >= 3
    assert read_identity_rows(str(tmp_path / "local")) == read_identity_rows(str(tmp_path / "ray"))
