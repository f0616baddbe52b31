"""Image backbones compared: what each retrieves from the pixels alone on the demo's split, its cost, and its
learning curve against steps and against the number of training identities.

    python jobs/bench_backbones.py [--workdir runs/backbones] [--backbones vit cnn efficientnet-lite0 mobilenetv2]
                                   [--seeds 0,1,2] [--steps 200 400] [--identities 60] [--images 6] [--resume]
                                   [--train-identities 100 400 1600 [--held-out 100]] [--prepare-only]
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

With ``--train-identities``, one dataset of ``max(N) + 2 * held-out`` people is synthesised once (``held-out``
people each for val and test, the rest for training) and every run trains on the first N training people of it
(a dataset that shares the full one's val and test sets, its descriptions and its images): the learning curve
against training identities, on one fixed val and test set. ``--prepare-only`` builds the dataset(s) and stops
(the only step that starts Ray; the runs do not).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
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
    # the demo's backbone as shipped: EfficientNet-Lite0 up to its last stride-16 stage
    "efficientnet-lite0-s16": ["model.vision_name_or_path=pkg:efficientnet-lite0",
                               "model.vision_config={hidden_size: 64, trunk: stride16}"],
}
LABELS = {"vit": "ViT 2 x 64, patch 16, random init", "cnn": "CNN 32-64-128-256, random init",
          "efficientnet-lite0": "EfficientNet-Lite0, ImageNet, whole trunk", "mobilenetv2": "MobileNetV2, ImageNet",
          "efficientnet-lite0-s16": "EfficientNet-Lite0, ImageNet, up to stride 16 (the demo's)"}
Key = tuple[str, int, int, int | None]  # backbone, steps, seed, training identities (None: the whole split)
BASELINE = "efficientnet-lite0"


def run_one(backbone: str, steps: int, seed: int, data: str, extra: list[str], root: str,
            train_ids: int | None = None) -> dict:
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
    return {"backbone": backbone, "steps": steps, "seed": seed, "train_ids": train_ids, **scores,
            "peak MiB": peak_kib / 1024}


def finished(results: Path) -> dict[Key, dict]:
    """The runs already in ``results`` (one JSON object per line), keyed by (backbone, steps, seed, training
    identities)."""
    if not results.exists():
        return {}
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return {(r["backbone"], r["steps"], r["seed"], r.get("train_ids")): r for r in rows}


def curve_splits(train_ids: list[int], held_out: int) -> tuple[int, tuple[float, float, float]]:
    """People to synthesise and the train/val/test fractions that give ``max(train_ids)`` training people and
    ``held_out`` each for val and test (``split_counts`` of the synthesiser rounds these exactly)."""
    total = max(train_ids) + 2 * held_out
    return total, (max(train_ids) / total, held_out / total, held_out / total)


def subset_dataset(full: Path, out: Path, train_ids: int) -> Path:
    """A dataset at ``out`` whose training split is the first ``train_ids`` people (by person id) of ``full``'s;
    val, test, descriptions and the rest are links to ``full``'s, and the manifest counts what it holds."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if (out / "manifest.json").exists():
        return out
    table = pa.concat_tables(pq.read_table(f) for f in sorted((full / "identities" / "train").glob("*.parquet")))
    if train_ids > table.num_rows:
        raise SystemExit(f"{full} holds {table.num_rows} training people, fewer than {train_ids}")
    table = table.take(pc.sort_indices(table, [("person_id", "ascending")])).slice(0, train_ids)
    (out / "identities" / "train").mkdir(parents=True, exist_ok=True)
    for entry in full.iterdir():
        if entry.name not in ("identities", "manifest.json"):
            (out / entry.name).symlink_to(entry)
    for split in ("val", "test"):
        (out / "identities" / split).symlink_to(full / "identities" / split)
    pq.write_table(table, out / "identities" / "train" / "part-00000.parquet")
    manifest = json.loads((full / "manifest.json").read_text())
    manifest["counts"]["train"] = {"identities": train_ids,
                                   "images": sum(len(v) for v in table["image_ids"].to_pylist()),
                                   "captions": sum(len(c) for v in table["captions"].to_pylist() for c in v)}
    manifest["subset_of"] = str(full)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def summary(values: list[float]) -> str:
    array = np.asarray(values, dtype=float)
    return f"{array.mean():.1f} ± {array.std(ddof=1) if len(array) > 1 else 0.0:.1f}"


