"""Ray Train (TorchTrainer, Train V2) around the Ray-free loop: workers, DeepSpeed, storage, MLflow, seeds."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import ray
import ray.train
import torch
import yaml
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from reid.config import Config, dump_config
from reid.config.typecheck import build_dataclass
from reid.distributed.checkpoint_restore import staged_checkpoint
from reid.distributed.data_pipeline import iter_pk_batches, train_stream
from reid.distributed.group_starts import STARTS_DIR, clear_starts, record_start
from reid.distributed.nodes import check_driver_paths, gather_placement, placement_line, placement_tags
from reid.distributed.portable_config import portable_config
from reid.distributed.progress import QueueProgress, run_with_progress
from reid.distributed.restarts import FailureEvents, RestartWatch
from reid.distributed.runtime import ensure_ray
from reid.distributed.tracking import RunTracker, check_cluster_tracking_store, tracking_uri
from reid.storage import (
    Location,
    adopt_s3_filesystem,
    exists,
    list_files,
    read_bytes,
    read_json,
    resolve,
    s3_filesystem,
    write_bytes,
    write_json,
)
from reid.training.batches import (
    InMemoryBatches,
    epoch_passes,
    shard_identities,
    steps_per_epoch,
    steps_per_pass,
    take_steps,
)
from reid.training.loop import train_loop
from reid.training.setup import (
    batch_and_lr_line,
    build_parts,
    check_part_regions,
    load_training_descriptions,
    warn_if_image_only,
)

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
PICTURES_DIR = "pictures"
TRACKING_FILE = "mlflow_run.json"


class RunExistsError(RuntimeError):
    """A fresh run was asked for where a run with checkpoints already exists (use ``--resume``), or a resume
    found no run of that name."""


@dataclass(frozen=True)
class TrainOutcome:
    """The driver's view of a finished run: metrics in percent, where the best checkpoint is, the MLflow run."""

    run_uri: str
    best_uri: str | None
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    best_epoch: int | None
    mlflow_run_id: str | None
    finished: bool
    placement: tuple[tuple[str, str], ...] = ()  # (node id, IP address) of each rank, as the last worker group ran
    mlflow_uri: str | None = None


class RayTrainContext:
    """:class:`reid.training.context.TrainContext` on a Ray Train worker."""

    def __init__(self) -> None:
        ctx = ray.train.get_context()
        self.world_rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.local_rank = ctx.get_local_rank()
        self.device = ray.train.torch.get_device()

    @contextlib.contextmanager
    def restored_checkpoint(self) -> Iterator[str | None]:
        """Ray Train's checkpoint to resume from, downloaded once per node and read by every local rank
        (:func:`reid.distributed.checkpoint_restore.staged_checkpoint`)."""
        with staged_checkpoint(ray.train.get_checkpoint(), self.local_rank, self._barrier) as directory:
            yield directory

    def _barrier(self) -> None:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()) or self.world_size < 2:
            return
        if self.device.type == "cuda":  # NCCL's barrier runs on the rank's own device
            torch.distributed.barrier(device_ids=[self.device.index or 0])
        else:
            torch.distributed.barrier()

    def report(self, metrics: Mapping[str, Any], checkpoint_dir: str | None) -> None:
        checkpoint = Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(dict(metrics), checkpoint=checkpoint)

    def should_stop(self) -> bool:
        return False


class RayDataBatches:
    """This rank's share of the Ray Data pipeline's P x K batches (every world_size-th, in order; the
    pipeline builds no other rank's batches).

    An epoch of ``steps`` steps streams the passes of :func:`epoch_passes` (one Ray Data execution).
    """

    def __init__(self, config: Config, descriptions: Mapping[str, Any], rank: int, world: int, steps: int,
                 per_pass: int | None = None) -> None:
        self.config, self.descriptions, self.rank, self.world, self.steps = config, descriptions, rank, world, steps
        self.per_pass = per_pass or steps
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        ray.data.DataContext.get_current().enable_progress_bars = False

    def batches(self, epoch: int) -> Any:
        passes = list(epoch_passes(epoch, self.steps, self.per_pass))
        ds = train_stream(self.config.data, self.config.seed, passes, self.descriptions, self.config.storage,
                          rank=self.rank, world_size=self.world, parts=self.config.uses_parts)
        return take_steps(iter_pk_batches(ds, self.config.data), self.steps, self.rank)


