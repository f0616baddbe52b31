"""Rank positions of relevant gallery items in a block of similarity rows (numba on CPU, torch anywhere).

Tie rule (the same as a *stable* ``argsort`` of ``-score``): gallery item ``g`` of query ``q`` sits at
0-based position

    rank(q, g) = #{k : s[q, k] > s[q, g]} + #{k < g : s[q, k] == s[q, g]},

i.e. ties are broken by gallery index, lower index first. Every relevant item gets a distinct position.
NaN scores are rejected before these kernels run.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

PAIR_BLOCK_ELEMENTS = 1 << 25
"""The torch kernel compares at most this many scores at once (128 MiB of float32 plus a bool mask)."""


@njit(parallel=True, cache=True, nogil=True)
def _pair_ranks_numba(scores, starts, counts, members, out_offsets, out, nan_rows):  # pragma: no cover - JIT
    """``out[out_offsets[q] + j]`` = rank of ``members[starts[q] + j]`` in row ``q`` of ``scores`` [C, N];
    ``nan_rows[q]`` = number of NaN scores in row ``q``.

    The counting loops vectorise (SIMD compare and add), so a row costs ``N * (m + 2)`` comparisons
    for ``m`` relevant items, with no temporary array.
    """
    n_rows, n_cols = scores.shape
    for q in prange(n_rows):
        row = scores[q]
        nans = 0
        for k in range(n_cols):
            if row[k] != row[k]:
                nans += 1
        nan_rows[q] = nans
        for j in range(counts[q]):
            g = members[starts[q] + j]
            t = row[g]
            greater = 0
            for k in range(n_cols):
                if row[k] > t:
                    greater += 1
            ties_before = 0
            for k in range(g):
                if row[k] == t:
                    ties_before += 1
            out[out_offsets[q] + j] = greater + ties_before


def pair_ranks_numba(
    scores: np.ndarray, starts: np.ndarray, counts: np.ndarray, members: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Ranks ``[sum(counts)]`` (int64) of each query's relevant items, query by query, in ``members`` order,
    and the number of NaN scores of each row ``[C]`` (the ranks of a row holding NaN are meaningless).

    ``scores`` [C, N] float32/float64 C-contiguous; query ``q``'s relevant gallery indices are
    ``members[starts[q] : starts[q] + counts[q]]``.
    """
    offsets = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=offsets[1:])
    out = np.empty(int(counts.sum()), dtype=np.int64)
    nan_rows = np.empty(len(counts), dtype=np.int64)
    _pair_ranks_numba(np.ascontiguousarray(scores), starts, counts, members, offsets, out, nan_rows)
    return out, nan_rows


def pair_ranks_torch(scores: torch.Tensor, pair_rows: torch.Tensor, pair_items: torch.Tensor) -> torch.Tensor:
    """Ranks ``[P]`` (int64) of gallery item ``pair_items[p]`` in row ``pair_rows[p]`` of ``scores`` [C, N].

    Works on any device; pairs are processed in blocks so that at most :data:`PAIR_BLOCK_ELEMENTS`
    scores are compared at once.
    """
    n_cols = scores.shape[1]
    block = max(1, PAIR_BLOCK_ELEMENTS // max(n_cols, 1))
    columns = torch.arange(n_cols, device=scores.device)
    out = torch.empty(len(pair_rows), dtype=torch.int64, device=scores.device)
    for start in range(0, len(pair_rows), block):
        rows = pair_rows[start:start + block]
        items = pair_items[start:start + block]
        block_scores = scores[rows]  # [b, N]
        target = block_scores.gather(1, items.unsqueeze(1))  # [b, 1]
        greater = (block_scores > target).sum(1)
        ties_before = ((block_scores == target) & (columns < items.unsqueeze(1))).sum(1)
        out[start:start + block] = greater + ties_before
    return out
