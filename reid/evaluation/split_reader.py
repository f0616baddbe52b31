"""Read one split of a prepared dataset for evaluation: an index of ids and captions, and streamed images.

Gallery = every image of the split once; queries = every caption once; both in a fixed order (shard
files sorted by name, identity rows in file order, images and captions in stored order). Images are
streamed in batches, never all held at once.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import torch

from reid.data.records import IDENTITY_SCHEMA, explode_identity
from reid.data.transforms import ImageDecodeError, eval_transform
from reid.storage import Location, list_files, resolve
from reid.storage.config import StorageConfig

logger = logging.getLogger(__name__)

IDENTITIES_DIR = "identities"


@dataclass(frozen=True)
class SplitIndex:
    """Ids and captions of a split without image bytes. ``caption_images[i]`` is the gallery index of the
    image that caption ``i`` describes."""

    image_ids: list[str]  # [Ng]
    person_ids: np.ndarray  # [Ng] int64
    captions: list[str]  # [Nq]
    caption_pids: np.ndarray  # [Nq] int64
    caption_images: np.ndarray  # [Nq] int64
    clothes_ids: np.ndarray | None = None  # [Ng] int64 outfit of each image (-1: unknown)

    def caption_clothes(self) -> np.ndarray:
        """The outfit id of each caption's image ``[Nq]`` (what a clothes-changing protocol groups by)."""
        if self.clothes_ids is None:
            raise ValueError("this split index holds no outfit ids")
        return self.clothes_ids[self.caption_images]


@dataclass(frozen=True)
class GalleryBatch:
    """A batch of gallery images in split order."""

    image_ids: list[str]  # [B]
    person_ids: np.ndarray  # [B] int64
    images: torch.Tensor  # [B, 3, H, W] uint8


def split_shards(dataset_uri: str, split: str, storage: StorageConfig | None = None) -> list[Location]:
    """The identity shards of ``split``, sorted; raises ``FileNotFoundError`` when there are none."""
    loc = resolve(dataset_uri, storage).join(IDENTITIES_DIR, split)
    paths = list_files(loc, suffix=".parquet")
    if not paths:
        raise FileNotFoundError(f"no identity shards (*.parquet) for split '{split}' under {loc.uri}")
    return [Location(uri=p, filesystem=loc.filesystem, path=p) for p in paths]


def read_split_index(dataset_uri: str, split: str, storage: StorageConfig | None = None) -> SplitIndex:
    """Ids, person ids and captions of every image of ``split`` (reads no image bytes)."""
    image_ids: list[str] = []
    person_ids: list[int] = []
    captions: list[str] = []
    caption_pids: list[int] = []
    caption_images: list[int] = []
    clothes_ids: list[int] = []
    for shard in split_shards(dataset_uri, split, storage):
        table = _read(shard, ["person_id", "image_ids", "captions", "clothes_ids"])
        for row in table.to_pylist():
            clothes_ids.extend(row["clothes_ids"])
            for image_id, texts in zip(row["image_ids"], row["captions"], strict=True):
                for text in texts:
                    captions.append(text)
                    caption_pids.append(row["person_id"])
                    caption_images.append(len(image_ids))
                image_ids.append(image_id)
                person_ids.append(row["person_id"])
    _check_unique(image_ids, dataset_uri, split)
    return SplitIndex(
        image_ids, np.asarray(person_ids, dtype=np.int64), captions,
        np.asarray(caption_pids, dtype=np.int64), np.asarray(caption_images, dtype=np.int64),
        np.asarray(clothes_ids, dtype=np.int64),
    )


def read_split_attributes(dataset_uri: str, split: str, storage: StorageConfig | None = None) -> dict[str, str]:
    """``{image_id: attributes JSON}`` of ``split`` (the ground truth synthetic data carries; "" elsewhere)."""
    out: dict[str, str] = {}
    for shard in split_shards(dataset_uri, split, storage):
        table = _read(shard, ["image_ids", "attributes"])
        for ids, values in zip(table.column("image_ids").to_pylist(), table.column("attributes").to_pylist(),
                               strict=True):
            out.update(zip(ids, values, strict=True))
    return out


def iter_gallery_batches(
    dataset_uri: str,
    split: str,
    image_size: tuple[int, int],
    batch_size: int,
    storage: StorageConfig | None = None,
    rows_per_read: int = 16,
    workers: int = 1,
) -> Iterator[GalleryBatch]:
    """Decoded, resized gallery images of ``split`` in index order, ``batch_size`` at a time.

    At most ``rows_per_read`` identity rows plus one batch are in memory; ``workers`` threads decode.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pending: list[tuple[str, int, bytes]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for shard in split_shards(dataset_uri, split, storage):
            for record in _iter_records(shard, rows_per_read):
                pending.append((record["image_id"], record["person_id"], record["image"]))
                if len(pending) == batch_size:
                    yield _decode(pending, image_size, pool, shard.uri)
                    pending = []
        if pending:
            yield _decode(pending, image_size, pool, "the last shard")


def read_images(
    dataset_uri: str, split: str, image_ids: Collection[str], storage: StorageConfig | None = None
) -> dict[str, bytes]:
    """The encoded bytes of ``image_ids`` (stops reading once all are found); missing ids raise ``KeyError``."""
    wanted = set(image_ids)
    found: dict[str, bytes] = {}
    for shard in split_shards(dataset_uri, split, storage):
        table = _read(shard, ["image_ids", "images"])
        for ids, blobs in zip(table.column("image_ids").to_pylist(), table.column("images").to_pylist(),
                              strict=True):
            found.update((i, b) for i, b in zip(ids, blobs, strict=True) if i in wanted)
        if len(found) == len(wanted):
            break
    missing = sorted(wanted - set(found))
    if missing:
        raise KeyError(f"{len(missing)} image id(s) not in split '{split}' of {dataset_uri}: {missing[:3]}")
    return found


def _read(shard: Location, columns: list[str]):
    try:
        return pq.read_table(shard.path, filesystem=shard.filesystem, columns=columns)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read columns {columns} of identity shard {shard.uri}: {exc}") from exc


def _iter_records(shard: Location, rows_per_read: int) -> Iterator[dict]:
    with shard.filesystem.open_input_file(shard.path) as handle:
        parquet = pq.ParquetFile(handle)
        for batch in parquet.iter_batches(batch_size=rows_per_read, columns=list(IDENTITY_SCHEMA.names)):
            for row in batch.to_pylist():
                yield from explode_identity(row)


def _decode(pending: list[tuple[str, int, bytes]], size: tuple[int, int], pool: ThreadPoolExecutor,
            where: str) -> GalleryBatch:
    def one(item: tuple[str, int, bytes]) -> np.ndarray:
        try:
            return eval_transform(item[2], size)
        except ImageDecodeError as exc:
            raise ImageDecodeError(f"image '{item[0]}' in {where}: {exc}") from exc

    arrays = list(pool.map(one, pending))
    return GalleryBatch(
        [p[0] for p in pending], np.asarray([p[1] for p in pending], dtype=np.int64),
        torch.from_numpy(np.stack(arrays)),
    )


def _check_unique(image_ids: list[str], dataset_uri: str, split: str) -> None:
    if len(set(image_ids)) != len(image_ids):
        seen: set[str] = set()
        duplicate = next(i for i in image_ids if i in seen or seen.add(i))
        raise ValueError(f"image id '{duplicate}' appears twice in split '{split}' of {dataset_uri}")
