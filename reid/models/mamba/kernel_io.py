"""Calling numba kernels from torch: thread count, compute dtype and zero-copy array views."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np
import torch
from torch import Tensor


def kernel_threads() -> int:
    """Threads for numba's parallel loops: as many as torch may use (e.g. 1 in a one-CPU Ray worker)."""
    return max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


@contextmanager
def numba_threads() -> Iterator[None]:
    """Set numba's (thread-local) thread count to :func:`kernel_threads` for the duration of a call."""
    previous = numba.get_num_threads()
    numba.set_num_threads(kernel_threads())
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 when any given tensor is float64, else float32 (half precision is computed in float32)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def as_array(tensor: Tensor, dtype: torch.dtype) -> np.ndarray:
    """A C-contiguous numpy view (a copy only when the dtype or layout differs) of a CPU tensor."""
    if tensor.device.type != "cpu":
        raise ValueError(f"the CPU kernel got a tensor on {tensor.device}; move it to the CPU first")
    return tensor.detach().to(dtype).contiguous().numpy()
