"""The descriptions schema and the append-only table: last valid row wins, resume keys, clear errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reid.describe.schema import DESCRIPTION_SCHEMA, Description, descriptions_table
from reid.describe.table import (
    append_descriptions,
    finished_image_ids,
    load_descriptions,
    read_descriptions_table,
)


def row(image_id: str, text: str, quarantined: bool = False, provenance: str = "mllm", version: str = "v1"):
    return Description(image_id=image_id, identity=f"{text} man", clothing=f"{text} coat", provenance=provenance,
                       model="m", prompt_version=version, parts={"hat": "a cap"}, quarantined=quarantined,
                       reason="bad" if quarantined else "")


def test_row_round_trip_and_schema() -> None:
    original = row("a.jpg", "tall")
    table = descriptions_table([original])
    assert table.schema == DESCRIPTION_SCHEMA
    assert table.column("parts").to_pylist() == ['{"hat": "a cap"}']
    assert Description.from_row(table.to_pylist()[0]) == original


def test_bad_provenance_or_part_names_the_image() -> None:
    with pytest.raises(ValueError, match="image 'x.jpg': provenance"):
        Description("x.jpg", "a", "b", provenance="captions")
    with pytest.raises(ValueError, match="image 'x.jpg': unknown part 'scarf'"):
        Description("x.jpg", "a", "b", provenance="rules", parts={"scarf": "red"})


def test_last_valid_row_wins_and_quarantined_only_images_are_left_out(tmp_path) -> None:
    uri = str(tmp_path)
    assert load_descriptions(uri) == {} and read_descriptions_table(uri).num_rows == 0
    append_descriptions(uri, [row("a", "old"), row("b", "bad", quarantined=True)])
    append_descriptions(uri, [row("a", "new"), row("c", "first")])
    append_descriptions(uri, [row("c", "worse", quarantined=True)])
    assert append_descriptions(uri, []) is None
    loaded = load_descriptions(uri)
    assert sorted(loaded) == ["a", "c"]
    assert (loaded["a"]["identity"], loaded["c"]["identity"]) == ("new man", "first man")
    assert loaded["a"]["parts"] == {"hat": "a cap"}
    assert load_descriptions(uri, include_quarantined=True)["b"]["quarantined"] is True
    assert read_descriptions_table(uri).num_rows == 5


def test_finished_images_are_keyed_by_describer_and_prompt_version(tmp_path) -> None:
    uri = str(tmp_path)
    append_descriptions(uri, [row("a", "x"), row("b", "x", quarantined=True), row("c", "x", provenance="rules"),
                              row("d", "x", version="v0")])
    assert finished_image_ids(uri, "mllm", "m", "v1") == {"a", "b"}
    assert finished_image_ids(uri, "rules", "m", "v1") == {"c"}


def test_unreadable_or_incomplete_part_is_named(tmp_path) -> None:
    parts = tmp_path / "descriptions"
    parts.mkdir()
    (parts / "part-1.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="part-1.parquet' is not a readable Parquet file"):
        read_descriptions_table(str(tmp_path))
    (parts / "part-1.parquet").unlink()
    pq.write_table(pa.table({"image_id": ["a"]}), parts / "part-2.parquet")
    with pytest.raises(ValueError, match=r"part-2.parquet' lacks column\(s\) \['identity'"):
        read_descriptions_table(str(tmp_path))
