"""Ray Data streams of a prepared dataset: shuffled P x K training batches and ordered evaluation passes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray

from reid.data.batching import PKBatchBuilder
from reid.data.config import DataConfig
from reid.data.records import explode_identity
from reid.data.tokenize import caption_tokenizer
from reid.data.transforms import eval_transform
from reid.storage import list_files, resolve
from reid.storage.config import StorageConfig


class DatasetNotFoundError(FileNotFoundError):
    """The URI holds no shards for the requested split."""


def identity_shards(uri: str, split: str, storage: StorageConfig | None = None) -> tuple[list[str], pafs.FileSystem]:
    """The Parquet files of ``split`` under a prepared dataset and their filesystem."""
    root = resolve(uri, storage)
    files = list_files(root.join("identities", split), ".parquet")
    if not files:
        raise DatasetNotFoundError(f"no '{split}' shards under {root.uri}/identities (run `reid prepare` first)")
    return files, root.filesystem


TRAIN_COLUMNS = ["person_id", "image_ids", "images", "captions"]
PART_COLUMNS = [*TRAIN_COLUMNS, "part_labels"]


def epoch_file_order(files: Sequence[str], seed: int, epoch: int) -> list[str]:
    """The shard visiting order of one epoch: a permutation drawn from ``(seed, epoch)``."""
    order = np.random.default_rng([seed, epoch]).permutation(len(files))
    return [files[i] for i in order]


def build_pk_batches_from_shards(
    items: dict[str, np.ndarray], filesystem: pafs.FileSystem, seed: int, rank: int = 0, world_size: int = 1,
    **builder_kwargs: Any,
) -> Iterator[dict[str, np.ndarray]]:
    """Ray Data task: read each listed shard and yield its shuffled P x K batches, tagged with their epoch.

    ``items["first"]`` is the stream-wide index of the shard's first batch: only batches whose index is
    ``rank`` modulo ``world_size`` are built (a shard holding none is not even read), so each rank decodes its
    own batches only. The tokenizer arrives as a :class:`CaptionTokenizer` (no transformers import in loader
    processes) and is rebuilt once per worker process, so tasks stay cheap.
    """
    firsts = items["first"] if "first" in items else np.zeros(len(items["path"]), dtype=np.int64)
    counts = items["count"] if "count" in items else np.full(len(items["path"]), world_size, dtype=np.int64)
    for path, epoch, first, count in zip(items["path"], items["epoch"], firsts, counts, strict=True):
        first, count = int(first), int(count)
        if not any((first + g) % world_size == rank for g in range(min(count, world_size))):
            continue
        names = PART_COLUMNS if builder_kwargs.get("phrase_tokenizer") is not None else TRAIN_COLUMNS
        rows = pq.read_table(str(path), filesystem=filesystem, columns=names).to_pydict()
        columns = {key: np.asarray(rows[key], dtype=object) for key in names if key != "person_id"}
        columns["person_id"] = np.asarray(rows["person_id"], dtype=np.int64)
        builder = PKBatchBuilder(seed=seed * 100_003 + int(epoch), **builder_kwargs)
        for batch in builder.batches(columns, keep=lambda g, f=first: (f + g) % world_size == rank):
            yield {**batch, "epoch": np.full(len(batch["pids"]), int(epoch), dtype=np.int64)}


def pk_builder_kwargs(cfg: DataConfig, descriptions: Mapping[str, Mapping[str, Any]] | None = None,
                      parts: bool = False) -> dict[str, Any]:
    """The :class:`PKBatchBuilder` arguments of ``cfg`` (seed aside); ``parts`` adds part regions and phrases."""
    return {
        "p": cfg.batch.p, "k": cfg.batch.k, "image_size": tuple(cfg.image_size), "augment": cfg.augment,
        "tokenizer": caption_tokenizer(cfg.tokenizer, cfg.max_text_length), "max_length": cfg.max_text_length,
        "descriptions": dict(descriptions or {}),
        "phrase_tokenizer": caption_tokenizer(cfg.tokenizer, cfg.part_phrase_length) if parts else None,
    }


def train_stream(
    cfg: DataConfig, seed: int, epochs: Sequence[int], descriptions: Mapping[str, Mapping[str, Any]] | None = None,
    storage: StorageConfig | None = None, split: str = "train", rank: int = 0, world_size: int = 1,
    parts: bool = False,
) -> ray.data.Dataset:
    """Identity-balanced batches for several epochs in one Ray Data execution (start-up paid once).

    Epoch ``e`` visits the shards in an order drawn from ``(seed, e)`` and shuffles each shard's identities
    again before cutting them into groups of P (a shard's last ``n % P`` identities wait for another epoch), so no
    global shuffle is needed. Every row carries its ``epoch``; rows come in epoch order. Read with
    :func:`iter_pk_batches`, which yields exactly P x K rows per batch.

    With ``world_size > 1`` the stream holds rank ``rank``'s share only: the batches whose index in the whole
    stream is ``rank`` modulo ``world_size`` (the others are never decoded), so ranks split one epoch.
    ``parts`` adds part regions and phrases to every batch (local alignment, :class:`PKBatchBuilder`).
    """
    files, fs = identity_shards(cfg.uri, split, storage)
    groups = dict(zip(files, shard_groups(files, fs, cfg.batch.p), strict=True))
    items, first = [], 0
    for epoch in epochs:
        for path in epoch_file_order(files, seed, epoch):
            items.append({"path": path, "epoch": int(epoch), "first": first, "count": groups[path]})
            first += groups[path]
    per_task = items_per_task([item["count"] for item in items], cfg.loader_batches_per_task, world_size)
    ds = ray.data.from_items(items, override_num_blocks=-(-len(items) // per_task))
    ds.context.execution_options.preserve_order = True
    return ds.map_batches(build_pk_batches_from_shards, batch_size=per_task, batch_format="numpy",
                          fn_kwargs={"filesystem": fs, "seed": seed, "rank": rank, "world_size": world_size,
                                     **pk_builder_kwargs(cfg, descriptions, parts)}, num_cpus=cfg.loader_cpus)


def items_per_task(counts: Sequence[int], batches_per_task: int, world_size: int = 1) -> int:
    """Shard visits per loader task so that a task builds about ``batches_per_task`` batches of one rank:
    ``ceil(batches_per_task * world_size / mean(counts))``, at least 1 and at most ``len(counts)``."""
    if not counts:
        return 1
    mean = max(sum(counts) / len(counts), 1e-9)
    return max(1, min(len(counts), int(np.ceil(batches_per_task * world_size / mean))))


def shard_groups(files: Sequence[str], filesystem: pafs.FileSystem, p: int) -> list[int]:
    """P x K batches each shard gives per pass, ``floor(identities / P)``, from the Parquet footers."""
    return [pq.ParquetFile(f, filesystem=filesystem).metadata.num_rows // p for f in files]


def train_batches(
    cfg: DataConfig, seed: int, epoch: int, descriptions: Mapping[str, Mapping[str, Any]] | None = None,
    storage: StorageConfig | None = None, split: str = "train",
) -> ray.data.Dataset:
    """One epoch of identity-balanced batches: :func:`train_stream` for the single epoch ``epoch``."""
    return train_stream(cfg, seed, [epoch], descriptions, storage, split)


def iter_pk_batches(
    source: ray.data.Dataset | ray.data.DataIterator, cfg: DataConfig
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of exactly P x K rows from :func:`train_batches` (or a ``streaming_split`` shard of it)."""
    size = cfg.batch.p * cfg.batch.k
    yield from source.iter_batches(batch_size=size, batch_format="numpy", drop_last=True)


def _explode(row: dict[str, Any]) -> list[dict[str, Any]]:
    images = []
    for record in explode_identity(row):
        record["captions"] = list(record["captions"])
        images.append(record)
    return images


def eval_images(cfg: DataConfig, split: str, storage: StorageConfig | None = None) -> ray.data.Dataset:
    """Every image of ``split`` once, in a fixed order (person id, then stored order), decoded and resized.

    Rows: ``image_id``, ``person_id``, ``image`` uint8 [3, H, W], ``clothes_id``.
    """
    files, fs = identity_shards(cfg.uri, split, storage)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    size = tuple(cfg.image_size)

    def decode(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = np.stack([eval_transform(bytes(b), size) for b in batch["image"]])
        return {"image_id": batch["image_id"], "person_id": batch["person_id"], "image": images,
                "clothes_id": batch["clothes_id"]}

    ds = ray.data.read_parquet(files, filesystem=fs)  # shard files in name order hold ascending person ids
    return ds.flat_map(_explode).map_batches(decode, batch_size=cfg.eval_batch_size, batch_format="numpy")


def eval_captions(cfg: DataConfig, split: str, storage: StorageConfig | None = None) -> ray.data.Dataset:
    """Every caption of ``split`` once, in the same fixed order: ``caption``, ``person_id``, ``image_id``."""
    files, fs = identity_shards(cfg.uri, split, storage)
    ray.data.DataContext.get_current().execution_options.preserve_order = True

    def captions(row: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"caption": c, "person_id": row["person_id"], "image_id": image_id}
                for image_id, texts in zip(row["image_ids"], row["captions"], strict=True) for c in texts]

    columns = ["person_id", "image_ids", "captions"]
    return ray.data.read_parquet(files, filesystem=fs, columns=columns).flat_map(captions)
