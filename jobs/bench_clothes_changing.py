"""Clothes-changing quality: the full model against the baseline (no BDAM, no fusion) on the synthetic
clothes-changing split (every test person wears >= 2 outfits), seeds 0, 1, 2, the same training budget.
Prints mean +- std of test mAP and R1 of each. Target: full >= baseline + 3 mAP.

    python jobs/bench_clothes_changing.py [--config pkg://demo] [--identities 80] [--images 6]
        [--seeds 0,1,2] [--set train.epochs=4 ...]

Descriptions come from the noisy ground-truth describer (``oracle``, image-grounded), so the full model's
fusion reads them at test time too. Training runs in this process without Ray (``train_local``, plain
PyTorch engine); the model, data and budget are those of the config.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from dataclasses import replace

from reid.config import Config, load_config

BASELINE = ["model.bdam.enabled=false", "model.fusion.kind=none"]


def build_dataset(root: str, identities: int, images: int) -> str:
    """Synthesise (clothes-changing), prepare and describe (oracle) a dataset under ``root``."""
    from reid.data.synth import generate
    from reid.describe.config import DescribeConfig
    from reid.describe.runner import describe_dataset_local
    from reid.distributed.prepare_job import prepare_dataset

    generate(f"{root}/raw", identities, images, seed=0, clothes_changing=True, progress=False)
    uri = prepare_dataset("cuhk-pedes", f"{root}/raw", f"{root}/dataset", overwrite=True, seed=0).uri
    describe_dataset_local(uri, DescribeConfig(backend="oracle"))
    return uri


def train_and_test(config: Config, root: str) -> dict[str, float]:
    from reid.training.setup import train_local

    result, _ = train_local(replace(config, train=replace(config.train, engine="torch", pictures=False)), root)
    return result.test_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="pkg://demo")
    parser.add_argument("--identities", type=int, default=80)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], help="config override for both models")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from reid.distributed.runtime import ensure_ray
    from reid.evaluation.selection import parse_seeds, summarize_seeds

    ensure_ray()
    seeds = parse_seeds(args.seeds)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="reid-cc-") as tmp:
        data = build_dataset(tmp, args.identities, args.images)
        for name, extra in (("full", []), ("baseline", BASELINE)):
            results = {}
            for seed in seeds:
                config = load_config(args.config, [f"data.uri={data}", f"seed={seed}", *args.set, *extra])
                results[seed] = train_and_test(config, f"{tmp}/{name}-{seed}")
                print(f"{name} seed {seed}: " + " ".join(f"{k}={v:.1f}" for k, v in results[seed].items()),
                      flush=True)
            rows[name] = summarize_seeds(results)
    print(f"\nclothes-changing test split, seeds {args.seeds}, config {args.config} {' '.join(args.set)}")
    print(f"{'model':10s} {'mAP':>14s} {'R1':>14s}")
    for name, summary in rows.items():
        print(f"{name:10s} {summary.mean['mAP']:7.2f} ± {summary.std['mAP']:4.2f} "
              f"{summary.mean['R1']:7.2f} ± {summary.std['R1']:4.2f}")
    gap = rows["full"].mean["mAP"] - rows["baseline"].mean["mAP"]
    print(f"full - baseline: {gap:+.2f} mAP (target >= +3)")


if __name__ == "__main__":
    main()
