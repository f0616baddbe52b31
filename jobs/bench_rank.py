"""Benchmark ``reid.evaluation.rank`` against an IRRA-style full-sort baseline at CUHK-PEDES and ICFG-PEDES size.

Each method runs in a fresh process on the same inputs (saved once to a temporary directory).
Time: wall clock of the call (``time.perf_counter``), after a warm-up that compiles the numba kernel.
Memory: the process's peak resident set size during the call above its resident size just before it
(Linux: ``/proc/self/clear_refs`` resets ``VmHWM``, then ``VmHWM - VmRSS``), i.e. the working memory the
method adds to its inputs; the total peak (inputs included) is shown too.
Embeddings hold small integers, so every score is exact in float32 and all methods rank identical
numbers (with many exact ties, which exercises the tie rule). The run fails unless all metrics agree to 1e-4.

    python jobs/bench_rank.py --sizes cuhk icfg
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SIZES = {"cuhk": (6156, 3074), "icfg": (19848, 19848)}  # (text queries, gallery images)
IDENTITIES = 1000
EMBED_DIM = 256
METHODS = ("baseline", "rank", "rank_embeddings")
KEYS = ("R1", "R5", "R10", "mAP", "mINP")


def baseline_rank(similarity: torch.Tensor, q_pids: torch.Tensor, g_pids: torch.Tensor) -> dict[str, float]:
    """What IRRA's ``rank`` does: sort every row of the whole matrix (stable, descending, so ties keep
    gallery order), then cumulative sums over all positions; INP per query, AP via per-position precision."""
    order = torch.argsort(similarity, dim=1, descending=True, stable=True)  # [Nq, Ng] int64
    matches = g_pids[order].eq(q_pids.view(-1, 1))  # [Nq, Ng]
    cmc = matches[:, :10].cumsum(1).clamp(max=1).float().mean(0) * 100
    cum = matches.cumsum(1)  # [Nq, Ng] int64
    num_rel = matches.sum(1)
    inp = torch.cat([cum[i, row.nonzero()[-1]] / (row.nonzero()[-1] + 1.0) for i, row in enumerate(matches)])
    precision = torch.stack([cum[:, j] / (j + 1.0) for j in range(cum.shape[1])], 1) * matches
    ap = precision.sum(1) / num_rel
    values = (cmc[0], cmc[4], cmc[9], ap.mean() * 100, inp.mean() * 100)
    return {k: float(v) for k, v in zip(KEYS, values, strict=True)}


def make_inputs(n_queries: int, n_gallery: int, seed: int, out: Path) -> None:
    """Integer-valued embeddings with person structure, their pids and their similarity matrix."""
    rng = np.random.default_rng(seed)
    g_pids = np.concatenate([np.arange(IDENTITIES), rng.integers(0, IDENTITIES, n_gallery - IDENTITIES)])
    rng.shuffle(g_pids)
    per_image = np.full(n_gallery, n_queries // n_gallery)
    per_image[rng.choice(n_gallery, n_queries - per_image.sum(), replace=False)] += 1
    q_pids = np.repeat(g_pids, per_image)  # every caption describes one gallery image
    centres = rng.integers(-3, 4, (IDENTITIES, EMBED_DIM))
    g_emb = (centres[g_pids] + rng.integers(-6, 7, (n_gallery, EMBED_DIM))).astype(np.float32)
    q_emb = (centres[q_pids] + rng.integers(-6, 7, (n_queries, EMBED_DIM))).astype(np.float32)
    for name, array in (("q_emb", q_emb), ("g_emb", g_emb), ("q_pids", q_pids), ("g_pids", g_pids)):
        np.save(out / f"{name}.npy", array)
    np.save(out / "sim.npy", q_emb @ g_emb.T)  # exact: |score| < 2^24


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(method: str, inputs: Path, chunk_size: int) -> dict:
    """Run one method once in this process; return time, memory and metrics."""
    from reid.evaluation.ranking import rank, rank_embeddings

    q_pids = torch.from_numpy(np.load(inputs / "q_pids.npy"))
    g_pids = torch.from_numpy(np.load(inputs / "g_pids.npy"))
    rank(np.random.rand(4, 6).astype(np.float32), [0, 1, 0, 1], [0, 1, 0, 1, 0, 1])  # compile / load numba
    if method == "rank_embeddings":
        q, g = torch.from_numpy(np.load(inputs / "q_emb.npy")), torch.from_numpy(np.load(inputs / "g_emb.npy"))
        call = lambda: rank_embeddings(q, g, q_pids, g_pids, chunk_size=chunk_size)  # noqa: E731
    else:
        sim = torch.from_numpy(np.load(inputs / "sim.npy"))
        if method == "baseline":
            call = lambda: baseline_rank(sim, q_pids, g_pids)  # noqa: E731
        else:
            call = lambda: rank(sim, q_pids, g_pids, chunk_size=chunk_size)  # noqa: E731
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = proc_status_kib("VmRSS")
    start = time.perf_counter()
    metrics = call()
    seconds = time.perf_counter() - start
    peak = proc_status_kib("VmHWM")
    return {"seconds": seconds, "extra_mib": (peak - before) / 1024, "peak_mib": peak / 1024, "metrics": metrics}


def run_method(method: str, inputs: Path, chunk_size: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--inputs", str(inputs), "--chunk-size", str(chunk_size)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["cuhk"])
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.inputs, args.chunk_size)))
        return
    print(f"torch threads {torch.get_num_threads()}, chunk size {args.chunk_size}")
    header = (f"| size | method | time s | speed-up | extra peak MiB | memory ratio | total peak MiB | "
              f"{' | '.join(KEYS)} |")
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    for size in args.sizes:
        n_queries, n_gallery = SIZES[size]
        with tempfile.TemporaryDirectory(prefix="bench_rank_") as tmp:
            make_inputs(n_queries, n_gallery, args.seed, Path(tmp))
            results = {}
            for method in METHODS:
                print(f"{size}: running {method} ...", file=sys.stderr, flush=True)
                results[method] = run_method(method, Path(tmp), args.chunk_size)
        base = results["baseline"]
        for method, res in results.items():
            for key in KEYS:
                diff = abs(res["metrics"][key] - base["metrics"][key])
                assert diff <= 1e-4, f"{size} {method} {key}: {res['metrics'][key]} vs {base['metrics'][key]}"
            rows.append(
                f"| {size} {n_queries}x{n_gallery} | {method} | {res['seconds']:.2f} | "
                f"{base['seconds'] / res['seconds']:.1f}x | {res['extra_mib']:.0f} | "
                f"{res['extra_mib'] / base['extra_mib']:.4f} | {res['peak_mib']:.0f} | "
                + " | ".join(f"{res['metrics'][k]:.4f}" for k in KEYS) + " |"
            )
    print("\n".join(rows))
    print("all metrics agree with the baseline to 1e-4")


if __name__ == "__main__":
    main()
