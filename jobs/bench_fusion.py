"""Benchmark: Mamba fusion (numba CPU scan) vs a Transformer fusion of equal width and depth, on CPU.

For each sequence length L (image tokens L - 77, text tokens 77; 274 = 197 + 77 is ViT-B/16 at 224x224
plus a 77-token description) it times the whole fusion module (alignment MLPs, gate, layers, pooling,
projection) in training (forward + backward, dropout on) and forward-only under ``torch.no_grad`` (gallery
indexing). Each (kind, L) runs in its own process; peak memory is that process's peak RSS
(``ru_maxrss``) minus its RSS after building the module and inputs and compiling (a short warm-up run),
so it includes activations, gradients and allocator caching. The process's address space is capped
(``--memory-fraction`` of the memory available at its start) so that a configuration too big for the
machine fails alone ("OOM" in the table) instead of starving other processes. The measuring processes run
with ``OMP_WAIT_POLICY=PASSIVE`` by default (``--omp-wait-policy``): on a shared, oversubscribed machine
torch's spin-waiting OpenMP workers otherwise dominate the timings of both kinds. ``--stack`` also times the
residual layers alone (a ``[B, L, width]`` input through the layers and the final norm, fwd+bwd).

    python jobs/bench_fusion.py [--lengths 274 1024 --batch 32 --repeats 1 --stack]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

TEXT_TOKENS = 77


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cap_address_space(fraction: float) -> None:
    """Limit this process's address space to its current size plus ``fraction`` of the available memory."""
    with open("/proc/meminfo") as handle:
        available_kib = next(int(line.split()[1]) for line in handle if line.startswith("MemAvailable:"))
    with open("/proc/self/statm") as handle:
        current = int(handle.read().split()[0]) * resource.getpagesize()
    limit = current + int(available_kib * 1024 * fraction)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _best_time(step: Callable[[], None], repeats: int) -> tuple[float, float] | None:
    """Wall and process CPU seconds (all threads) of the fastest of ``repeats`` runs; None when out of memory."""
    best = (float("inf"), float("inf"))
    try:
        for _ in range(repeats):
            start, cpu = time.perf_counter(), time.process_time()
            step()
            best = min(best, (time.perf_counter() - start, time.process_time() - cpu))
    except MemoryError:
        return None
    except RuntimeError as exc:  # torch's allocator: "DefaultCPUAllocator: can't allocate memory"
        if "alloc" not in str(exc):
            raise
        return None
    return best


def worker(args: argparse.Namespace) -> dict[str, float | None]:
    """Measure one (kind, length) in this process; seconds and MiB, None where it ran out of memory."""
    import torch

    from reid.models.fusion import FusionModule

    torch.manual_seed(0)
    module = FusionModule(args.kind, args.image_dim, args.text_dim, width=args.width, layers=args.layers,
                          out_dim=args.width)
    image_len = args.length - TEXT_TOKENS
    if image_len < 1:
        raise SystemExit(f"--lengths must exceed {TEXT_TOKENS} (the text tokens); got {args.length}")

    def inputs(length: int) -> tuple[torch.Tensor, ...]:
        image = torch.randn(args.batch, length, args.image_dim, requires_grad=True)
        text = torch.randn(args.batch, TEXT_TOKENS, args.text_dim, requires_grad=True)
        mask = torch.ones(args.batch, TEXT_TOKENS, dtype=torch.bool)
        return image, text, mask, torch.ones(args.batch, dtype=torch.bool)

    def train_step() -> None:
        module.train()
        module(*batch)["embedding"].square().mean().backward()

    def index_step() -> None:
        module.eval()
        with torch.no_grad():
            module(*batch)

    batch = inputs(8)
    train_step()  # compiles (or loads) the numba kernels and warms the allocator at a tiny length
    index_step()
    batch = inputs(image_len)
    _cap_address_space(args.memory_fraction)
    base = _rss_mib()
    result: dict[str, float | None] = {}
    for name, step in (("fwd", index_step), ("train", train_step)):
        timed = _best_time(step, args.repeats)
        result[f"{name}_s"], result[f"{name}_cpu"] = timed if timed else (None, None)
        result[f"{name}_mib"] = _peak_mib() - base if timed else None
    if args.stack:
        del batch
        tokens = torch.randn(args.batch, args.length, args.width, requires_grad=True)
        mask = torch.ones(args.batch, args.length, dtype=torch.bool)

        def stack_step() -> None:
            x = tokens
            for layer in module.layers:
                x = layer(x, mask)
            module.norm(x).square().mean().backward()

        module.train()
        timed = _best_time(stack_step, args.repeats)
        result["stack_s"] = timed[0] if timed else None
    return result


