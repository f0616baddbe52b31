"""Assemble the loop's parts from a config: seeded model, optimiser, schedule, engine, balancer, scorers."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch
from torch import nn

from reid.config import Config
from reid.losses.objective import create_balancer
from reid.training.batches import BatchSource, InMemoryBatches, shard_identities, steps_per_epoch
from reid.training.context import LocalContext, TrainContext
from reid.training.engine import Engine, TorchEngine
from reid.training.loop import LoopParts, Tracker, TrainResult, train_loop
from reid.training.schedule import build_scheduler
from reid.training.validation import SplitValidator

logger = logging.getLogger(__name__)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed torch (model init is identical on every rank) and optionally ask for deterministic kernels
    (on CUDA that needs ``CUBLAS_WORKSPACE_CONFIG``, set here unless the environment sets it)."""
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def freeze_parameters(model: nn.Module, prefixes: tuple[str, ...]) -> int:
    """Stop training every parameter whose name starts with one of ``prefixes``; returns how many.

    A prefix that names no parameter is refused (a typo would otherwise train what it meant to freeze).
    """
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            roots = sorted({name.split(".")[0] + "." for name in names})
            raise ValueError(f"optim.frozen: '{prefix}' names no model parameter (top-level: {', '.join(roots)})")
    frozen = 0
    for name, param in model.named_parameters():
        if prefixes and name.startswith(tuple(prefixes)):
            param.requires_grad_(False)
            frozen += param.numel()
    if frozen:
        logger.info("frozen: %.2fM parameters under %s", frozen / 1e6, ", ".join(prefixes))
    return frozen


def parameter_groups(model: nn.Module, lr: float, pretrained_ratio: float) -> list[dict]:
    """The trainable parameters in one group at ``lr``, or, with ``pretrained_ratio != 1``, those under the model's
    ``pretrained_prefixes`` (weights loaded from a hub, a directory or a wheel) in a second group at
    ``lr * pretrained_ratio``."""
    prefixes = tuple(getattr(model, "pretrained_prefixes", ()))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if pretrained_ratio == 1.0 or not prefixes:
        return [{"params": [p for _, p in named], "lr": lr}]
    pretrained = [p for n, p in named if n.startswith(prefixes)]
    rest = [p for n, p in named if not n.startswith(prefixes)]
    logger.info("pretrained layers (%s): %.2fM parameters at lr x %g", ", ".join(prefixes),
                sum(p.numel() for p in pretrained) / 1e6, pretrained_ratio)
    return [g for g in ({"params": rest, "lr": lr}, {"params": pretrained, "lr": lr * pretrained_ratio})
            if g["params"]]


def build_optimizer(config: Config, model: nn.Module, lr: float | None = None) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD over the trainable parameters with ``lr`` (default ``optim.lr``; pretrained layers at
    ``optim.pretrained_lr_ratio`` times it) and ``optim.weight_decay``."""
    o = config.optim
    lr = o.lr if lr is None else lr
    params = parameter_groups(model, lr, o.pretrained_lr_ratio)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=lr, weight_decay=o.weight_decay, momentum=0.9)


def effective_lr(config: Config, world_size: int) -> tuple[int, float]:
    """``(global batch, base lr)`` of a run on ``world_size`` workers under ``optim.lr_scaling``."""
    from reid.training.schedule import scaled_lr

    batch = config.data.batch.p * config.data.batch.k * world_size
    return batch, scaled_lr(config.optim.lr, config.optim.lr_scaling, batch, config.optim.reference_batch)


def batch_and_lr_line(config: Config, world_size: int) -> str:
    """The effective global batch and lr of a run, as one log line."""
    batch, lr = effective_lr(config, world_size)
    return (f"global batch {batch} (P {config.data.batch.p} x K {config.data.batch.k} x {world_size} workers), "
            f"lr {lr:.3g} (optim.lr {config.optim.lr:.3g}, lr_scaling {config.optim.lr_scaling}, reference batch "
            f"{config.optim.reference_batch})")


def build_engine(config: Config, model: nn.Module, steps: int, world_size: int) -> Engine:
    """The engine of ``train.engine`` with the cosine/warm-up schedule over ``epochs x steps`` steps
    (the ``optim.frozen`` parameters left out)."""
    freeze_parameters(model, config.optim.frozen)
    _, lr = effective_lr(config, world_size)
    logger.info(batch_and_lr_line(config, world_size))
    optimizer = build_optimizer(config, model, lr)
    total = config.train.epochs * steps
    warmup = min(total - 1, math.ceil(config.optim.warmup_epochs * steps))
    scheduler = build_scheduler(optimizer, max(0, warmup), total, config.optim.min_lr_ratio)
    if config.train.engine == "torch":
        return TorchEngine(model, optimizer, scheduler, config.optim.grad_clip)
    from reid.training.deepspeed_engine import DeepSpeedEngine, deepspeed_config

    micro = config.data.batch.p * config.data.batch.k
    ds = deepspeed_config(micro, config.train.zero_stage, config.train.precision, config.optim.grad_clip)
    copies = config.train.zero_stage == 3 or config.train.precision == "bf16"  # whole_module builds fp32 copies
    architecture = architecture_config(model, config) if copies else config
    return DeepSpeedEngine(model, optimizer, scheduler, ds, rebuild=lambda: fresh_model(architecture))


def architecture_config(model: nn.Module, config: Config) -> Config:
    """``config`` with the encoders' names replaced by ``model``'s architectures: what :func:`fresh_model`
    builds from it needs no weights (no hub download, no from_pretrained on every ZeRO-3 validation)."""
    from reid.models.export import inference_config

    return inference_config(model, config)


def fresh_model(config: Config) -> nn.Module:
    """A new, random-init model of ``config``'s architecture, built without touching the training RNG streams."""
    from reid.models.factory import create_model

    with torch.random.fork_rng(devices=[]):
        return create_model(config)


