"""Benchmark: describe requests/s against a local endpoint with added latency, vs the ideal concurrency / latency.

    python jobs/bench_describe.py --images 3200 --latency 0.2 --concurrency 32 --engines local,ray

The endpoint runs in a child process (so its threads do not share our interpreter lock). For each engine
the table gives the steady request rate seen by the endpoint (first request in to last answer out) and
the job's end-to-end rate (including starting Ray and the actors, not imports), each as a ratio of the
ideal rate.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from reid.data.records import IDENTITY_SCHEMA
from reid.describe.config import DescribeConfig

KEY_ENV = "REID_BENCH_DESCRIBE_KEY"


def _serve(latency_s: float, conn) -> None:
    from reid.describe.local_endpoint import EndpointScript, LocalChatEndpoint

    script = EndpointScript(latency_s=latency_s)
    with LocalChatEndpoint(script) as ep:
        conn.send(ep.base_url)
        while True:
            command = conn.recv()
            if command == "stop":
                return
            with script.lock:
                arrivals = sorted(t for times in script.times.values() for t in times)
                conn.send((arrivals, sum(script.answered.values())))
                script.times.clear()
                script.answered.clear()
                script.requests.clear()


def write_dataset(root: Path, images: int, per_shard: int = 400) -> str:
    """``images`` distinct small JPEGs in identity rows of 4 images, ``per_shard`` images per shard."""
    (root / "identities" / "train").mkdir(parents=True)
    rows, shard = [], 0
    for person in range(images // 4):
        ids, data = [], []
        for k in range(4):
            n = person * 4 + k
            img = Image.new("RGB", (32, 64), (n % 256, (n // 256) % 256, (n * 7) % 256))
            buf = io.BytesIO()
            img.save(buf, "JPEG")
            ids.append(f"p{person:05d}/{k}.jpg")
            data.append(buf.getvalue())
        rows.append({"person_id": person, "source_id": str(person), "split": "train", "image_ids": ids,
                     "images": data, "captions": [["A tall man in a red coat."]] * 4, "clothes_ids": [-1] * 4,
                     "attributes": [""] * 4})
        if len(rows) * 4 >= per_shard:
            pq.write_table(pa.Table.from_pylist(rows, schema=IDENTITY_SCHEMA),
                           root / "identities" / "train" / f"part-{shard:05d}.parquet")
            rows, shard = [], shard + 1
    if rows:
        pq.write_table(pa.Table.from_pylist(rows, schema=IDENTITY_SCHEMA),
                       root / "identities" / "train" / f"part-{shard:05d}.parquet")
    return str(root)


def run_engine(engine: str, uri: str, cfg: DescribeConfig) -> float:
    """Describe the whole dataset with ``engine``; return the wall time in seconds (imports excluded)."""
    from reid.describe.runner import describe_dataset_local
    from reid.distributed.describe_job import describe_dataset

    started = time.perf_counter()
    if engine == "local":
        summary = describe_dataset_local(uri, cfg)
    else:
        summary = describe_dataset(uri, cfg, num_cpus=2)
    if summary["ok"] != summary["images"]:
        raise RuntimeError(f"{engine}: only {summary['ok']} of {summary['images']} images described")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3200)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--actors", type=int, default=2, help="Ray actors (threads each = concurrency / actors)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--engines", default="local,ray")
    args = parser.parse_args()

    os.environ[KEY_ENV] = "bench-key"
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(args.latency, child), daemon=True)
    server.start()
    base_url = parent.recv()
    ideal = args.concurrency / args.latency
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            uri = write_dataset(Path(tmp) / engine, args.images)
            cfg = DescribeConfig(backend="mllm", base_url=base_url, api_key_env=KEY_ENV,
                                 concurrency=args.concurrency, actors=args.actors if engine == "ray" else 1,
                                 batch_size=args.batch_size, splits=("train",), part_mode="joint",
                                 fallback_to_rules=False)
            wall = run_engine(engine, uri, cfg)
            parent.send("stats")
            arrivals, answered = parent.recv()
            steady = answered / (arrivals[-1] - arrivals[0] + args.latency)
            rows.append((engine, answered, wall, steady, answered / wall))
    parent.send("stop")
    server.join(timeout=10)

    print(f"\nconcurrency {args.concurrency}, added latency {args.latency * 1000:.0f} ms, "
          f"ideal {ideal:.1f} req/s, {args.images} images")
    print(f"{'engine':<8} {'requests':>8} {'wall s':>8} {'steady req/s':>13} {'ratio':>6} "
          f"{'end-to-end req/s':>17} {'ratio':>6}")
    print(f"{'ideal':<8} {args.images:>8} {args.images / ideal:>8.2f} {ideal:>13.1f} {1.0:>6.2f} {ideal:>17.1f} "
          f"{1.0:>6.2f}")
    for engine, answered, wall, steady, end_to_end in rows:
        print(f"{engine:<8} {answered:>8} {wall:>8.2f} {steady:>13.1f} {steady / ideal:>6.2f} {end_to_end:>17.1f} "
              f"{end_to_end / ideal:>6.2f}")


if __name__ == "__main__":
    main()
