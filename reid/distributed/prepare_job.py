"""``reid prepare`` on Ray Data: the executors :func:`reid.data.prepare.prepare_dataset` loads images and writes
shards with when it runs on a cluster."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ray
from ray.data.context import ShuffleStrategy
from ray.data.expressions import col

from reid.data import prepare
from reid.data.prepare import CHECK_COLUMNS, LOAD_BATCH, LoadImages, PrepareResult, ShardOf, WriteShard
from reid.distributed.runtime import ensure_ray
from reid.storage.config import StorageConfig


@dataclass(frozen=True)
class LoadedOnRay:
    """The loaded images, materialised in Ray's object store; iterating yields the report's columns."""

    dataset: ray.data.Dataset

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.dataset.select_columns(list(CHECK_COLUMNS)).iter_rows())


def load_on_ray_data(items: list[dict[str, Any]], load: LoadImages) -> LoadedOnRay:
    """:class:`LoadImages` as a Ray Data map over blocks of about 200 items (at most 64 blocks)."""
    ensure_ray()
    blocks = max(1, min(64, len(items) // 200))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    return LoadedOnRay(ds.map_batches(load, batch_size=LOAD_BATCH, batch_format="numpy").materialize())


def write_on_ray_data(loaded: LoadedOnRay, shard_of: ShardOf, write: WriteShard) -> list[dict[str, Any]]:
    """The images that decoded, grouped by shard key, each group written by ``write`` in a Ray task."""
    good = loaded.dataset.filter(expr=col("reason") == "").add_column("shard", shard_of, batch_format="numpy")
    # The sort-based shuffle: Ray 2.60's default hash shuffle (aggregator actors) was seen to abort with a
    # corrupt-mutex SIGABRT in HashShuffleMap workers on this kind of machine (Ray retried the task).
    good.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    return good.groupby("shard").map_groups(write, batch_format="numpy").take_all()


def prepare_dataset(
    fmt: str,
    root_uri: str,
    out_uri: str,
    strict: bool = False,
    overwrite: bool = False,
    val_identities: int = 0,
    seed: int = 0,
    identities_per_shard: int = 64,
    annotation: str | None = None,
    image_dir: str | None = None,
    storage: StorageConfig | None = None,
    local: bool = False,
    part_masks: str = "auto",
) -> PrepareResult:
    """:func:`reid.data.prepare.prepare_dataset` on Ray Data, or with ``local`` on threads in this process (no
    Ray); both write the same shards, report and manifest."""
    executors = {} if local else {"load_images": load_on_ray_data, "write_shards": write_on_ray_data}
    return prepare.prepare_dataset(
        fmt, root_uri, out_uri, strict=strict, overwrite=overwrite, val_identities=val_identities, seed=seed,
        identities_per_shard=identities_per_shard, annotation=annotation, image_dir=image_dir, storage=storage,
        part_masks=part_masks, **executors,
    )