def train_worker(loop_config: dict[str, Any]) -> None:
    """The per-worker function: rebuild the config, build the parts, run the loop, write ``result.json``."""
    config = build_dataclass(Config, yaml.safe_load(loop_config["config_yaml"]), "", "<train job>")
    if loop_config.get("s3_filesystem") is not None:
        adopt_s3_filesystem(loop_config["s3_filesystem"])
    context = RayTrainContext()
    placement = gather_placement(context.world_rank, context.world_size, context.device)
    logger.info("rank %d of %d on node %s (%s)", context.world_rank, context.world_size, *placement[context.world_rank])
    if config.train.deterministic:
        torch.set_num_threads(1)
    descriptions = load_training_descriptions(config)
    steps = loop_config["steps"]
    if loop_config.get("data") == "memory":
        data: Any = InMemoryBatches(config.data, config.seed, descriptions, config.storage, rank=context.world_rank,
                                    world_size=context.world_size, steps=steps, parts=config.uses_parts)
    else:
        data = RayDataBatches(config, descriptions, context.world_rank, context.world_size, steps,
                              loop_config.get("per_pass"))
    parts = build_parts(config, context, data, steps, loop_config["best_uri"],
                        pictures_uri=loop_config.get("pictures_uri"))
    if context.world_rank == 0 and loop_config.get("mlflow_run_id"):
        parts.tracker = RunTracker(loop_config["mlflow_uri"], loop_config["mlflow_run_id"])
        parts.tracker.set_tags(placement_tags(placement))  # tags, not params: a restarted group may move
    if context.world_rank == 0 and loop_config.get("progress") is not None:
        parts.progress = QueueProgress(loop_config["progress"], placement)  # its start event names the nodes
    if context.world_rank == 0:
        parts.on_start = functools.partial(record_start, loop_config["run_uri"], config.storage,
                                           placement=placement)
    result = train_loop(config, context, parts)
    if context.world_rank == 0:
        payload = {"best_uri": result.best_uri if result.state.best_epoch is not None else None,
                   "best_epoch": result.state.best_epoch, "val": result.val_metrics, "test": result.test_metrics,
                   "finished": result.finished, "history": result.state.history,
                   "started_at_epoch": result.started_at_epoch, "placement": placement}
        write_json(resolve(loop_config["run_uri"], config.storage).join(RESULT_FILE), payload)


def check_run_name(config: Config, run: Any, resume: bool) -> None:
    """A fresh run may not reuse the name of a run with checkpoints; a resume needs a run of that name."""
    if resume and not exists(run):
        raise RunExistsError(f"--resume: no run '{config.train.name}' at {run.uri} to resume; leave out --resume to "
                             "start it, or name the run to continue with --set train.name=...")
    started = exists(run) and any(not f.endswith(TRACKING_FILE) and f"/{STARTS_DIR}/" not in f for f in list_files(run))
    if started and not resume:
        raise RunExistsError(f"run '{config.train.name}' already has files at {run.uri}; pass --resume to "
                             "continue it or choose another train.name")


def run_uri(config: Config) -> str:
    """Where a run's checkpoints live: ``<train.storage_uri>/<train.name>``."""
    return f"{config.train.storage_uri.rstrip('/')}/{config.train.name}"


def build_trainer(config: Config, resume: bool = False, mlflow: RunTracker | None = None,
                  data: str | None = None, callbacks: Sequence[Any] = (), progress: Any = None) -> TorchTrainer:
    """A ``TorchTrainer`` running :func:`train_worker` on ``train.workers`` workers.

    Checkpoints go to ``<train.storage_uri>/<train.name>`` (``s3://`` through an explicit pyarrow
    filesystem); ``FailureConfig(train.max_failures)`` restarts lost workers from the last one. A fresh
    run refuses an existing run directory; ``resume`` continues it (Ray Train restores its checkpoint
    manager from storage and :func:`ray.train.get_checkpoint` gives the newest checkpoint).
    ``data`` is ``ray`` (the Ray Data pipeline, read by every worker) or ``memory`` (each worker holds the
    training split in memory); None: ``train.data_source``. ``callbacks`` are extra ``ray.train.RunConfig``
    callbacks (Ray Tune passes its ``TuneReportCallback`` so the scheduler sees every epoch's metrics).
    ``progress`` is a Ray queue that rank 0 sends its step and epoch events to (:mod:`reid.distributed.progress`).
    """
    data = data or config.train.data_source
    run = resolve(run_uri(config), config.storage)
    check_run_name(config, run, resume)
    if not resume:
        clear_starts(run.uri, config.storage)
    root = resolve(config.train.storage_uri, config.storage)
    shards = shard_identities(config.data.uri, "train", config.storage)
    steps = steps_per_epoch(shards, config.data.batch.p, config.train.workers, config.train.steps_per_epoch)
    logger.info("%s; %d steps per epoch", batch_and_lr_line(config, config.train.workers), steps)
    loop_config = {
        "config_yaml": dump_config(config), "steps": steps, "data": data, "run_uri": run.uri,
        "per_pass": steps_per_pass(shards, config.data.batch.p, config.train.workers),
        "best_uri": f"{run.uri}/best", "pictures_uri": f"{run.uri}/{PICTURES_DIR}",
        "mlflow_uri": mlflow.uri if mlflow else None,
        "mlflow_run_id": mlflow.run_id if mlflow else None,
        "progress": progress,
        "s3_filesystem": (s3_filesystem(config.storage)
                          if run.is_remote or resolve(config.data.uri, config.storage).is_remote else None),
    }
    use_gpu = config.train.gpus_per_worker > 0
    resources = {"CPU": config.train.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = config.train.gpus_per_worker
    run_config = RunConfig(
        name=config.train.name,
        storage_path=run.uri if not run.is_remote else root.path,
        storage_filesystem=root.filesystem if run.is_remote else None,
        failure_config=FailureConfig(max_failures=config.train.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=config.train.keep_checkpoints),
        worker_runtime_env={"env_vars": _worker_env()},
        callbacks=list(callbacks) or None,
    )
    if not run.is_remote:
        run_config = replace(run_config, storage_path=resolve(config.train.storage_uri).path)
    return TorchTrainer(
        train_worker, train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=config.train.workers, use_gpu=use_gpu,
                                     resources_per_worker=resources, placement_strategy=config.train.placement),
        run_config=run_config,
    )