def build_parts(config: Config, context: TrainContext, data: BatchSource, steps: int, best_uri: str | None,
                validate: bool = True, pictures_uri: str | None = None) -> LoopParts:
    """Model (seeded by ``config.seed``), engine, balancer and, on rank 0, validator, best-model I/O and
    (with ``pictures_uri`` and ``train.pictures``) the evaluation pictures of the best model."""
    from reid.models.export import load_inference_checkpoint, save_inference_checkpoint
    from reid.models.factory import create_model

    seed_everything(config.seed, config.train.deterministic)
    model = create_model(config).to(context.device)
    torch.manual_seed(config.seed * 1_000 + 1 + context.world_rank)  # per-rank dropout streams
    engine = build_engine(config, model, steps, context.world_size)
    balancer = create_balancer(config.loss, config.gradnorm, bdam=config.model.bdam.enabled,
                               gate=config.model.bdam.gate, local_align=config.uses_parts,
                               image_decoding=config.uses_image_decoding)
    balancer.to(context.device)
    parts = LoopParts(engine, balancer, data, steps, best_uri=best_uri)
    if context.world_rank == 0 and validate:
        validator = SplitValidator(config, context.device)
        parts.validate = validator
        if best_uri is not None:
            parts.save_best = lambda module: save_inference_checkpoint(
                module, config, best_uri, config.storage, tokenizer=validator.tokenizer)
            parts.load_best = lambda: load_inference_checkpoint(best_uri, config.storage)[0].to(context.device)
        if config.eval.probes:
            from reid.training.probing import run_probes

            parts.probe = lambda module: run_probes(module, config, context.device, "train", config.data.val_split)
        if pictures_uri is not None and config.train.pictures:
            from reid.training.evaluation_figures import save_split_pictures

            parts.pictures = lambda module: save_split_pictures(
                module, config, config.data.test_split, pictures_uri, validator.tokenizer, context.device)
    return parts


def load_training_descriptions(config: Config) -> dict[str, dict]:
    """The dataset's descriptions (``{image_id: row}``) when ``data.use_descriptions``, else none.

    Caption-derived identity descriptions (the rule-based describer) are dropped, clothing descriptions kept:
    evaluation runs such images image-only (no leakage, DESIGN 3.5), and fed to fusion in training they
    let the query caption match its own rewording instead of the image, which teaches retrieval nothing.
    """
    out, dropped = _training_descriptions(config)
    if out:
        logger.info("%d image descriptions for training (%d caption-derived identity descriptions left out)",
                    len(out), dropped)
    return out


