"""The Ray-free split reader: fixed order, streamed batches, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from reid.evaluation.split_reader import iter_gallery_batches, read_images, read_split_index


def test_index_lists_every_image_and_caption_once_in_order(dataset: Path) -> None:
    index = read_split_index(str(dataset), "test")
    assert index.image_ids == [f"test/p{p}_{v}" for p in range(4) for v in "abc"]
    np.testing.assert_array_equal(index.person_ids, np.repeat(np.arange(4), 3))
    assert len(index.captions) == 24
    assert index.captions[0] == "A person in a red shirt 0"
    np.testing.assert_array_equal(index.caption_images, np.repeat(np.arange(12), 2))
    np.testing.assert_array_equal(index.caption_pids, np.repeat(np.arange(4), 6))


def test_gallery_streams_in_index_order_with_a_short_last_batch(dataset: Path) -> None:
    batches = list(iter_gallery_batches(str(dataset), "test", (16, 8), batch_size=5, rows_per_read=1))
    assert [len(b.image_ids) for b in batches] == [5, 5, 2]
    assert sum((b.image_ids for b in batches), []) == read_split_index(str(dataset), "test").image_ids
    first = batches[0]
    assert first.images.shape == (5, 3, 16, 8) and str(first.images.dtype) == "torch.uint8"
    assert first.images[0, 0].min() == 255 and first.images[0, 1:].max() == 0  # p0_a is pure red
    np.testing.assert_array_equal(batches[2].person_ids, [3, 3])


def test_read_images_returns_requested_bytes_and_names_missing(dataset: Path) -> None:
    blobs = read_images(str(dataset), "test", ["test/p3_c", "test/p0_a"])
    assert set(blobs) == {"test/p3_c", "test/p0_a"} and blobs["test/p0_a"][:4] == b"\x89PNG"
    with pytest.raises(KeyError, match="nope"):
        read_images(str(dataset), "test", ["nope"])


def test_missing_split_and_duplicate_ids_are_clear_errors(tmp_path: Path, dataset_writer) -> None:
    root = dataset_writer(tmp_path / "d", shards=1)
    with pytest.raises(FileNotFoundError, match="split 'val'"):
        read_split_index(str(root), "val")
    shard = root / "identities" / "test" / "part-00000.parquet"
    shutil.copy(shard, shard.with_name("part-00001.parquet"))  # every image id now appears twice
    with pytest.raises(ValueError, match="appears twice"):
        read_split_index(str(root), "test")
