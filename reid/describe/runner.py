"""Run the describe stage in one process (threads, no Ray): resumable, appends one part file per batch."""

from __future__ import annotations

import logging
import time
from typing import Any

from tqdm import tqdm

from reid.describe.config import DescribeConfig
from reid.describe.factory import Describer, build_describer
from reid.describe.inputs import iter_image_records, pending, record_columns
from reid.describe.style_store import load_style_book
from reid.describe.summary import new_run_id, summarise, write_reports
from reid.describe.table import finished_image_ids
from reid.describe.worker import DescribeWorker, result_columns
from reid.storage.config import StorageConfig

log = logging.getLogger(__name__)


def describe_dataset_local(uri: str, cfg: DescribeConfig, storage: StorageConfig | None = None,
                           limit: int | None = None, describer: Describer | None = None) -> dict[str, Any]:
    """Describe every image of ``cfg.splits`` that this describer has not finished; return the run summary.

    ``cfg.concurrency`` requests are in flight (threads) all the time; every ``cfg.batch_size`` finished
    images are appended as one part file. ``limit`` caps the number of images asked this run.
    """
    started, run_id = time.perf_counter(), new_run_id()
    describer = describer if describer is not None else build_describer(cfg)
    finished = finished_image_ids(uri, describer.provenance, describer.model, describer.prompt_version, storage)
    worker = DescribeWorker(uri, cfg, load_style_book(uri, storage), cfg.concurrency, storage, describer)
    todo = pending(iter_image_records(uri, cfg.splits, storage, record_columns(cfg.backend)), finished, limit)
    done = []
    with tqdm(desc="describe", unit="img", disable=None) as bar:  # drawn on a terminal only
        for result in worker.stream(todo, cfg.batch_size):
            done.append(result)
            bar.update(1)
            if len(done) % cfg.batch_size == 0:
                log.info("described %d images", len(done))
    worker.pool.shutdown()
    results = result_columns(done)
    summary = summarise(results, run_id=run_id, describer=describer, skipped=len(finished),
                        wall_s=time.perf_counter() - started, concurrency=cfg.concurrency)
    summary["report"] = write_reports(uri, summary, storage)
    return summary
