"""Calling the numba kernels from torch: work split over threads, compute dtype, zero-copy array views.

The kernels are compiled ``nogil`` functions over a range of independent work items; :func:`run_items`
splits the items over a small thread pool (as many threads as torch may use). This keeps numba's own
parallel machinery (its threading layers and their compile cost) out of the picture, and is safe
after ``fork``: a child process gets a fresh pool.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

TASKS_PER_THREAD = 4
"""Work items are handed out in this many tasks per thread, so a thread slowed by others' load gets fewer."""

_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def kernel_threads() -> int:
    """Threads for the kernels: as many as torch may use (e.g. 1 in a one-CPU Ray worker)."""
    return max(1, torch.get_num_threads())


def _pool(threads: int) -> ThreadPoolExecutor:
    key = (os.getpid(), threads)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mamba-scan")
        return _pools[key]


def run_items(kernel: Callable[..., None], items: int, *args: object) -> None:
    """Run ``kernel(*args, start, stop)`` over the work items ``0 .. items`` on :func:`kernel_threads` threads."""
    threads = min(kernel_threads(), items)
    if threads <= 1:
        kernel(*args, 0, items)
        return
    tasks = min(items, TASKS_PER_THREAD * threads)
    bounds = [items * i // tasks for i in range(tasks + 1)]
    pool = _pool(threads)
    futures = [pool.submit(kernel, *args, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    for future in futures:
        future.result()


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 when any given tensor is float64, else float32 (half precision is computed in float32)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def as_array(tensor: Tensor, dtype: torch.dtype) -> np.ndarray:
    """A C-contiguous numpy view (a copy only when the dtype or layout differs) of a CPU tensor."""
    if tensor.device.type != "cpu":
        raise ValueError(f"the CPU kernel got a tensor on {tensor.device}; move it to the CPU first")
    return tensor.detach().to(dtype).contiguous().numpy()
