"""The main job on embedded defaults: synthesise, prepare, stream one epoch of P x K batches, summarise."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from reid.config import Config, dump_config
from reid.data.synth import generate
from reid.distributed.data_pipeline import iter_pk_batches, train_batches
from reid.distributed.prepare_job import prepare_dataset
from reid.distributed.runtime import ensure_ray
from reid.storage import resolve, write_bytes

log = logging.getLogger(__name__)


@dataclass
class DemoSummary:
    """What the demo produced: where, how much, and how fast the loader streamed."""

    workdir: str
    dataset_uri: str
    counts: dict[str, Any]
    rejected: int
    batches: int = 0
    images: int = 0
    images_per_s: float = 0.0
    batch_shapes: dict[str, list[int]] = field(default_factory=dict)
    pk_ok: bool = False
    training: Any = None  # reid.distributed.demo_train.DemoTraining when the demo trained


def run_demo(config: Config, workdir: str, identities: int = 60, images_per_identity: int = 6,
             train: bool = True) -> DemoSummary:
    """Synthesise a small dataset under ``workdir``, prepare it and stream one training epoch through Ray Data;
    with ``train``, then describe (rules), train and evaluate (:mod:`reid.distributed.demo_train`)."""
    ensure_ray()
    root = resolve(workdir, config.storage)
    raw_uri, data_uri = root.join("raw").uri, config.data.uri
    write_bytes(root.join("config.yaml"), dump_config(config).encode())
    log.info("synthesising %d identities x %d images into %s", identities, images_per_identity, raw_uri)
    generate(raw_uri, identities, images_per_identity, config.seed, storage=config.storage)
    prepared = prepare_dataset("cuhk-pedes", raw_uri, data_uri, overwrite=True, seed=config.seed,
                               storage=config.storage)
    summary = DemoSummary(workdir=root.uri, dataset_uri=prepared.uri, counts=prepared.manifest["counts"],
                          rejected=prepared.report["rejected"])
    start = time.perf_counter()
    ok = True
    for batch in iter_pk_batches(train_batches(config.data, config.seed, 0, storage=config.storage), config.data):
        counts = Counter(batch["pids"].tolist())
        ok &= len(counts) == config.data.batch.p and set(counts.values()) == {config.data.batch.k}
        summary.batches += 1
        summary.images += len(batch["pids"])
        summary.batch_shapes = {k: list(v.shape) for k, v in batch.items()}
    summary.images_per_s = summary.images / max(time.perf_counter() - start, 1e-9)
    summary.pk_ok = ok and summary.batches > 0
    if train:
        from reid.distributed.demo_train import describe_train_evaluate

        summary.training = describe_train_evaluate(config, root.uri)
    return summary