def _worker_env() -> dict[str, str]:
    env = {"TOKENIZERS_PARALLELISM": "false", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}
    for key in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "HF_HUB_OFFLINE"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def train(config: Config, resume: bool = False, parent_run_id: str | None = None, data: str | None = None,
          callbacks: Sequence[Any] = (), console: bool = False, run_name: str | None = None) -> TrainOutcome:
    """Fit one run on Ray Train, tracked in MLflow (a child of ``parent_run_id`` when given); ``callbacks``
    go to :func:`build_trainer`. Relative local paths in ``config`` are taken from this process's working
    directory (workers run in their own). ``console`` draws a progress bar per epoch and prints one line
    per epoch on this process's stdout (rank 0's events through a Ray queue). ``run_name`` names the MLflow
    run (default ``train.name``)."""
    config = portable_config(config)
    run = resolve(run_uri(config), config.storage)
    check_run_name(config, run, resume)  # before any MLflow run exists: a refused start leaves none behind
    shard_identities(config.data.uri, "train", config.storage)  # a missing dataset fails here, as clearly
    check_part_regions(config)
    ensure_ray()
    check_driver_paths(config)  # a local path that workers on other machines would not see: refused here
    fusion_input, why = warn_if_image_only(config)
    tracker = _tracker(config, run, resume, parent_run_id, run_name)
    try:
        if tracker:
            tracker.set_tags({"fusion_input": fusion_input, "fusion_input_reason": why})
        if console:
            events = driver_queue()
            watch = RestartWatch(alive_node_ids)
            trainer = build_trainer(config, resume, tracker, data, [*callbacks, FailureEvents(events)],
                                    progress=events)
            try:
                run_with_progress(trainer.fit, events, config.train.epochs, config.eval.select_metric, watch=watch)
            finally:
                if tracker and watch.lines:
                    tracker.set_tags({"restarts": str(len(watch.lines)),
                                      **{f"restart/{i + 1}": line for i, line in enumerate(watch.lines)}})
            events.shutdown()
        else:
            build_trainer(config, resume, tracker, data, callbacks).fit()
    except KeyboardInterrupt:
        if tracker:
            tracker.finish("KILLED")
        raise
    except Exception:
        if tracker:
            tracker.finish("FAILED")
        raise
    outcome = _outcome(config, run, tracker)
    if tracker:
        _finish_tracking(tracker, outcome)
    return outcome