def _training_descriptions(config: Config) -> tuple[dict[str, dict], int]:
    """:func:`load_training_descriptions` and how many identity descriptions it left out."""
    if not config.data.use_descriptions:
        return {}, 0
    from reid.describe.table import load_descriptions
    from reid.evaluation.descriptions import admissible_description

    descriptions = load_descriptions(config.data.uri, config.storage)
    out = {}
    for image_id, row in descriptions.items():
        identity = admissible_description(image_id, row.get("identity"), row["provenance"])
        out[image_id] = {**row, "identity": identity}
    dropped = sum(1 for image_id, row in out.items() if not row["identity"] and descriptions[image_id].get("identity"))
    return out, dropped


def check_part_regions(config: Config) -> None:
    """With local alignment on, refuse a dataset whose manifest counts no image with a part label map (prepared
    before masks existed, or with ``--part-masks none``), naming how to prepare one; log how many have one."""
    if not config.uses_parts:
        return
    from reid.storage import exists, read_json, resolve

    manifest = resolve(config.data.uri, config.storage).join("manifest.json")
    counts = read_json(manifest).get("part_masks", {}) if exists(manifest) else {}
    if not counts.get("images_with_masks"):
        raise ValueError(f"model.local_align.kind={config.model.local_align.kind!r} needs part regions, but "
                         f"{config.data.uri} has no part masks; prepare it again with them (`reid prepare` reads "
                         "the masks/ that `reid synth` writes; on real data: `reid prepare --part-masks heuristic`)")
    logger.info("part regions: %d images have a label map (%s)", counts["images_with_masks"], counts.get("source"))


IMAGE_AND_DESCRIPTION, IMAGE_ONLY = "image+description", "image-only"


def fusion_input(config: Config) -> tuple[str, str]:
    """What the gallery side's fusion will read in training: ``(IMAGE_AND_DESCRIPTION | IMAGE_ONLY, why)``.

    Image-only when the fusion kind reads no text, descriptions are off, or no image has an image-grounded
    identity description (e.g. every one came from the rule-based describer, which splits the captions).
    """
    if config.model.fusion.kind == "none":
        return IMAGE_ONLY, "model.fusion.kind is 'none' (no fusion)"
    if not config.data.use_descriptions:
        return IMAGE_ONLY, "data.use_descriptions is false"
    rows, dropped = _training_descriptions(config)
    grounded = sum(1 for row in rows.values() if row["identity"])
    if grounded:
        return IMAGE_AND_DESCRIPTION, f"{grounded} of {len(rows)} images have an image-grounded identity description"
    if dropped:
        return IMAGE_ONLY, (f"all {dropped} identity descriptions are caption-derived (describer 'rules'), which "
                            "training and evaluation leave out; describe with an MLLM (or 'oracle' on synthetic "
                            "data) for the fusion to read descriptions")
    return IMAGE_ONLY, f"{config.data.uri} has no identity descriptions (run `reid describe` first)"


def warn_if_image_only(config: Config) -> tuple[str, str]:
    """:func:`fusion_input`, logged once: a warning when a text-reading fusion will see images only."""
    kind, why = fusion_input(config)
    if kind == IMAGE_ONLY and config.model.fusion.kind != "none":
        logger.warning("fusion will be image-only: %s; the text aligner and the modality gate will not train", why)
    else:
        logger.info("fusion input: %s (%s)", kind, why)
    return kind, why


def train_local(config: Config, root: str | Path, resume: bool = False,
                tracker: Tracker | None = None) -> tuple[TrainResult, LocalContext]:
    """Train in this process without Ray: checkpoints under ``root/epoch-NNNN``, best model under ``root/best``.

    ``resume`` continues from the newest checkpoint under ``root``; ``tracker`` receives each epoch's metrics.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    check_part_regions(config)
    warn_if_image_only(config)
    context = LocalContext(root, LocalContext.latest(root) if resume else None)
    shards = shard_identities(config.data.uri, "train", config.storage)
    steps = steps_per_epoch(shards, config.data.batch.p, 1, config.train.steps_per_epoch)
    data = InMemoryBatches(config.data, config.seed, load_training_descriptions(config), config.storage,
                           steps=steps, parts=config.uses_parts)
    parts = build_parts(config, context, data, steps, str(root / "best"), pictures_uri=str(root / "pictures"))
    parts.tracker = tracker
    return train_loop(config, context, parts), context
