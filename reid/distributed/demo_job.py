"""The main job on embedded defaults: synthesise, prepare, stream one epoch of P x K batches, then describe ->
train (Ray Train + DeepSpeed) -> evaluate -> search, and summarise."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from reid.config import Config, dump_config
from reid.data.synth import generate
from reid.distributed import train_job
from reid.distributed.data_pipeline import iter_pk_batches, train_batches
from reid.distributed.describe_job import describe_dataset
from reid.distributed.prepare_job import prepare_dataset
from reid.distributed.runtime import ensure_ray
from reid.distributed.tracking import tracking_uri
from reid.distributed.train_job import PICTURES_DIR, TrainOutcome, run_uri
from reid.evaluation.search import SearchResult
from reid.evaluation.table import gallery_mode_lines, metrics_line
from reid.storage import exists, resolve, write_bytes

log = logging.getLogger(__name__)

DESCRIBERS = {
    "oracle": "oracle describer: ground-truth attributes with MLLM-like noise, standing in for an MLLM",
    "rules": "rule-based describer: captions split into identity and clothing parts; training only",
    "mllm": "MLLM describer",
}
SEARCH_TOP = 5


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
    training: DemoTraining | None = None  # when the demo trained


def run_demo(config: Config, workdir: str, identities: int = 60, images_per_identity: int = 6,
             train: bool = True) -> DemoSummary:
    """Synthesise a small dataset under ``workdir``, prepare it and stream one training epoch through Ray Data;
    with ``train``, then describe, train and evaluate (:func:`describe_train_evaluate`)."""
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
        summary.training = describe_train_evaluate(config, root.uri)
    return summary


@dataclass(frozen=True)
class DemoTraining:
    """What the trained part of the demo produced: descriptions, the run, test metrics, a search, where to look."""

    described: int
    describer: str
    outcome: TrainOutcome
    mlflow_uri: str
    pictures_uri: str | None
    seconds: dict[str, float]
    search: SearchResult | None = None
    search_command: str = ""
    gallery: str = ""

    def lines(self) -> list[str]:
        """A human-readable report: metrics of the best checkpoint on test, a search, and where everything is."""
        outcome = self.outcome
        lines = [f"  described {self.described} images ({DESCRIBERS.get(self.describer, self.describer)}, "
                 f"{self.seconds['describe']:.0f} s)",
                 f"  trained {self.seconds['train']:.0f} s; best epoch {_one_based(outcome.best_epoch)} on "
                 f"validation ({metrics_line(outcome.val_metrics)})",
                 *gallery_mode_lines(outcome.test_metrics, "  test (best checkpoint)"),
                 f"  best checkpoint: {self.outcome.best_uri}",
                 f"  MLflow: {self.mlflow_uri} (run {self.outcome.mlflow_run_id})"]
        if self.pictures_uri:
            lines.append(f"  pictures: {self.pictures_uri}")
        if self.search is not None:
            truth = "" if self.search.truth_pid is None else f" (a test caption of person {self.search.truth_pid})"
            lines += [f"  search (gallery of images alone): {self.search_command}",
                      f"    query{truth}: {self.search.query!r}"]
            for hit in self.search.hits:
                mark = "" if hit.correct is None else ("right" if hit.correct else "wrong")
                lines.append(f"    #{hit.rank}  score {hit.score:.3f}  person {hit.person_id:>4}  {mark:5}  "
                             f"{hit.image_id}")
            lines.append(f"    contact sheet: {self.search.sheet_uri}")
        if self.outcome.best_uri:
            index = self.outcome.run_uri.rsplit("/checkpoints/", 1)[0] + "/index"
            lines.append(f"  serve it: reid index --checkpoint {self.outcome.best_uri} --gallery {self.gallery} "
                         f"--no-descriptions --out {index} && reid serve --index {index}")
        return lines


def _one_based(epoch: int | None) -> str:
    return "none" if epoch is None else str(epoch + 1)


def describe_train_evaluate(config: Config, workdir_uri: str) -> DemoTraining:
    """Describe every image with ``describe.backend`` (the demo's config: the oracle), train ``config`` afresh
    under ``workdir_uri`` (checkpoints in ``<workdir>/checkpoints``; MLflow from ``tracking.*``, whose default
    SQLite store goes to ``<workdir>/mlflow.db`` for a local workdir), score the best checkpoint on test and
    search the test gallery with its first caption.

    An earlier demo run of the same name is replaced, as the demo rebuilds its dataset each time.
    """
    workdir = resolve(workdir_uri, config.storage)
    config = replace(config, train=replace(config.train, storage_uri=f"{workdir.uri}/checkpoints"),
                     tracking=replace(config.tracking, runs_dir=config.tracking.runs_dir if workdir.is_remote
                                      else workdir.path))
    seconds: dict[str, Any] = {}
    start = time.perf_counter()
    summary = describe_dataset(config.data.uri, config.describe, config.storage)
    seconds["describe"] = time.perf_counter() - start
    run = resolve(run_uri(config), config.storage)
    if exists(run):
        log.info("replacing the earlier demo run at %s", run.uri)
        run.filesystem.delete_dir(run.path)
    start = time.perf_counter()
    outcome = train_job.train(config, console=True)
    seconds["train"] = time.perf_counter() - start
    pictures = resolve(f"{outcome.run_uri}/{PICTURES_DIR}", config.storage)
    described = int(summary.get("ok", 0)) + int(summary.get("skipped_finished", 0))
    search, command = None, ""
    if outcome.best_uri:
        search, command = demo_search(config, outcome.best_uri, workdir.join("search.png").uri)
    return DemoTraining(described, config.describe.backend, outcome, tracking_uri(config.tracking),
                        pictures.uri if exists(pictures) else None, seconds, search, command, config.data.uri)


def demo_search(config: Config, checkpoint_uri: str, sheet_uri: str) -> tuple[SearchResult, str]:
    """``reid search --no-descriptions`` with the first test caption on the test gallery (ranked by pixels, as a
    gallery nobody described is): its result and the command line."""
    from reid.evaluation.loading import load_encoder
    from reid.evaluation.search import search_gallery
    from reid.evaluation.split_reader import read_split_index

    split = config.data.test_split
    query = read_split_index(config.data.uri, split, config.storage).captions[0]
    encoder, ckpt_config = load_encoder(checkpoint_uri, "auto", config.data.eval_batch_size, config.storage)
    result = search_gallery(encoder, query, config.data.uri, split, ckpt_config.data.image_size,
                            checkpoint_id=checkpoint_uri, top=SEARCH_TOP, sheet_uri=sheet_uri,
                            batch_size=config.data.eval_batch_size, use_descriptions=False,
                            storage=config.storage, progress=False)
    command = (f"reid search --checkpoint {checkpoint_uri} --gallery {config.data.uri} --split {split} "
               f"--top {SEARCH_TOP} --no-descriptions --sheet {sheet_uri} \"{query}\"")
    return result, command