def driver_queue() -> Any:
    """The console's event queue, its actor pinned to this driver's node with no CPU: a queue placed on a worker
    node would die with that node, and the console would hear nothing from the restarted group."""
    from ray.util.queue import Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return Queue(maxsize=10_000, actor_options={
        "num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=here, soft=False)})


def alive_node_ids() -> set[str]:
    """The ids of the cluster's live nodes."""
    return {node["NodeID"] for node in ray.nodes() if node["Alive"]}


def _tracker(config: Config, run: Any, resume: bool, parent_run_id: str | None,
             run_name: str | None = None) -> RunTracker | None:
    if not config.tracking.enabled:
        return None
    check_cluster_tracking_store(tracking_uri(config.tracking))
    saved = run.join(TRACKING_FILE)
    if resume and exists(saved):
        info = read_json(saved)
        return RunTracker(info["uri"], info["run_id"])
    tracker = RunTracker.create(config, run_name or config.train.name, parent_run_id)
    write_json(saved, {"uri": tracker.uri, "run_id": tracker.run_id})
    return tracker


def _outcome(config: Config, run: Any, tracker: RunTracker | None) -> TrainOutcome:
    result = read_json(run.join(RESULT_FILE))
    placement = tuple(tuple(p) for p in result.get("placement", ()))
    if placement:
        logger.info("workers: %s", placement_line(placement))
    return TrainOutcome(run.uri, result["best_uri"], result["val"], result["test"], result["best_epoch"],
                        tracker.run_id if tracker else None, result["finished"], placement,
                        tracker.uri if tracker else None)


def _finish_tracking(tracker: RunTracker, outcome: TrainOutcome) -> None:
    tracker.log_metrics(outcome.test_metrics, "test/")
    tracker.log_metrics(outcome.val_metrics, "best_val/")
    tags = {"run_uri": outcome.run_uri}
    if outcome.best_uri:
        tags["best_checkpoint_uri"] = outcome.best_uri
        best = resolve(outcome.best_uri)
        if not best.is_remote and os.path.isdir(best.path):
            tracker.log_artifacts(best.path, "best_checkpoint")
    pictures = resolve(f"{outcome.run_uri}/{PICTURES_DIR}")
    if exists(pictures):
        tags["pictures_uri"] = pictures.uri
        if not pictures.is_remote:
            tracker.log_artifacts(pictures.path, PICTURES_DIR)
        else:  # rank 0 drew them into object storage, wherever it ran: copied here through a temporary directory
            with tempfile.TemporaryDirectory(prefix="reid-pictures-") as tmp:
                for path in list_files(pictures):
                    name = path[len(pictures.path.rstrip("/")) + 1:]  # S3 paths are relative: no os.path here
                    os.makedirs(os.path.dirname(os.path.join(tmp, name)), exist_ok=True)
                    with open(os.path.join(tmp, name), "wb") as handle:
                        handle.write(read_bytes(Location(f"s3://{path}", pictures.filesystem, path)))
                tracker.log_artifacts(tmp, PICTURES_DIR)
    tracker.set_tags(tags)
    tracker.finish("FINISHED" if outcome.finished else "KILLED")


LOGS_DIR = "logs"


def publish_log(config: Config, outcome: TrainOutcome, name: str, text: str | None) -> str | None:
    """Copy the driver's log (``text``, the file ``name`` of ``$REID_LOG_DIR`` on the driver's node: under ``ray job
    submit`` inside the head's copy of the working directory, which Ray removes) to the MLflow run's ``logs/``
    artifacts and, for a run in object storage, to ``<run>/logs/<name>``; returns that URI, else None."""
    if text is None:
        return None
    if outcome.mlflow_run_id and outcome.mlflow_uri:
        try:  # no path of this process's working directory here: under a Ray job it may have been replaced
            tracker = RunTracker(outcome.mlflow_uri, outcome.mlflow_run_id)
            tracker.client.log_text(outcome.mlflow_run_id, text, f"{LOGS_DIR}/{name}")
        except Exception as exc:  # the run is trained and tracked: a missing log copy is worth a warning only
            logger.warning("could not copy the log %s to MLflow run %s: %s", name, outcome.mlflow_run_id, exc)
    run = resolve(outcome.run_uri, config.storage)
    if not run.is_remote:
        return None
    target = run.join(LOGS_DIR, name)
    write_bytes(target, text.encode("utf-8"))
    return target.uri


def train_seeds(config: Config, seeds: Sequence[int], resume: bool = False, data: str | None = None,
                console: bool = False) -> dict[str, Any]:
    """The paper's protocol: one run per seed (``<name>-seed<N>``) as children of one parent MLflow run,
    which gets the mean and std of the test metrics (with the gallery of images alone's ``image_R1`` and
    ``image_mAP`` when the test gallery was ranked both ways)."""
    from reid.evaluation.selection import seed_columns, summarize_seeds

    ensure_ray()
    if config.tracking.enabled:
        check_cluster_tracking_store(tracking_uri(config.tracking))
    parent = RunTracker.create(config, f"{config.train.name}-seeds") if config.tracking.enabled else None
    results = {}
    for seed in seeds:
        seeded = replace(config, seed=seed, train=replace(config.train, name=f"{config.train.name}-seed{seed}"))
        outcome = train(seeded, resume, parent.run_id if parent else None, data, console=console)
        results[seed] = outcome.test_metrics
    summary = summarize_seeds(results, seed_columns(results))
    if parent:
        parent.log_metrics(summary.mean, "test_mean/")
        parent.log_metrics(summary.std, "test_std/")
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "seeds.txt"), "w") as handle:
                handle.write(summary.table() + "\n")
            parent.log_artifacts(tmp, "seeds")
        parent.finish()
    return {"summary": summary, "parent_run_id": parent.run_id if parent else None}
