"""Benchmark: Mamba fusion (numba CPU scan) vs a Transformer fusion of equal width and depth, on CPU.

For each sequence length L (image tokens L - 77, text tokens 77; 274 = 197 + 77 is ViT-B/16 at 224x224
plus a 77-token description) it times the whole fusion module (alignment MLPs, gate, layers, pooling,
projection) in training (forward + backward, dropout on) and forward-only under ``torch.no_grad`` (gallery
indexing). Each (kind, L) runs in its own process; peak memory is that process's peak RSS
(``ru_maxrss``) minus its RSS after building the module and inputs and compiling (a short warm-up run),
so it includes activations, gradients and allocator caching. ``--stack`` also times the residual layers
alone (a ``[B, L, width]`` input through the layers and the final norm).

    python jobs/bench_fusion.py [--lengths 274 1024 --batch 32 --repeats 1 --stack]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

TEXT_TOKENS = 77


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _best_time(step, repeats: int) -> tuple[float, float]:  # noqa: ANN001
    """Wall seconds and process CPU seconds (all threads) of the fastest of ``repeats`` runs."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        step()
        best = min(best, (time.perf_counter() - start, time.process_time() - cpu))
    return best


def worker(args: argparse.Namespace) -> dict[str, float]:
    """Measure one (kind, length) in this process; returns seconds and MiB."""
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

    def train_step(batch: tuple[torch.Tensor, ...]) -> None:
        module.train()
        module(*batch)["embedding"].square().mean().backward()

    def index_step(batch: tuple[torch.Tensor, ...]) -> None:
        module.eval()
        with torch.no_grad():
            module(*batch)

    warm = inputs(8)
    train_step(warm)  # compiles (or loads) the numba kernels and warms the allocator at a tiny length
    index_step(warm)
    batch = inputs(image_len)
    base = _rss_mib()
    result = dict(zip(("fwd_s", "fwd_cpu"), _best_time(lambda: index_step(batch), args.repeats), strict=True))
    result["fwd_mib"] = _peak_mib() - base
    result.update(zip(("train_s", "train_cpu"), _best_time(lambda: train_step(batch), args.repeats), strict=True))
    result["train_mib"] = _peak_mib() - base
    if args.stack:
        tokens = torch.randn(args.batch, args.length, args.width, requires_grad=True)
        mask = torch.ones(args.batch, args.length, dtype=torch.bool)

        def stack_step() -> None:
            x = tokens
            for layer in module.layers:
                x = layer(x, mask)
            module.norm(x).square().mean().backward()

        module.train()
        result["stack_s"] = _best_time(stack_step, args.repeats)[0]
    return result


def run_one(args: argparse.Namespace, kind: str, length: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", "--kind", kind, "--lengths", str(length),
               "--batch", str(args.batch), "--width", str(args.width), "--layers", str(args.layers),
               "--image-dim", str(args.image_dim), "--text-dim", str(args.text_dim), "--repeats", str(args.repeats)]
    if args.stack:
        command.append("--stack")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker {kind} L={length} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[274, 512, 1024, 2048, 4096])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--image-dim", type=int, default=768)
    parser.add_argument("--text-dim", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per measurement (the best is kept)")
    parser.add_argument("--stack", action="store_true", help="also time the residual layers alone")
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
          f"the ratio of process CPU seconds (less sensitive to other load); memory = peak RSS delta in MiB")
    rows = []
    for length in args.lengths:
        mamba, transformer = run_one(args, "mamba", length), run_one(args, "transformer", length)
        rows.append((length, mamba, transformer))
        print(f"  measured L={length}: mamba {mamba}, transformer {transformer}", flush=True)
    header = (f"{'L':>5} | {'train M':>7} {'train T':>7} {'T/M':>5} {'cpu T/M':>7} | {'fwd M':>6} {'fwd T':>6} "
              f"{'T/M':>5} {'cpu T/M':>7} | {'MiB M':>6} {'MiB T':>6} | {'fwdMiB M':>8} {'fwdMiB T':>8}")
    if args.stack:
        header += f" | {'stack M':>7} {'stack T':>7} {'T/M':>5}"
    print(header)
    print("-" * len(header))
    for length, m, t in rows:
        line = (f"{length:>5} | {m['train_s']:7.2f} {t['train_s']:7.2f} {t['train_s'] / m['train_s']:5.2f} "
                f"{t['train_cpu'] / m['train_cpu']:7.2f} | {m['fwd_s']:6.2f} {t['fwd_s']:6.2f} "
                f"{t['fwd_s'] / m['fwd_s']:5.2f} {t['fwd_cpu'] / m['fwd_cpu']:7.2f} | {m['train_mib']:6.0f} "
                f"{t['train_mib']:6.0f} | {m['fwd_mib']:8.0f} {t['fwd_mib']:8.0f}")
        if args.stack:
            line += f" | {m['stack_s']:7.2f} {t['stack_s']:7.2f} {t['stack_s'] / m['stack_s']:5.2f}"
        print(line)
    first, last = rows[0], rows[-1]
    for key, label in (("train_s", "train wall"), ("train_cpu", "train cpu"), ("fwd_s", "forward-only wall")):
        growth_m = last[1][key] / first[1][key]
        growth_t = last[2][key] / first[2][key]
        print(f"growth t({last[0]})/t({first[0]}) {label}: mamba {growth_m:.1f}, transformer {growth_t:.1f}")


if __name__ == "__main__":
    main()