def run_one(args: argparse.Namespace, kind: str, length: int) -> dict[str, float | None]:
    command = [sys.executable, __file__, "--worker", "--kind", kind, "--lengths", str(length),
               "--batch", str(args.batch), "--width", str(args.width), "--layers", str(args.layers),
               "--image-dim", str(args.image_dim), "--text-dim", str(args.text_dim), "--repeats", str(args.repeats),
               "--memory-fraction", str(args.memory_fraction)]
    if args.stack:
        command.append("--stack")
    env = dict(os.environ, OMP_WAIT_POLICY=args.omp_wait_policy) if args.omp_wait_policy else None
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"worker {kind} L={length} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  measured {kind} L={length}: {result}", flush=True)
    return result


def _num(value: float | None, width: int, digits: int = 2) -> str:
    return f"{'OOM':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def _ratio(top: float | None, bottom: float | None, width: int) -> str:
    return f"{'-':>{width}}" if top is None or bottom is None else f"{top / bottom:{width}.2f}"


def print_table(rows: list[tuple[int, dict, dict]], stack: bool) -> None:
    header = (f"{'L':>5} | {'train M':>7} {'train T':>7} {'T/M':>5} {'cpu T/M':>7} | {'fwd M':>6} {'fwd T':>6} "
              f"{'T/M':>5} {'cpu T/M':>7} | {'MiB M':>6} {'MiB T':>6} | {'fwdMiB M':>8} {'fwdMiB T':>8}")
    if stack:
        header += f" | {'stack M':>7} {'stack T':>7} {'T/M':>5}"
    print(header)
    print("-" * len(header))
    for length, m, t in rows:
        line = (f"{length:>5} | {_num(m['train_s'], 7)} {_num(t['train_s'], 7)} "
                f"{_ratio(t['train_s'], m['train_s'], 5)} {_ratio(t['train_cpu'], m['train_cpu'], 7)} | "
                f"{_num(m['fwd_s'], 6)} {_num(t['fwd_s'], 6)} "
                f"{_ratio(t['fwd_s'], m['fwd_s'], 5)} {_ratio(t['fwd_cpu'], m['fwd_cpu'], 7)} | "
                f"{_num(m['train_mib'], 6, 0)} {_num(t['train_mib'], 6, 0)} | "
                f"{_num(m['fwd_mib'], 8, 0)} {_num(t['fwd_mib'], 8, 0)}")
        if stack:
            line += f" | {_num(m['stack_s'], 7)} {_num(t['stack_s'], 7)} {_ratio(t['stack_s'], m['stack_s'], 5)}"
        print(line)
    first, last = rows[0], rows[-1]
    for key, label in (("train_s", "train wall"), ("train_cpu", "train cpu"), ("fwd_s", "forward-only wall")):
        growth = [_ratio(last[i][key], first[i][key], 0).strip() for i in (1, 2)]
        print(f"growth t({last[0]})/t({first[0]}) {label}: mamba {growth[0]}, transformer {growth[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[274, 512, 1024, 2048, 4096])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--image-dim", type=int, default=768)
    parser.add_argument("--text-dim", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per measurement (the best is kept)")
    parser.add_argument("--memory-fraction", type=float, default=0.7,
                        help="address-space cap per measurement, as a fraction of the memory available")
    parser.add_argument("--stack", action="store_true", help="also time the residual layers alone")
    parser.add_argument("--omp-wait-policy", default="PASSIVE",
                        help="OMP_WAIT_POLICY for the measuring processes ('' keeps the environment's): on a shared "
                             "machine torch's spinning OpenMP workers can make small ops 20x slower")
    parser.add_argument("--kind", default="mamba", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.length = args.lengths[0]
        print(json.dumps(worker(args)))
        return

    import torch

    print(f"fusion benchmark: batch {args.batch}, width {args.width}, {args.layers} layers, image/text dim "
          f"{args.image_dim}/{args.text_dim}, {TEXT_TOKENS} text tokens, torch threads {torch.get_num_threads()}, "
          f"best of {args.repeats}; M = mamba (CPU kernels), T = transformer; times are wall seconds, 'cpu T/M' "
          f"the ratio of process CPU seconds (less sensitive to other load); memory = peak RSS delta in MiB; "
          f"OMP_WAIT_POLICY={args.omp_wait_policy or os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    rows = [(length, run_one(args, "mamba", length), run_one(args, "transformer", length)) for length in args.lengths]
    print_table(rows, args.stack)


if __name__ == "__main__":
    main()
