"""Input checks shared by the loss functions: clear errors naming the loss and the argument."""

from __future__ import annotations

import torch
from torch import Tensor


def check_matrix(loss: str, name: str, x: Tensor) -> None:
    """Raise ValueError unless ``x`` is a floating-point [N, D] tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{loss}: '{name}' must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{loss}: '{name}' must be [N, D], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{loss}: '{name}' must be floating point, got {x.dtype}")


def check_pair(loss: str, a: Tensor, b: Tensor, names: tuple[str, str] = ("first", "second")) -> None:
    """Both [N, D] with the same N (and D): the rows of ``a`` and ``b`` are matched pairs."""
    check_matrix(loss, names[0], a)
    check_matrix(loss, names[1], b)
    if a.shape != b.shape:
        raise ValueError(f"{loss}: {names[0]} {tuple(a.shape)} and {names[1]} {tuple(b.shape)} must have "
                         "the same shape")


def check_pids(loss: str, pids: Tensor, n: int) -> None:
    """``pids`` must be an integer [n] tensor."""
    if not isinstance(pids, Tensor) or pids.dim() != 1 or pids.shape[0] != n:
        shape = tuple(pids.shape) if isinstance(pids, Tensor) else type(pids).__name__
        raise ValueError(f"{loss}: 'pids' must be a [{n}] tensor, got {shape}")
    if pids.is_floating_point() or pids.dtype == torch.bool:
        raise ValueError(f"{loss}: 'pids' must hold integers, got {pids.dtype}")


def valid_rows(loss: str, valid: Tensor | None, n: int, device: torch.device) -> Tensor:
    """The [n] bool mask of rows to use; None means every row."""
    if valid is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    if not isinstance(valid, Tensor) or valid.shape != (n,):
        shape = tuple(valid.shape) if isinstance(valid, Tensor) else type(valid).__name__
        raise ValueError(f"{loss}: 'valid' must be a [{n}] bool tensor, got {shape}")
    return valid.to(device=device, dtype=torch.bool)


def as_float(x: Tensor) -> Tensor:
    """``x`` in float32, or float64 when it already is (half precision is upcast for the loss math)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
