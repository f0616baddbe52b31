"""The learning recipe, row by row: what each change does to test R1 of the demo-size model on 2 CPU cores, in
both gallery modes (image + identity description; image only).

    python jobs/bench_recipe.py [--identities 60] [--images 6] [--steps 200] [--seeds 0,1,2] [--rows ROW ...]
                                [--data DATASET] [--set KEY=VALUE ...]

Each row trains the demo config (``pkg://demo``) in this process (no Ray; plain PyTorch engine) on the
synthetic standard split (oracle descriptions, the demo's describer) with the overrides of its row, then scores
the checkpoint chosen on val on test. The first rows (``before`` ... ``gradnorm_every_4``) retrace the earlier
from-scratch ViT recipe cumulatively, each on top of the rows before it; the ``baseline*`` rows add theirs to
those. The image-path rows (``vit_image_only`` ... ``demo``) each stand alone on the demo config as shipped.
Prints one line per row: mean +- std over seeds of test R1 and mAP in each gallery mode, and seconds per step.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import replace

import numpy as np

from reid.config import load_config

VIT = ["model.vision_name_or_path=null", "model.vision_config={hidden_size: 64, num_hidden_layers: 2, "
       "num_attention_heads: 4, intermediate_size: 128, patch_size: 16}", "loss.image_only=0",
       "optim.pretrained_lr_ratio=1", "loss.triplet_normalize=false"]  # the earlier demo: a from-scratch ViT
BEFORE = [*VIT, "optim.lr=5e-4", "optim.weight_decay=1e-3", "data.augment.random_erasing=true",
          "model.vision_stem=patch", "gradnorm.update_every=1"]
ROWS: dict[str, tuple[str, list[str]]] = {
    "before": ("the demo recipe before (lr 5e-4, weight decay 1e-3, random erasing, patch stem)", BEFORE),
    "lr_wd": ("lr 1e-3, no weight decay", ["optim.lr=1e-3", "optim.weight_decay=0"]),
    "no_erasing": ("no random erasing (it erases the garments captions name)", ["data.augment.random_erasing=false"]),
    "conv_stem": ("convolutional ViT stem", ["model.vision_stem=conv"]),
    "gradnorm_every_4": ("GradNorm weights updated every 4th step", ["gradnorm.update_every=4"]),
}
BASELINES: dict[str, tuple[str, list[str]]] = {
    "baseline": ("baseline (no BDAM, no fusion), the rows above", ["model.bdam.enabled=false",
                                                                   "model.fusion.kind=none",
                                                                   "model.vision_stem=patch"]),
    "baseline_conv": ("baseline with the convolutional stem", ["model.bdam.enabled=false", "model.fusion.kind=none",
                                                              "model.vision_stem=conv"]),
}


EFFNET = ["model.vision_name_or_path=pkg:efficientnet-lite0", "model.vision_config={hidden_size: 64, trunk: full}"]
IMAGE_ROWS: dict[str, tuple[str, list[str]]] = {
    "vit_image_only": ("from-scratch ViT (the earlier demo) + image-only InfoNCE (`loss.image_only: 1`)",
                       [*VIT, "loss.image_only=1"]),
    "effnet_raw_triplet": ("EfficientNet-Lite0 (ImageNet), image-only InfoNCE, pretrained lr x 0.1, triplet on raw "
                           "features", [*EFFNET, "loss.triplet_normalize=false"]),
    "effnet_no_image_only": ("the demo without the image-only InfoNCE (`loss.image_only: 0`)", ["loss.image_only=0"]),
    "effnet_lr_ratio_1": ("the demo with the pretrained layers at the full lr (`optim.pretrained_lr_ratio: 1`)",
                          ["optim.pretrained_lr_ratio=1"]),
    "cnn": ("the demo with a random-init CNN (32-64-128-256) for the backbone",
            ["model.vision_name_or_path=null", "model.vision_config={model_type: cnn, hidden_size: 64}"]),
    "mobilenetv2": ("the demo with MobileNetV2 (ImageNet) for the backbone",
                    ["model.vision_name_or_path=pkg:mobilenetv2", "model.vision_config={hidden_size: 64}"]),
    "effnet_full_trunk": ("the demo with the whole EfficientNet-Lite0 trunk (`trunk: full`: the stages after "
                          "stride 16 and the 1280-channel head, dilated)",
                          ["model.vision_config={hidden_size: 64, trunk: full}"]),
    "gradnorm_every_step": ("the demo with GradNorm's weights updated every step", ["gradnorm.update_every=1"]),
    "demo": ("**the demo**: EfficientNet-Lite0 up to stride 16, image-only InfoNCE, pretrained lr x 0.1, triplet on "
             "normalised features, GradNorm every 4th step", []),
}


def build_dataset(root: str, identities: int, images: int,
                  splits: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> str:
    """The demo's synthetic standard split (``splits``: train/val/test fractions of the identities), prepared
    (Ray Data on a local Ray) and described by the oracle."""
    from reid.data.synth import generate
    from reid.describe.config import DescribeConfig
    from reid.describe.runner import describe_dataset_local
    from reid.distributed.prepare_job import prepare_dataset
    from reid.distributed.runtime import ensure_ray

    ensure_ray()
    generate(f"{root}/raw", identities, images, seed=0, splits=splits, progress=False)
    uri = prepare_dataset("cuhk-pedes", f"{root}/raw", f"{root}/dataset", overwrite=True, seed=0).uri
    describe_dataset_local(uri, DescribeConfig(backend="oracle"))
    return uri


def train_and_score(overrides: list[str], root: str) -> dict[str, float]:
    """Test R1/mAP with and without descriptions of the val-chosen checkpoint, and seconds per step."""
    import torch

    from reid.models.export import load_inference_checkpoint
    from reid.training.setup import train_local
    from reid.training.validation import SplitValidator

    config = load_config("pkg://demo", ["train.engine=torch", "train.pictures=false", "eval.probes=false",
                                        *overrides])
    start = time.perf_counter()
    result, context = train_local(config, root)
    seconds = sum(r["epoch_seconds"] for r in context.reports) / max(result.state.step, 1)
    model = load_inference_checkpoint(f"{root}/best")[0]
    image_only = replace(config, data=replace(config.data, use_descriptions=False))
    plain = SplitValidator(image_only, torch.device("cpu"))(model, config.data.test_split)
    out = {"R1": result.test_metrics["R1"], "mAP": result.test_metrics["mAP"], "image R1": plain["R1"],
           "image mAP": plain["mAP"], "s/step": seconds, "wall": time.perf_counter() - start}
    return out


def summary(values: list[float]) -> str:
    array = np.asarray(values)
    return f"{array.mean():5.1f} ± {array.std(ddof=1) if len(array) > 1 else 0.0:4.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=60)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps per run (2 epochs)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", nargs="+", default=[*ROWS, *BASELINES, *IMAGE_ROWS],
                        choices=[*ROWS, *BASELINES, *IMAGE_ROWS])
    parser.add_argument("--data", default=None, help="a prepared, described dataset to reuse (default: build one)")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override added to every row (a probe on top of the rows; repeatable)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from reid.evaluation.selection import parse_seeds

    seeds = parse_seeds(args.seeds)
    print("| row | test R1 (image + description) | mAP | test R1 (image only) | mAP | s/step |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: |", flush=True)
    with tempfile.TemporaryDirectory(prefix="reid-recipe-") as tmp:
        data = args.data or build_dataset(tmp, args.identities, args.images)
        cumulative: list[str] = []
        for name in args.rows:
            label, overrides = ROWS.get(name) or BASELINES.get(name) or IMAGE_ROWS[name]
            if name in ROWS:
                cumulative += overrides
                overrides = cumulative
            elif name in BASELINES:
                overrides = (cumulative or BEFORE) + overrides
            budget = [f"data.uri={data}", "train.epochs=2", f"train.steps_per_epoch={args.steps // 2}"]
            runs = [train_and_score([*budget, *overrides, *args.extra, f"seed={seed}"], f"{tmp}/{name}-{seed}")
                    for seed in seeds]
            cells = [summary([r[k] for r in runs]) for k in ("R1", "mAP", "image R1", "image mAP")]
            print(f"| {label} | " + " | ".join(cells) + f" | {np.mean([r['s/step'] for r in runs]):.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
