"""Readers of the three official annotation formats: field names, ids, splits and rejections."""

from __future__ import annotations

import json

import pytest

from reid.data.formats import FormatError, parse_annotations, split_off_validation
from reid.data.identity_rows import assign_person_ids
from reid.data.validation import drop_duplicate_paths


@pytest.mark.parametrize("fmt", ["cuhk-pedes", "icfg-pedes", "rstpreid"])
def test_reader_accepts_its_format(raw_writer, fmt: str) -> None:
    root, records = raw_writer(fmt, identities=4, per_identity=2)
    annotation = next(p for p in root.iterdir() if p.suffix == ".json")
    result = parse_annotations(annotation.read_text(), fmt, str(annotation))
    assert not result.issues
    assert [r.image_path for r in result.records] == [r.get("file_path", r.get("img_path")) for r in records]
    assert {r.split for r in result.records} == {"train", "test"}
    assert result.records[0].captions == tuple(records[0]["captions"])


@pytest.mark.parametrize(("fmt", "other"), [("cuhk-pedes", "rstpreid"), ("rstpreid", "icfg-pedes")])
def test_reader_rejects_other_format_naming_expected_fields(raw_writer, fmt: str, other: str) -> None:
    root, _ = raw_writer(other)
    annotation = next(p for p in root.iterdir() if p.suffix == ".json")
    with pytest.raises(FormatError) as info:
        parse_annotations(annotation.read_text(), fmt, str(annotation))
    expected = "img_path" if fmt == "rstpreid" else "file_path"
    assert expected in str(info.value) and "captions" in str(info.value)


def test_reader_rejects_non_list_and_bad_json() -> None:
    with pytest.raises(FormatError, match="JSON list"):
        parse_annotations(json.dumps({"file_path": "a"}), "cuhk-pedes", "x.json")
    with pytest.raises(FormatError, match="not valid JSON"):
        parse_annotations("[{", "cuhk-pedes", "x.json")


def test_bad_records_are_reported_and_neighbours_kept() -> None:
    good = {"file_path": "a/1.jpg", "captions": ["a man"], "id": 1, "split": "train"}
    records = [
        good,
        {"file_path": "a/2.jpg", "captions": [""], "id": 1, "split": "train"},
        {"file_path": "a/3.jpg", "captions": [5], "id": 1, "split": "train"},
        {"file_path": "../../etc/passwd", "captions": ["x"], "id": 2, "split": "train"},
        {"file_path": "/abs.jpg", "captions": ["x"], "id": 2, "split": "train"},
        {"file_path": "a/4.jpg", "captions": ["x"], "id": 2, "split": "holdout"},
        {"file_path": "a/5.jpg", "id": 2, "split": "train"},
        "not a record",
        {**good, "captions": ["same path again"]},
        {"file_path": "a/6.jpg", "captions": "one caption as text", "id": 3, "split": "test"},
    ]
    result = parse_annotations(json.dumps(records), "cuhk-pedes", "x.json")
    kept, dups = drop_duplicate_paths(result.records)
    reasons = {i.index: i.reason for i in result.issues + dups}
    places = {i.index: i.where for i in result.issues}
    assert places[6] == "record 6 (a/5.jpg)"  # a record lacking a field is named by the image it carries
    assert [r.index for r in kept] == [0, 9]
    assert "empty caption" in reasons[1]
    assert "not text" in reasons[2]
    assert "escapes" in reasons[3] and "escapes" in reasons[4]
    assert "unknown split" in reasons[5]
    assert "missing field(s): captions" in reasons[6]
    assert "not an object" in reasons[7]
    assert "duplicate path (first at record 0)" in reasons[8]


def test_person_ids_are_remapped_per_split_in_order() -> None:
    records = [{"file_path": f"{i}.jpg", "captions": ["c"], "id": pid, "split": split}
               for i, (pid, split) in enumerate([(7, "train"), (3, "train"), (7, "train"), (9, "test"), (1, "test")])]
    result = parse_annotations(json.dumps(records), "cuhk-pedes", "x.json")
    assert assign_person_ids(result.records) == {"train": {"7": 0, "3": 1}, "test": {"9": 0, "1": 1}}


def test_split_off_validation_moves_whole_identities() -> None:
    records = [{"file_path": f"{i}.jpg", "captions": ["c"], "id": i // 2, "split": "train"} for i in range(20)]
    result = parse_annotations(json.dumps(records), "icfg-pedes", "x.json")
    moved = split_off_validation(result.records, 3, seed=0)
    val_ids = {r.source_id for r in moved if r.split == "val"}
    assert len(val_ids) == 3
    assert all(r.split == "val" for r in moved if r.source_id in val_ids)
    assert sum(r.split == "val" for r in moved) == 6
