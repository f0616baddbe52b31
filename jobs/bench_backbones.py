"""Image backbones compared: what each retrieves from the pixels alone on the demo's split, its cost, and its
learning curve against steps.

    python jobs/bench_backbones.py [--workdir runs/backbones] [--backbones vit cnn efficientnet-lite0 mobilenetv2]
                                   [--seeds 0,1,2] [--steps 200 400] [--identities 60] [--images 6] [--resume]
                                   [--set KEY=VALUE ...]

Every run trains the demo's recipe (``pkg://demo``: BDAM, Mamba fusion, every loss, GradNorm, the image-only
InfoNCE term) with the row's backbone, in one process on the plain PyTorch engine with one thread, for the
same number of steps, on the demo's synthetic standard split (oracle descriptions); the checkpoint chosen on
val is scored on test with the gallery of images alone and with descriptions. Each (backbone, steps, seed)
runs in a fresh subprocess, so its peak memory is that process's maximum resident set. Results are appended
to ``<workdir>/results.jsonl`` as they finish; ``--resume`` skips the runs already there (the job can be
stopped and continued across sessions). Prints a markdown table: mean ± std over seeds of image-only test
R1/mAP, R1 with descriptions, seconds per step and peak memory; the ratio column is s/step against the
demo's EfficientNet-Lite0 measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BACKBONES: dict[str, list[str]] = {
    "vit": ["model.vision_name_or_path=null", "model.vision_config={hidden_size: 64, num_hidden_layers: 2, "
            "num_attention_heads: 4, intermediate_size: 128, patch_size: 16}", "optim.pretrained_lr_ratio=1"],
    "cnn": ["model.vision_name_or_path=null", "model.vision_config={model_type: cnn, hidden_size: 64}",
            "optim.pretrained_lr_ratio=1"],
    "efficientnet-lite0": ["model.vision_name_or_path=pkg:efficientnet-lite0",
                           "model.vision_config={hidden_size: 64, trunk: full}"],
    "mobilenetv2": ["model.vision_name_or_path=pkg:mobilenetv2", "model.vision_config={hidden_size: 64}"],
}
LABELS = {"vit": "ViT 2 x 64, patch 16, random init", "cnn": "CNN 32-64-128-256, random init",
          "efficientnet-lite0": "EfficientNet-Lite0, ImageNet, whole trunk", "mobilenetv2": "MobileNetV2, ImageNet"}
BASELINE = "efficientnet-lite0"


def run_one(backbone: str, steps: int, seed: int, data: str, extra: list[str], root: str) -> dict:
    """Train and score one run in this process; the peak resident memory is this process's."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_recipe import train_and_score

    torch.set_num_threads(1)
    # GradNorm every step, as when the table in docs/benchmarks.md was measured (the demo now updates every 4th)
    budget = [f"data.uri={data}", "train.epochs=2", f"train.steps_per_epoch={steps // 2}", f"seed={seed}",
              "gradnorm.update_every=1"]
    scores = train_and_score([*budget, *BACKBONES[backbone], *extra], root)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"backbone": backbone, "steps": steps, "seed": seed, **scores, "peak MiB": peak_kib / 1024}


def finished(results: Path) -> dict[tuple[str, int, int], dict]:
    """The runs already in ``results`` (one JSON object per line), keyed by (backbone, steps, seed)."""
    if not results.exists():
        return {}
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return {(r["backbone"], r["steps"], r["seed"]): r for r in rows}


def summary(values: list[float]) -> str:
    array = np.asarray(values, dtype=float)
    return f"{array.mean():.1f} ± {array.std(ddof=1) if len(array) > 1 else 0.0:.1f}"


def table(rows: dict[tuple[str, int, int], dict], backbones: list[str], steps: list[int]) -> str:
    """One line per (backbone, steps): mean ± std over the seeds that finished."""
    lines = ["| backbone | steps | seeds | test R1 (image only) | mAP | test R1 (image + description) | s/step | "
             "ratio | peak MiB |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in steps:
        base = [r["s/step"] for (b, s, _), r in rows.items() if b == BASELINE and s == n]
        for backbone in backbones:
            runs = [r for (b, s, _), r in sorted(rows.items()) if b == backbone and s == n]
            if not runs:
                continue
            speed = np.mean([r["s/step"] for r in runs])
            ratio = f"{speed / np.mean(base):.2f}" if base else "-"
            seeds = ",".join(str(r["seed"]) for r in runs)
            lines.append(f"| {LABELS[backbone]} | {n} | {seeds} | {summary([r['image R1'] for r in runs])} | "
                         f"{summary([r['image mAP'] for r in runs])} | {summary([r['R1'] for r in runs])} | "
                         f"{speed:.2f} | {ratio} | {max(r['peak MiB'] for r in runs):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/backbones")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", nargs="+", type=int, default=[200], help="optimiser steps per run (a curve)")
    parser.add_argument("--identities", type=int, default=60)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--resume", action="store_true", help="skip the runs already in <workdir>/results.jsonl")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override added to every run (repeatable)")
    parser.add_argument("--one", nargs=3, metavar=("BACKBONE", "STEPS", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = Path(args.workdir).resolve()
    data = str(workdir / "dataset")
    if args.one:
        backbone, steps, seed = args.one[0], int(args.one[1]), int(args.one[2])
        row = run_one(backbone, steps, seed, data, args.extra, str(workdir / f"run-{backbone}-{steps}-{seed}"))
        print(json.dumps(row))
        return
    from reid.evaluation.selection import parse_seeds

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_recipe import build_dataset

    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "dataset" / "manifest.json").exists():
        import ray

        build_dataset(str(workdir), args.identities, args.images)
        ray.shutdown()  # the runs need no Ray: its processes would take their share of the cores
    results = workdir / "results.jsonl"
    if not args.resume and results.exists():
        raise SystemExit(f"{results} exists: pass --resume to continue it, or choose another --workdir")
    done = finished(results)
    todo = [(b, n, s) for n in args.steps for s in parse_seeds(args.seeds) for b in args.backbones
            if (b, n, s) not in done]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for i, (backbone, steps, seed) in enumerate(todo, 1):
        start = time.perf_counter()
        command = [sys.executable, __file__, "--workdir", str(workdir), "--one", backbone, str(steps), str(seed)]
        command += [f"--set={item}" for item in args.extra]
        done_run = subprocess.run(command, env=env, capture_output=True, text=True)
        if done_run.returncode != 0:
            raise SystemExit(f"{backbone} {steps} steps seed {seed} failed:\n{done_run.stderr[-3000:]}")
        row = json.loads(done_run.stdout.strip().splitlines()[-1])
        with results.open("a") as out:
            out.write(json.dumps(row) + "\n")
        done[(backbone, steps, seed)] = row
        print(f"[{i}/{len(todo)}] {backbone}, {steps} steps, seed {seed}: image-only test R1 {row['image R1']:.1f}, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    print(table(done, args.backbones, args.steps))


if __name__ == "__main__":
    main()
