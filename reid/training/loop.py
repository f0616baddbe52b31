"""The training loop (paper 4.2), written against :class:`TrainContext` so it runs with or without Ray."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from reid.config import Config
from reid.losses.gather import gather_rows
from reid.losses.gradnorm import FixedWeights, GradNorm
from reid.losses.objective import compute_losses
from reid.training.batches import BatchSource
from reid.training.context import TrainContext
from reid.training.engine import Engine
from reid.training.validation import Validator, is_better, selected_value

logger = logging.getLogger(__name__)

RNG_FILE = "rng-rank{rank}.pt"


class Tracker(Protocol):
    """Receives each epoch's metrics on rank 0 (e.g. MLflow).

    ``last_epoch()`` is the newest epoch already logged (None: none), so that a restarted run logs every
    epoch exactly once.
    """

    def log_epoch(self, metrics: Mapping[str, float], epoch: int) -> None: ...

    def last_epoch(self) -> int | None: ...


@dataclass
class LoopState:
    """Progress saved with every checkpoint: the next epoch, optimiser steps so far and validation history."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "history": self.history,
                "best_epoch": self.best_epoch, "best_score": self.best_score}


@dataclass
class TrainResult:
    """What a finished (or stopped) run gives back; metrics in percent. ``started_at_epoch`` is the epoch
    this process began with (> 0 after a resume or a restart from a checkpoint)."""

    state: LoopState
    best_uri: str | None
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    finished: bool
    started_at_epoch: int = 0


@dataclass
class LoopParts:
    """Everything the loop drives: the engine (model + optimiser), the task balancer, data and scorers.

    ``save_best(model)`` writes the inference checkpoint of a new best epoch (rank 0) and
    ``load_best()`` reads it back for the final test; ``pictures(model)`` then draws the evaluation
    pictures; ``probe(model)`` gives the disentanglement probes of each validation (``probe/*``);
    ``progress`` receives ``start(epoch, step)`` once the checkpoint is restored (where this group begins; if it
    has that method), ``step(epoch, step, steps, samples_per_s)`` after each step and ``epoch(epoch, metrics)``
    after each checkpoint (the console); ``on_start(epoch, step)`` is told the same start (a record of the
    run's group starts); ``validate``, ``tracker``, ``probe``, ``pictures``, ``progress`` and ``on_start`` run
    on rank 0 only.
    """

    engine: Engine
    balancer: GradNorm | FixedWeights
    data: BatchSource
    steps_per_epoch: int
    validate: Validator | None = None
    tracker: Tracker | None = None
    save_best: Any = None
    load_best: Any = None
    best_uri: str | None = None
    pictures: Any = None
    probe: Any = None
    progress: Any = None
    on_start: Any = None


def train_loop(config: Config, context: TrainContext, parts: LoopParts) -> TrainResult:
    """Train ``config.train.epochs`` epochs (resuming from the context's checkpoint), validate every
    ``train.val_every`` epochs, keep the best on ``eval.select_metric`` of the validation split, checkpoint
    every epoch, and finally score the best model on the test split.

    Per step: forward, :func:`compute_losses`, ``balancer.weighted_loss`` (first term of eq. 6) ->
    ``engine.backward`` (graph retained when GradNorm updates) -> ``balancer.update`` (eq. 5, per-task
    gradient norms on the shared layer, weights as before the update) -> ``engine.step`` (optimiser +
    cosine/warm-up schedule). DeepSpeed needs this order: its backward bookkeeping starts at the first
    traversal of the forward's outputs, so GradNorm's ``autograd.grad`` calls come after ``engine.backward``.
    """
    state, restored_metrics = _restore(context, parts)
    if parts.progress is not None and hasattr(parts.progress, "start"):
        parts.progress.start(state.epoch, state.step)
    if parts.on_start is not None and context.world_rank == 0:
        parts.on_start(state.epoch, state.step)
    logged = _catch_up_tracking(context, parts, state, restored_metrics)
    started_at = state.epoch
    stop_at = config.train.stop_after_epochs or config.train.epochs
    finished = True
    while state.epoch < config.train.epochs:
        if state.epoch >= stop_at or context.should_stop():
            finished = False
            break
        metrics = _train_epoch(config, context, parts, state)
        if _validation_due(config, state.epoch):
            with parts.engine.whole_module() as module:  # ZeRO-3: every rank gathers, rank 0 validates
                metrics.update(_validate(config, context, parts, state, module))
        state.epoch += 1
        _checkpoint(context, parts, state, metrics)
        if context.world_rank == 0 and parts.tracker is not None and (logged is None or state.epoch - 1 > logged):
            parts.tracker.log_epoch(metrics, state.epoch - 1)
        if parts.progress is not None:
            parts.progress.epoch(state.epoch - 1, metrics)
    val, test = {}, {}
    if state.history and state.best_epoch is not None:
        val = next(h for h in state.history if h["epoch"] == state.best_epoch)
    if finished and context.world_rank == 0 and parts.validate is not None and parts.load_best is not None:
        best = parts.load_best()
        test = parts.validate(best, config.data.test_split)
        logger.info("test (best epoch %s): %s", state.best_epoch, test)
        if parts.pictures is not None:
            parts.pictures(best)
    return TrainResult(state, parts.best_uri, {k: v for k, v in val.items() if k != "epoch"}, test, finished,
                       started_at)


