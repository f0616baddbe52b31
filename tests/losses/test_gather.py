"""InfoNCE over the rows of every rank: two gloo ranks give the loss and the gradient of one process holding
the whole batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import torch

from reid.distributed.runtime import free_port
from reid.losses import LossConfig, compute_losses
from reid.losses.gather import gather_rows

RANK = textwrap.dedent("""
    import json, os
    import torch
    import torch.distributed as dist
    from reid.losses import LossConfig, compute_losses
    from reid.losses.gather import gather_rows

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    proj = torch.nn.Linear(6, 4)  # the same weights on every rank, as data parallelism starts
    gen = torch.Generator().manual_seed(1)
    x, y, z = torch.randn(12, 6, generator=gen), torch.randn(12, 6, generator=gen), torch.randn(12, 6, generator=gen)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 0, 3, 3, 4, 4, 1])
    rows = slice(0, 5) if rank == 0 else slice(5, 12)  # ranks of different sizes; person 0 and 1 on both
    outputs = {"query_emb": proj(x[rows]), "gallery_emb": proj(y[rows]), "gallery_emb_image": proj(z[rows])}
    cfg = LossConfig(image_only=0.5, triplet=False, adversarial=False, hsic=False, gate_reg=False)
    loss = compute_losses(outputs, {"pids": pids[rows]}, cfg, gather_rows)["infonce"]
    loss.backward()
    grads = [p.grad.clone() for p in proj.parameters()]
    for g in grads:  # what DDP / DeepSpeed do with the ranks' gradients
        dist.all_reduce(g)
        g /= world
    half = gather_rows(torch.full((2, 3), float(rank + 1), dtype=torch.bfloat16))  # bf16 rows: float32 back
    assert half.dtype == torch.float32 and half[:2].eq(1).all() and half[2:].eq(2).all(), half
    print(json.dumps({"loss": loss.item(), "grads": [g.flatten().tolist() for g in grads]}))
    dist.destroy_process_group()
""")


def test_two_ranks_gathered_infonce_equals_one_process_on_the_whole_batch() -> None:
    """Reference: one process with all 12 rows (persons 0 and 1 have rows on both ranks, so cross-rank
    positives matter). Each rank's loss is the whole batch's; the rank-averaged gradient is its gradient.
    Without the gather each rank would see 5 or 7 rows and a different loss."""
    torch.manual_seed(0)
    proj = torch.nn.Linear(6, 4)
    gen = torch.Generator().manual_seed(1)
    x, y, z = torch.randn(12, 6, generator=gen), torch.randn(12, 6, generator=gen), torch.randn(12, 6, generator=gen)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 0, 3, 3, 4, 4, 1])
    cfg = LossConfig(image_only=0.5, triplet=False, adversarial=False, hsic=False, gate_reg=False)
    outputs = {"query_emb": proj(x), "gallery_emb": proj(y), "gallery_emb_image": proj(z)}
    whole = compute_losses(outputs, {"pids": pids}, cfg)["infonce"]
    whole.backward()
    expected = [p.grad.flatten() for p in proj.parameters()]
    local = compute_losses({k: v[:5] for k, v in outputs.items()}, {"pids": pids[:5]}, cfg)["infonce"]

    port = free_port()
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", RANK], env={**env, "RANK": str(rank)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    for result in results:
        assert abs(result["loss"] - whole.item()) < 1e-5
        for got, want in zip(result["grads"], expected, strict=True):
            torch.testing.assert_close(torch.tensor(got), want, rtol=1e-4, atol=1e-6)
    assert abs(local.item() - whole.item()) > 1e-2  # the check above could not pass without the gather


def test_without_a_process_group_gather_is_the_identity() -> None:
    rows = torch.randn(3, 2, requires_grad=True)
    assert gather_rows(rows) is rows
