"""The gallery index format: shards and manifest round trip, resume keys, refusal of another checkpoint; the
search API's request checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reid.evaluation.gallery_index import (
    IndexMismatchError,
    checkpoint_identity,
    finished_shards,
    index_key,
    read_index,
    write_manifest,
    write_shard,
)


def _identity(checkpoint: Path) -> dict:
    return {**checkpoint_identity(str(checkpoint)), "gallery": "g", "split": "test", "gallery_fingerprint": "f",
            "use_descriptions": True, "thumb_size": [8, 4]}


def test_an_index_round_trips_and_knows_its_checkpoint(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    identity = _identity(checkpoint)
    key = index_key(identity)
    rng = np.random.default_rng(0)
    rows = [[{"image_id": f"s{s}/{i}", "person_id": i % 3, "embedding": rng.standard_normal(4).tolist(),
              "thumbnail": b"\xff\xd8jpeg", "description": None if i else "A tall man."} for i in range(5)]
            for s in range(2)]
    for s, shard in enumerate(rows):
        write_shard(str(tmp_path / "index"), f"test/part-{s:05d}", shard, 4, key)
    assert finished_shards(str(tmp_path / "index"), key) == {"test/part-00000", "test/part-00001"}
    assert finished_shards(str(tmp_path / "index"), "another key") == set()
    with pytest.raises(FileNotFoundError, match="no gallery index"):
        read_index(str(tmp_path / "index"))  # no manifest yet: a partial index is not served
    write_manifest(str(tmp_path / "index"), identity, ["test/part-00000", "test/part-00001"], 10, 4)
    index = read_index(str(tmp_path / "index"))
    assert index.image_ids == [r["image_id"] for shard in rows for r in shard] and index.embeddings.shape == (10, 4)
    np.testing.assert_allclose(index.embeddings[6], rows[1][1]["embedding"], rtol=1e-6)
    assert index.descriptions[0] == "A tall man." and index.thumbnails["s1/4"] == b"\xff\xd8jpeg"
    index.check_checkpoint(str(checkpoint))
    (checkpoint / "model.safetensors").write_bytes(b"other weights")  # the same URI, rewritten
    with pytest.raises(IndexMismatchError, match="was built with checkpoint"):
        index.check_checkpoint(str(checkpoint))


@pytest.mark.parametrize("body,reason", [
    (b'{"text": ""}', "'text' must be a non-empty string"), (b"{oops", "the body must be JSON"),
    (b'{"text": "x", "top": true}', "'top' must be an integer"), (b'{"text": "x", "top": 5000}', "from 1 to 1000"),
    (b'"just text"', "must be a JSON object"),
])
def test_search_requests_are_checked(body: bytes, reason: str) -> None:
    from reid.distributed.serve_app import parse_query

    response = parse_query(body)
    assert response.status_code == 400 and reason in response.body.decode()


def test_a_good_search_request_parses() -> None:
    from reid.distributed.serve_app import parse_query

    assert parse_query(b'{"text": "a man in red"}') == ("a man in red", 10)
    assert parse_query(b'{"text": "a", "top": 1000}') == ("a", 1000)
