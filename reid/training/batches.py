"""Ray-free P x K batch streams: the in-memory source for one process, and the per-rank split of batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

import numpy as np
import pyarrow.parquet as pq

from reid.data.batching import PKBatchBuilder
from reid.data.config import DataConfig
from reid.data.tokenize import caption_tokenizer
from reid.storage import list_files, resolve
from reid.storage.config import StorageConfig

Batch = dict[str, np.ndarray]


class BatchSource(Protocol):
    """Yields this rank's P x K batches of one epoch (numpy, keys of :class:`PKBatchBuilder`)."""

    def batches(self, epoch: int) -> Iterable[Batch]: ...


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle and augmentation seed of an epoch (the same rule as the Ray Data pipeline)."""
    return seed * 100_003 + epoch


def shard_identities(uri: str, split: str, storage: StorageConfig | None = None) -> list[int]:
    """Identity rows per shard of ``split`` from the Parquet footers (reads no data pages)."""
    root = resolve(uri, storage).join("identities", split)
    files = list_files(root, ".parquet")
    if not files:
        raise FileNotFoundError(f"no '{split}' shards under {root.uri} (run `reid prepare` first)")
    return [pq.ParquetFile(f, filesystem=root.filesystem).metadata.num_rows for f in files]


def steps_per_pass(shards: list[int], p: int, world_size: int) -> int:
    """Optimiser steps of one pass over the training identities, per rank: ``floor(sum_s floor(n_s / P) / W)``.

    The Ray Data pipeline cuts groups of P inside each shard, so that sum is the batches of one pass.
    """
    steps = sum(n // p for n in shards) // world_size
    if steps < 1:
        raise ValueError(f"training shards of {shards} identities give no full batch of P={p} for each of "
                         f"{world_size} workers; lower data.batch.p or train.workers")
    return steps


def steps_per_epoch(shards: list[int], p: int, world_size: int, requested: int | None = None) -> int:
    """Optimiser steps per epoch and rank: ``requested`` (``train.steps_per_epoch``) or one pass.

    Raises when the shards give no full batch per rank. More steps than one pass continue with the
    next reshuffled passes (see :func:`epoch_passes`).
    """
    one_pass = steps_per_pass(shards, p, world_size)
    return int(requested) if requested else one_pass


def epoch_passes(epoch: int, steps: int, per_pass: int) -> range:
    """The pass indices (shuffle seeds) that feed ``epoch`` when an epoch is ``steps`` steps of passes of
    ``per_pass`` steps: ``ceil(steps / per_pass)`` consecutive passes, disjoint between epochs.

    One pass per epoch (``steps <= per_pass``) gives pass ``epoch``, the one-pass-per-epoch rule.
    """
    count = -(-steps // per_pass)
    return range(epoch * count, (epoch + 1) * count)


def take_steps(batches: Iterable[Batch], steps: int, rank: int = 0) -> Iterator[Batch]:
    """The first ``steps`` non-empty batches of this rank's stream; fewer is an error (ranks must agree)."""
    taken = 0
    for batch in batches:
        if not batch or len(batch.get("pids", ())) == 0:
            continue
        yield batch
        taken += 1
        if taken == steps:
            return
    raise RuntimeError(f"rank {rank}: the epoch gave {taken} batches, {steps} expected")


def is_rank_batch(index: int, rank: int, world_size: int) -> bool:
    """Whether batch ``index`` of the whole stream belongs to ``rank``: ranks take every ``world_size``-th."""
    return index % world_size == rank


class InMemoryBatches:
    """The training split held in memory; each pass shuffles identities by ``(seed, pass)`` and cuts
    groups of P, each turned into one P x K batch by :class:`PKBatchBuilder` (as the Ray Data pipeline).

    An epoch is ``steps`` batches per rank (default: one pass); longer epochs chain the passes of
    :func:`epoch_passes`.
    """

    def __init__(self, cfg: DataConfig, seed: int, descriptions: Mapping[str, Mapping[str, Any]] | None = None,
                 storage: StorageConfig | None = None, split: str = "train", rank: int = 0, world_size: int = 1,
                 steps: int | None = None, parts: bool = False) -> None:
        root = resolve(cfg.uri, storage).join("identities", split)
        files = list_files(root, ".parquet")
        if not files:
            raise FileNotFoundError(f"no '{split}' shards under {root.uri} (run `reid prepare` first)")
        columns = ["person_id", "image_ids", "images", "captions", *(["part_labels"] if parts else [])]
        self.phrase_tokenizer = caption_tokenizer(cfg.tokenizer, cfg.part_phrase_length) if parts else None
        tables = [pq.read_table(f, filesystem=root.filesystem, columns=columns) for f in files]
        self.rows = [row for table in tables for row in table.to_pylist()]
        self.cfg, self.seed, self.descriptions = cfg, seed, dict(descriptions or {})
        self.rank, self.world_size = rank, world_size
        shards = [t.num_rows for t in tables]
        self.per_pass = steps_per_pass(shards, cfg.batch.p, world_size)
        self.steps = steps_per_epoch(shards, cfg.batch.p, world_size, steps)

    def batches(self, epoch: int) -> Iterator[Batch]:
        """This rank's ``steps`` batches of ``epoch``: every ``world_size``-th batch of the passes, the others
        never built."""
        return take_steps(self._rank_batches(epoch_passes(epoch, self.steps, self.per_pass)), self.steps, self.rank)

    def _rank_batches(self, passes: range) -> Iterator[Batch]:
        index = 0
        for pass_index in passes:
            seed = epoch_seed(self.seed, pass_index)
            order = np.random.default_rng(seed).permutation(len(self.rows))
            p = self.cfg.batch.p
            builder = PKBatchBuilder(p, self.cfg.batch.k, tuple(self.cfg.image_size), self.cfg.augment,
                                     self.cfg.tokenizer, self.cfg.max_text_length, self.descriptions, seed,
                                     self.phrase_tokenizer)
            for start in range(0, len(order) - p + 1, p):
                if is_rank_batch(index, self.rank, self.world_size):
                    yield builder(self._block(order[start:start + p]))
                index += 1

    def _block(self, group: np.ndarray) -> dict[str, np.ndarray]:
        rows = [self.rows[i] for i in group]
        keys = ("image_ids", "images", "captions", *(("part_labels",) if self.phrase_tokenizer is not None else ()))
        block = {key: np.empty(len(rows), dtype=object) for key in keys}
        for i, row in enumerate(rows):
            for key in block:
                block[key][i] = row[key]
        block["person_id"] = np.asarray([row["person_id"] for row in rows], dtype=np.int64)
        return block
