"""Rows of every data-parallel rank for the contrastive terms: the global batch, this rank's rows with gradient."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``factor``."""

    @staticmethod
    def forward(ctx, tensor: Tensor, factor: float) -> Tensor:  # noqa: ANN001
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ANN001
        return grad * ctx.factor, None


def distributed_world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_rows(local: Tensor) -> Tensor:
    """``[B_r, ...]`` on each rank -> ``[sum_r B_r, ...]``, the ranks' rows in rank order, on every rank.

    A collective: every rank must call it, in the same order. The other ranks' rows come without gradient
    (their own rank back-propagates through them); this rank's rows keep theirs, scaled by the world size W.
    So when every rank computes the same loss L on the gathered batch and the data-parallel engine averages
    the ranks' gradients, the parameters receive ``(1/W) sum_r W dL/dx_r = dL/dtheta``: the gradient of the
    global-batch loss, as one process holding the whole batch would compute it (open_clip's gathered
    contrastive loss, with the gradient kept at its single-process size so GradNorm compares like with like).
    Ranks may hold different numbers of rows; floating-point rows come back as float32 (the losses compute in
    float32 anyway). Without a process group, or with one rank, ``local`` itself.
    """
    rank, world = distributed_world()
    if world == 1:
        return local
    size = torch.tensor([local.shape[0]], dtype=torch.long, device=local.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    own = local.float() if local.is_floating_point() else local  # float32 on the wire (gloo lacks some bf16 ops)
    padded = own.detach().new_zeros((max(counts), *own.shape[1:]))
    padded[: own.shape[0]] = own.detach()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    rows = [part[:count] for part, count in zip(parts, counts, strict=True)]
    rows[rank] = _ScaleGrad.apply(own, float(world)) if own.requires_grad else own
    return torch.cat(rows)
