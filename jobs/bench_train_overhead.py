"""Samples/s of one Ray Train worker with DeepSpeed against a plain PyTorch loop on the same model, batch and
in-memory data, measured in one run. Target: overhead <= 15 %.

    python jobs/bench_train_overhead.py [--config pkg://demo] [--data URI] [--steps 40] [--threads 1] [--repeats 3]

Without ``--data`` a small synthetic dataset is generated and prepared in a temporary directory.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from typing import Any

import torch

from reid.config import Config, dump_config, load_config


def build_batches(config: Config, count: int) -> list[dict[str, torch.Tensor]]:
    """``count`` P x K training batches as tensors, identical in every process (same seed)."""
    from reid.training.batches import InMemoryBatches
    from reid.training.loop import drop_absent_descriptions, to_tensors

    source = InMemoryBatches(config.data, config.seed, {}, config.storage, steps=count)
    return [drop_absent_descriptions(to_tensors(b, torch.device("cpu"))) for b in source.batches(0)]


def run_steps(config: Config, engine_name: str, steps: int, warmup: int, threads: int) -> float:
    """Samples/s of ``steps`` optimiser steps after ``warmup`` steps, with the loop's step order."""
    from dataclasses import replace

    from reid.losses.objective import compute_losses, create_balancer
    from reid.models.factory import create_model
    from reid.training.setup import build_engine, seed_everything

    torch.set_num_threads(threads)
    config = replace(config, train=replace(config.train, engine=engine_name, workers=1))
    batches = build_batches(config, steps + warmup)
    seed_everything(config.seed, False)
    model = create_model(config)
    engine = build_engine(config, model, steps + warmup, 1)
    balancer = create_balancer(config.loss, config.gradnorm, config.model.bdam.enabled,
                               config.model.bdam.gate)
    start, samples = 0.0, 0
    for i, batch in enumerate(batches):
        if i == warmup:
            start, samples = time.perf_counter(), 0
        outputs = engine.forward(batch)
        losses = compute_losses(outputs, batch, config.loss)
        engine.backward(balancer.weighted_loss(losses), retain_graph=balancer.will_update())
        balancer.update(losses, engine.module.shared_parameters())
        engine.step()
        samples += len(batch["pids"])
    return samples / (time.perf_counter() - start)


def ray_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the DeepSpeed engine over the same batches; writes samples/s to ``out``."""
    import json

    import yaml

    from reid.config.typecheck import build_dataclass

    config = build_dataclass(Config, yaml.safe_load(loop_config["config_yaml"]), "", "<bench>")
    rate = run_steps(config, loop_config["engine"], loop_config["steps"], loop_config["warmup"], loop_config["threads"])
    with open(loop_config["out"], "w") as handle:
        json.dump({"samples_per_s": rate}, handle)


def ray_rate(config: Config, steps: int, warmup: int, threads: int, storage: str, engine: str = "deepspeed") -> float:
    import json

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    out = f"{storage}-rate.json"  # one machine: the worker's file is the driver's
    trainer = TorchTrainer(
        ray_worker, train_loop_config={"config_yaml": dump_config(config), "steps": steps, "warmup": warmup,
                                       "threads": threads, "out": out, "engine": engine},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": threads}),
        run_config=RunConfig(name=f"bench-overhead-{engine}", storage_path=storage),
    )
    trainer.fit()
    with open(out) as handle:
        return float(json.load(handle)["samples_per_s"])


def synthetic_dataset(root: str, seed: int) -> str:
    from reid.data.synth import generate
    from reid.distributed.prepare_job import prepare_dataset

    generate(f"{root}/raw", 40, 4, seed, progress=False)
    return prepare_dataset("cuhk-pedes", f"{root}/raw", f"{root}/dataset", overwrite=True, seed=seed).uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="pkg://demo")
    parser.add_argument("--data", default=None, help="a prepared dataset URI (default: synthesise one)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (and Ray CPUs) of each loop")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (plain, Ray torch, Ray DeepSpeed)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from reid.distributed.runtime import ensure_ray

    ensure_ray()
    rates: dict[str, list[float]] = {"plain": [], "ray_torch": [], "ray_deepspeed": []}
    with tempfile.TemporaryDirectory(prefix="reid-bench-") as tmp:
        data = args.data or synthetic_dataset(tmp, 0)
        config = load_config(args.config, [f"data.uri={data}", "data.use_descriptions=false"])
        for r in range(args.repeats):  # interleaved, so slow drifts of a shared machine hit every loop alike
            rates["plain"].append(run_steps(config, "torch", args.steps, args.warmup, args.threads))
            for engine in ("torch", "deepspeed"):
                rates[f"ray_{engine}"].append(ray_rate(config, args.steps, args.warmup, args.threads,
                                                       f"{tmp}/ray{r}", engine))
        rates["plain"].append(run_steps(config, "torch", args.steps, args.warmup, args.threads))
    median = {k: statistics.median(v) for k, v in rates.items()}
    baseline = median["plain"]
    batch = config.data.batch.p * config.data.batch.k
    print(f"\nmodel {args.config}, batch {batch} ({config.data.image_size[0]}x{config.data.image_size[1]}), "
          f"{args.steps} steps after {args.warmup}, {args.threads} thread(s), medians of {args.repeats} rounds")
    print("| loop | samples/s (median) | runs | ratio |")
    print("| --- | ---: | --- | ---: |")
    for key, name in (("plain", "plain PyTorch loop in the driver"), ("ray_torch", "Ray Train worker, plain PyTorch"),
                      ("ray_deepspeed", f"Ray Train worker + DeepSpeed ZeRO-{config.train.zero_stage}")):
        runs = ", ".join(f"{v:.0f}" for v in rates[key])
        print(f"| {name} | {median[key]:.1f} | {runs} | {median[key] / baseline:.3f} |")
    print(f"overhead of Ray Train + DeepSpeed: {100 * (1 - median['ray_deepspeed'] / baseline):.1f} % (target <= 15 %)")

if __name__ == "__main__":
    main()