def _validation_due(config: Config, epoch: int) -> bool:
    return (epoch + 1) % config.train.val_every == 0 or epoch + 1 == config.train.epochs


def _train_epoch(config: Config, context: TrainContext, parts: LoopParts, state: LoopState) -> dict[str, float]:
    """One epoch of steps; returns rank-averaged means of each loss, task weights, gate means and samples/s."""
    model = parts.engine.module
    model.train()
    parts.balancer.train()
    sums: dict[str, float] = defaultdict(float)
    steps, samples, start = 0, 0, time.perf_counter()
    gather = gather_rows if config.loss.gather_across_ranks and context.world_size > 1 else None
    for batch in parts.data.batches(state.epoch):
        tensors = drop_absent_descriptions(to_tensors(batch, context.device), context.device)
        outputs = parts.engine.forward(tensors)
        losses = compute_losses(outputs, tensors, config.loss, gather)
        total = parts.balancer.weighted_loss(losses)
        parts.engine.backward(total, retain_graph=parts.balancer.will_update())
        parts.balancer.update(losses, model.shared_parameters())
        parts.engine.step()
        _accumulate(sums, losses, total, outputs)
        steps, samples = steps + 1, samples + len(batch["pids"])
        state.step += 1
        if parts.progress is not None:
            parts.progress.step(state.epoch, steps, parts.steps_per_epoch,
                                samples * context.world_size / max(time.perf_counter() - start, 1e-9))
        # GradNorm's retained graph hangs off these: free it now, not when the next forward rebinds the names
        # (which would hold two steps' activations at the peak of the next forward).
        del outputs, losses, total, tensors
    seconds = time.perf_counter() - start
    if steps == 0:
        raise RuntimeError(f"epoch {state.epoch} gave no training batches on rank {context.world_rank}")
    means = mean_over_ranks({k: v / steps for k, v in sums.items()}, context.device)
    means.update({k: float(v) for k, v in parts.balancer.stats().items() if k.startswith("weight/")})
    means["samples_per_s"] = samples * context.world_size / seconds
    means["peak_memory_mib"] = peak_memory_mib(context.device)
    means["epoch_seconds"] = seconds
    means["lr"] = parts.engine.learning_rate()
    means["step"] = float(state.step)
    logger.info("epoch %d: %s", state.epoch, " ".join(f"{k}={v:.4g}" for k, v in sorted(means.items())))
    return means


def _accumulate(sums: dict[str, float], losses: Mapping[str, torch.Tensor], total: torch.Tensor,
                outputs: Mapping[str, Any]) -> None:
    """Add a step's losses and gate means to ``sums`` (in a function of its own: loop variables that outlive
    the loop would keep the step's graph alive)."""
    for name, value in {**losses, "total": total}.items():
        sums[f"loss/{name}"] += float(value.detach())
    for key in ("bdam_gate", "w_img", "w_txt"):
        if outputs.get(key) is not None:
            sums[f"gate/{key}_mean"] += float(outputs[key].detach().float().mean())


def _validate(config: Config, context: TrainContext, parts: LoopParts, state: LoopState,
              module: nn.Module) -> dict[str, float]:
    """Rank 0 scores ``module`` (the engine's model, whole) on the validation split; a new best (on
    ``eval.select_metric``) is saved."""
    if context.world_rank != 0 or parts.validate is None:
        return {}
    scores = parts.validate(module, config.data.val_split)
    state.history.append({"epoch": state.epoch, **scores})
    metric = config.eval.select_metric
    if is_better(scores, metric, state.best_score):
        state.best_epoch, state.best_score = state.epoch, selected_value(scores, metric)
        if parts.save_best is not None:
            parts.save_best(module)
    logger.info("val epoch %d: %s (best %s=%.2f at epoch %s)", state.epoch, scores, metric,
                state.best_score or float("nan"), state.best_epoch)
    out = {f"val/{k}": v for k, v in scores.items()}
    out["val/best_" + metric] = float(state.best_score) if state.best_score is not None else float("nan")
    if parts.probe is not None:
        out.update(parts.probe(module))
    return out


def _checkpoint(context: TrainContext, parts: LoopParts, state: LoopState, metrics: dict[str, float]) -> None:
    """Every rank saves its part (engine state, RNG) into one directory, then reports it with the metrics."""
    with tempfile.TemporaryDirectory(prefix="reid-ckpt-") as directory:
        client = {"loop": state.to_dict(), "balancer": parts.balancer.state_dict(), "metrics": dict(metrics)}
        parts.engine.save(directory, client)
        torch.save(_rng_state(), os.path.join(directory, RNG_FILE.format(rank=context.world_rank)))
        context.report({**metrics, "epoch": state.epoch - 1}, directory)


