"""The describe stage on Ray Data: pending image records -> DescribeWorker actors -> appended part files."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import ray

from reid.describe.config import DescribeConfig
from reid.describe.factory import build_describer
from reid.describe.inputs import IDENTITY_COLUMNS, identity_shards, record_columns
from reid.describe.mllm import read_api_key
from reid.describe.style_store import load_style_book
from reid.describe.summary import new_run_id, summarise, write_reports
from reid.describe.table import finished_image_ids
from reid.describe.worker import RESULT_COLUMNS, DescribeWorker
from reid.distributed.runtime import NO_RESTARTS, ensure_ray, remote_args_allowed
from reid.storage import resolve
from reid.storage.config import StorageConfig

log = logging.getLogger(__name__)
ACTOR_CPUS = 0.25
"""Describing waits on the network; a quarter CPU per actor lets them share small machines."""


class _PendingRecords:
    """``flat_map`` callable: an identity row -> its image records that are not finished yet."""

    def __init__(self, columns: tuple[str, ...], finished: frozenset[str]) -> None:
        self.columns, self.finished = columns, finished

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        lists = [row[IDENTITY_COLUMNS[k]] for k in self.columns]
        records = [dict(zip(self.columns, values, strict=True)) for values in zip(*lists, strict=True)]
        return [r for r in records if r["image_id"] not in self.finished]


def describe_dataset(uri: str, cfg: DescribeConfig, storage: StorageConfig | None = None,
                     limit: int | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Describe every unfinished image of ``cfg.splits`` with ``cfg.actors`` actors x threads; return the summary.

    Requests in flight are bounded by ``cfg.concurrency``: each actor owns concurrency / actors threads,
    shared by the (at most two) batches it works on at once. Each
    batch is appended as one part file by its actor, so a killed job keeps every finished batch and a
    re-run asks only for the rest. ``limit`` caps the images asked in this run.
    """
    started, run_id = time.perf_counter(), new_run_id()
    ensure_ray(num_cpus)
    api_key = read_api_key(cfg.api_key_env) if cfg.backend == "mllm" else None
    describer = build_describer(cfg, api_key)
    finished = finished_image_ids(uri, describer.provenance, describer.model, describer.prompt_version, storage)
    columns = record_columns(cfg.backend)
    loc = resolve(uri, storage)
    shards = identity_shards(uri, cfg.splits, storage)
    ds = ray.data.read_parquet(shards, filesystem=loc.filesystem).select_columns([IDENTITY_COLUMNS[c] for c in columns])
    ds = ds.flat_map(_PendingRecords(columns, frozenset(finished)))
    if limit is not None:
        ds = ds.limit(limit)
    # one batch per block (streaming, no barrier), so every actor gets work even from one shard
    ds = ds.repartition(target_num_rows_per_block=cfg.batch_size)
    threads = math.ceil(cfg.concurrency / cfg.actors)
    with remote_args_allowed():
        ds = _describe_batches(ds, uri, cfg, storage, threads, api_key)
    results: dict[str, list[Any]] = {name: [] for name in RESULT_COLUMNS}
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for name in RESULT_COLUMNS:
            results[name].extend(batch[name].tolist())
        log.info("described %d images", len(results["image_id"]))
    summary = summarise(results, run_id=run_id, describer=describer, skipped=len(finished),
                        wall_s=time.perf_counter() - started, concurrency=cfg.concurrency)
    summary["report"] = write_reports(uri, summary, storage)
    return summary


def _describe_batches(ds: Any, uri: str, cfg: DescribeConfig, storage: StorageConfig | None, threads: int,
                      api_key: str | None) -> Any:
    """The actor-pool stage: :class:`DescribeWorker` over batches of ``cfg.batch_size`` records."""
    return ds.map_batches(
        DescribeWorker,
        fn_constructor_kwargs={"uri": uri, "cfg": cfg, "style_book": load_style_book(uri, storage),
                               "threads": threads, "storage": storage, "api_key": api_key},
        batch_size=cfg.batch_size, num_cpus=ACTOR_CPUS, batch_format="numpy",
        **NO_RESTARTS,  # a lost actor fails the job; a rerun asks only for the images not yet written
        # two batches at a time per actor share its thread pool: the tail of one overlaps the next's start
        compute=ray.data.ActorPoolStrategy(size=cfg.actors, max_concurrent_calls_per_actor=2,
                                           enable_true_multi_threading=True, max_tasks_in_flight_per_actor=3),
    )
