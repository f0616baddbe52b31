"""The search service under load: queries/s and p50/p99 latency through HTTP at concurrency 1 and 16, for
galleries of 10k, 100k and 1M embeddings, exact and approximate (FAISS), against a plain single-process
numpy top-k over the same matrix in the same run; recall@10 of the approximate index against exact. "Search
alone" is the service's search call in this process, one query at a time, without HTTP and the query encoder.

    python jobs/bench_serve.py --checkpoint runs/demo/checkpoints/demo/best [--sizes 10000 100000 1000000]
        [--approx ivf] [--requests 200] [--workdir runs/bench-serve]

The galleries are synthetic vectors (clustered like identities, L2-normalised, of the checkpoint's width)
written as gallery indexes of the checkpoint, so the service loads and checks them as it would a real one;
the queries are real captions encoded by the service's query encoder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import requests

CAPTIONS = ["a tall man with short grey hair in a red jacket", "a woman in a white coat carrying a black bag",
            "a young man wearing blue jeans and white trainers", "a short girl with a ponytail and a pink skirt"]


def synthetic_index(out: str, checkpoint: str, size: int, dim: int, seed: int = 0) -> np.ndarray:
    """Write a gallery index of ``size`` clustered unit vectors for ``checkpoint``; returns the matrix."""
    from reid.evaluation.gallery_index import checkpoint_identity, write_manifest, write_shard

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, size // 10), dim)).astype(np.float32)
    identity = {**checkpoint_identity(checkpoint), "gallery": f"synthetic:{size}", "split": "test",
                "gallery_fingerprint": f"synthetic-{size}-{seed}", "use_descriptions": False, "thumb_size": [1, 1]}
    from reid.evaluation.gallery_index import index_key

    key, shards, parts = index_key(identity), [], []
    for start in range(0, size, 100_000):
        n = min(100_000, size - start)
        pids = rng.integers(0, len(centres), n)
        vectors = centres[pids] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        name = f"test/part-{start // 100_000:05d}"
        table = pa.table({"image_id": pa.array([f"img{start + i}" for i in range(n)]),
                          "person_id": pa.array(pids.astype(np.int64)),
                          "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
                          "thumbnail": pa.array([b""] * n, pa.binary()),
                          "description": pa.array([None] * n, pa.string())})
        write_shard(out, name, table, dim, key)
        shards.append(name)
        parts.append(vectors)
    write_manifest(out, identity, shards, size, dim)
    return np.concatenate(parts)


def load(url: str, requests_n: int, concurrency: int) -> tuple[float, float, float]:
    """``(queries/s, p50 ms, p99 ms)`` of ``requests_n`` searches at ``concurrency``."""
    session = requests.Session()

    def one(i: int) -> float:
        start = time.perf_counter()
        response = session.post(f"{url}/search", json={"text": CAPTIONS[i % len(CAPTIONS)], "top": 10}, timeout=120)
        response.raise_for_status()
        return time.perf_counter() - start

    for i in range(4):
        one(i)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = sorted(pool.map(one, range(requests_n)))
    wall = time.perf_counter() - started
    return requests_n / wall, 1000 * statistics.median(latencies), 1000 * latencies[int(0.99 * (len(latencies) - 1))]


def numpy_topk(gallery: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The plain single-process baseline: the best 10 of ``gallery @ query [1, E]`` by argpartition."""
    scores = gallery @ query[0]
    top = np.argpartition(-scores, 10)[:10]
    return top[np.argsort(-scores[top])]


def search_rate(search, queries: np.ndarray, seconds: float = 3.0) -> float:
    """Queries/s of ``search(query [1, E])`` in this process, one query at a time (no HTTP, no encoder)."""
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        search(queries[done % len(queries)][None])
        done += 1
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--approx", choices=("ivf", "hnsw"), default="ivf")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--workdir", default="runs/bench-serve")
    args = parser.parse_args()
    from ray import serve

    from reid.distributed.serve_app import serve_index
    from reid.evaluation.loading import load_encoder
    from reid.evaluation.topk import ApproxIndex, exact_topk, recall_at_k

    encoder, _ = load_encoder(args.checkpoint, "cpu")
    queries = encoder.encode_text(CAPTIONS).numpy()
    dim = queries.shape[1]
    rows = []
    for size in args.sizes:
        out = str(Path(args.workdir).absolute() / f"index-{size}")
        gallery = synthetic_index(out, args.checkpoint, size, dim)
        baseline = search_rate(partial(numpy_topk, gallery), queries)
        probe = gallery[np.random.default_rng(1).integers(0, size, 200)] + 0.05 * np.random.default_rng(2) \
            .standard_normal((200, dim)).astype(np.float32)
        approx_index = ApproxIndex.build(gallery, args.approx)
        recall = recall_at_k(approx_index.search(probe, 10)[1], exact_topk(probe, gallery, 10)[1])
        in_process = {"exact": search_rate(partial(exact_topk, gallery=gallery, k=10), queries),
                      args.approx: search_rate(partial(approx_index.search, k=10), queries)}
        del approx_index
        for search in ("exact", args.approx):
            url = serve_index(out, args.checkpoint, port=8123, approx=None if search == "exact" else search,
                              blocking=False)
            for concurrency in (1, 16):
                rate, p50, p99 = load(url, args.requests, concurrency)
                rows.append({"size": size, "search": search, "concurrency": concurrency, "qps": rate, "p50_ms": p50,
                             "p99_ms": p99, "numpy_qps": baseline, "search_qps": in_process[search],
                             "recall@10": recall if search != "exact" else 1.0})
                print(json.dumps(rows[-1]), flush=True)
            serve.delete("reid-search")
    print("\n| gallery | search | concurrency | HTTP queries/s | p50 ms | p99 ms | numpy top-k queries/s "
          "| HTTP / numpy | search alone queries/s | search alone / numpy | recall@10 |\n"
          "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['size']:,} | {r['search']} | {r['concurrency']} | {r['qps']:.1f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['numpy_qps']:.1f} | {r['qps'] / r['numpy_qps']:.2f} | {r['search_qps']:.1f} | "
              f"{r['search_qps'] / r['numpy_qps']:.2f} | {r['recall@10']:.3f} |")


if __name__ == "__main__":
    main()