def _catch_up_tracking(context: TrainContext, parts: LoopParts, state: LoopState,
                       metrics: dict[str, float] | None) -> int | None:
    """Rank 0 after a restart: log the restored epoch's metrics if the run died between its checkpoint and
    its log line; returns the newest logged epoch (later epochs at or below it are not logged again)."""
    if context.world_rank != 0 or parts.tracker is None:
        return None
    logged = parts.tracker.last_epoch()
    if state.epoch > 0 and metrics and (logged is None or logged < state.epoch - 1):
        logger.info("logging epoch %d again: the run stopped before it reached the tracker", state.epoch - 1)
        parts.tracker.log_epoch(metrics, state.epoch - 1)
        logged = state.epoch - 1
    return logged


def _restore(context: TrainContext, parts: LoopParts) -> tuple[LoopState, dict[str, float] | None]:
    """The loop state of the context's checkpoint (engine, balancer and RNG restored) and the metrics of
    its epoch, or a fresh state."""
    with context.restored_checkpoint() as directory:
        if directory is None:
            return LoopState(), None
        client = parts.engine.load(directory)
        rng_file = os.path.join(directory, RNG_FILE.format(rank=context.world_rank))
        rng = torch.load(rng_file, weights_only=True) if os.path.exists(rng_file) else None
    parts.balancer.load_state_dict(client["balancer"])
    if rng is not None:
        _set_rng_state(rng)
    else:
        logger.warning("checkpoint %s has no RNG state for rank %d", directory, context.world_rank)
    loop = client["loop"]
    state = LoopState(int(loop["epoch"]), int(loop["step"]), [dict(h) for h in loop["history"]],
                      loop["best_epoch"], loop["best_score"])
    logger.info("resumed from %s at epoch %d, step %d", directory, state.epoch, state.step)
    return state, client.get("metrics")


def _rng_state() -> dict[str, Any]:
    """The CPU generator's state and, on a CUDA machine, every CUDA device's."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def peak_memory_mib(device: torch.device) -> float:
    """This process's peak memory so far: allocated CUDA memory on a GPU, resident set size on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """The mean of each value over the ranks of the process group (``values`` as they are without one).

    The reduced tensor lives on ``device`` (the rank's training device): NCCL, Ray Train's backend on GPUs,
    has no CPU collectives ("No backend type associated with device type cpu").
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2 or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return dict(zip(keys, (tensor / dist.get_world_size()).cpu().tolist(), strict=True))


def to_tensors(batch: Mapping[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """Numeric arrays of a numpy batch as tensors on ``device`` (string columns such as ``image_ids`` dropped).

    To a CUDA device the copy goes from pinned memory without blocking (it overlaps the previous step's
    kernels; a kernel reading the tensor is ordered after the copy on the same stream).
    """
    out = {}
    for key, value in batch.items():
        array = np.asarray(value)
        if array.dtype.kind in "biuf":
            array = np.ascontiguousarray(array)
            if not array.flags.writeable:  # Ray Data's batches are read-only views of the object store
                array = array.copy()
            tensor = torch.from_numpy(array)
            if device.type == "cuda":
                tensor = tensor.pin_memory().to(device, non_blocking=True)
            out[key] = tensor.to(device)
    return out


DESCRIPTION_KINDS = ("id_desc", "clo_desc")


def drop_absent_descriptions(tensors: dict[str, torch.Tensor], device: torch.device | None = None
                             ) -> dict[str, torch.Tensor]:
    """Leave out a description kind (``id_desc``/``clo_desc``) that no row of the batch has *on any rank*:
    the model then skips encoding ``[B, T]`` empty texts, with the same outputs (no description means
    image-only fusion and no clothing terms).

    Under ``torch.distributed`` the ranks agree first (one all-reduce of two flags on ``device``): a rank
    whose batch lacks a kind another rank has keeps its empty texts, so that every rank runs the same
    modules (``fusion.text_align``, ``fusion.gate``, the clothing projection) and DeepSpeed's ZeRO-1/2
    gradient buckets match; otherwise ranks would reduce different buckets and hang or mix gradients.
    """
    present = [bool(tensors[f"has_{kind}"].any()) if f"has_{kind}" in tensors else False
               for kind in DESCRIPTION_KINDS]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        flags = torch.tensor(present, dtype=torch.int32, device=device or torch.device("cpu"))
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        present = [bool(v) for v in flags.tolist()]
    for kind, keep in zip(DESCRIPTION_KINDS, present, strict=True):
        if not keep:
            for suffix in ("_ids", "_mask"):
                tensors.pop(kind + suffix, None)
            tensors.pop(f"has_{kind}", None)
    return tensors