def table(rows: dict[Key, dict], backbones: list[str], steps: list[int], curve: list[int | None]) -> str:
    """One line per (training identities, backbone, steps): mean ± std over the seeds that finished."""
    lines = ["| backbone | train people | steps | seeds | test R1 (image only) | mAP | test R1 (image + description) | "
             "s/step | ratio | peak MiB |", "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for ids in curve:
        for n in steps:
            base = [r["s/step"] for (b, s, _, i), r in rows.items() if b == BASELINE and s == n and i == ids]
            for backbone in backbones:
                runs = [r for (b, s, _, i), r in sorted(rows.items(), key=lambda kv: kv[0][2])
                        if b == backbone and s == n and i == ids]
                if not runs:
                    continue
                speed = np.mean([r["s/step"] for r in runs])
                ratio = f"{speed / np.mean(base):.2f}" if base else "-"
                seeds = ",".join(str(r["seed"]) for r in runs)
                lines.append(f"| {LABELS[backbone]} | {ids or 'all'} | {n} | {seeds} | "
                             f"{summary([r['image R1'] for r in runs])} | {summary([r['image mAP'] for r in runs])} | "
                             f"{summary([r['R1'] for r in runs])} | {speed:.2f} | {ratio} | "
                             f"{max(r['peak MiB'] for r in runs):.0f} |")
    return "\n".join(lines)


def dataset_for(workdir: Path, train_ids: int | None) -> Path:
    """The dataset a run trains on: the whole split, or the subset of its first ``train_ids`` training people."""
    return workdir / "dataset" if train_ids is None else workdir / f"dataset-train{train_ids}"


def prepare(workdir: Path, args: argparse.Namespace) -> None:
    """Synthesise, prepare and describe the dataset once (on a local Ray, shut down after), and cut the subsets."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_recipe import build_dataset

    identities, splits = args.identities, (0.7, 0.1, 0.2)
    if args.train_identities:
        identities, splits = curve_splits(args.train_identities, args.held_out)
    workdir.mkdir(parents=True, exist_ok=True)
    full = workdir / "dataset"
    if not (full / "manifest.json").exists():
        import ray

        build_dataset(str(workdir), identities, args.images, splits)
        ray.shutdown()  # the runs need no Ray: its processes would take their share of the cores
    counts = json.loads((full / "manifest.json").read_text())["counts"]
    if args.train_identities and counts["train"]["identities"] < max(args.train_identities):
        raise SystemExit(f"{full} was built for another curve ({counts['train']['identities']} training people): "
                         "choose another --workdir")
    for n in args.train_identities or ():
        subset_dataset(full, dataset_for(workdir, n), n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/backbones")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", nargs="+", type=int, default=[200], help="optimiser steps per run (a curve)")
    parser.add_argument("--identities", type=int, default=60, help="people synthesised (without --train-identities)")
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--train-identities", nargs="+", type=int, default=None, metavar="N",
                        help="a curve: train on the first N training people of one dataset (fixed val and test)")
    parser.add_argument("--held-out", type=int, default=100, help="val and test people each, with --train-identities")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time, each on one thread")
    parser.add_argument("--prepare-only", action="store_true", help="build the dataset(s) and stop")
    parser.add_argument("--resume", action="store_true", help="skip the runs already in <workdir>/results.jsonl")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override added to every run (repeatable)")
    parser.add_argument("--one", nargs=4, metavar=("BACKBONE", "STEPS", "SEED", "IDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = Path(args.workdir).resolve()
    if args.one:
        backbone, steps, seed = args.one[0], int(args.one[1]), int(args.one[2])
        ids = None if args.one[3] == "all" else int(args.one[3])
        root = workdir / f"run-{backbone}-{steps}-{seed}" if ids is None else \
            workdir / f"run-{backbone}-{steps}-{seed}-ids{ids}"
        row = run_one(backbone, steps, seed, str(dataset_for(workdir, ids)), args.extra, str(root), ids)
        print(json.dumps(row))
        return
    from reid.evaluation.selection import parse_seeds

    if any(n < 1 for n in args.train_identities or ()) or args.held_out < 1 or args.parallel < 1:
        parser.error("--train-identities, --held-out and --parallel take positive counts")
    prepare(workdir, args)
    if args.prepare_only:
        return
    results = workdir / "results.jsonl"
    if not args.resume and results.exists():
        raise SystemExit(f"{results} exists: pass --resume to continue it, or choose another --workdir")
    done = finished(results)
    curve: list[int | None] = list(args.train_identities or [None])
    todo = [(b, n, s, i) for i in curve for n in args.steps for s in parse_seeds(args.seeds) for b in args.backbones
            if (b, n, s, i) not in done]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def run(key: Key) -> tuple[Key, dict, float]:
        backbone, steps, seed, ids = key
        start = time.perf_counter()
        command = [sys.executable, __file__, "--workdir", str(workdir), "--one", backbone, str(steps), str(seed),
                   "all" if ids is None else str(ids), *(f"--set={item}" for item in args.extra)]
        done_run = subprocess.run(command, env=env, capture_output=True, text=True)
        if done_run.returncode != 0:
            raise SystemExit(f"{backbone} {steps} steps seed {seed} ({ids or 'all'} training people) failed:\n"
                             f"{done_run.stderr[-3000:]}")
        return key, json.loads(done_run.stdout.strip().splitlines()[-1]), time.perf_counter() - start

    with ThreadPoolExecutor(args.parallel) as pool:
        for i, future in enumerate(as_completed([pool.submit(run, key) for key in todo]), 1):
            key, row, seconds = future.result()
            with results.open("a") as out:
                out.write(json.dumps(row) + "\n")
            done[key] = row
            people = f", {key[3]} training people" if key[3] is not None else ""
            print(f"[{i}/{len(todo)}] {key[0]}, {key[1]} steps, seed {key[2]}{people}: image-only test R1 "
                  f"{row['image R1']:.1f}, {seconds:.0f} s", flush=True)
    print(table(done, args.backbones, args.steps, curve))


if __name__ == "__main__":
    main()
