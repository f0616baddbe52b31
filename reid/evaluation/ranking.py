"""Retrieval metrics R@K, mAP and mINP as IRRA's ``rank`` defines them, computed in chunks of queries.

Rows are queries, columns gallery items; a gallery item is relevant to a query when their person ids
are equal; the whole gallery is ranked (no camera filtering). For a query with ``m`` relevant items at
sorted 0-based positions ``r_1 < ... < r_m`` (ties: see :mod:`reid.evaluation.rank_kernels`):

    R@K  = 100 * mean_q [r_1 < K]
    AP   = (1 / m) * sum_i i / (r_i + 1)          mAP  = 100 * mean_q AP
    INP  = m / (r_m + 1)                         mINP = 100 * mean_q INP

Only the positions of the relevant items are computed (a count of higher scores per relevant item),
never a sort of the gallery, so time is ``O(Nq * Ng * m)`` comparisons and memory is one chunk.

Clothes-changing protocol (``query_groups``/``gallery_groups``, e.g. outfit ids): for each query, the gallery
items of its own person *and* its own group are left out, as if absent from the gallery (neither relevant nor
ranked above anything); the query's other items of that person stay relevant. Every query must keep one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from reid.evaluation.rank_kernels import pair_ranks_numba, pair_ranks_torch

logger = logging.getLogger(__name__)

Backend = Literal["auto", "numba", "torch"]
ArrayLike = torch.Tensor | np.ndarray | Sequence[int]
DEFAULT_KS = (1, 5, 10)


@dataclass(frozen=True)
class RelevanceIndex:
    """Relevant gallery indices per query: ``members[starts[q] : starts[q] + counts[q]]`` (ascending)."""

    members: np.ndarray  # [Ng] int64, gallery indices grouped by person id
    starts: np.ndarray  # [Nq] int64
    counts: np.ndarray  # [Nq] int64, >= 1


@dataclass(frozen=True)
class QueryRanks:
    """Per-query results; positions are 0-based places in the ranked gallery."""

    first: np.ndarray  # [Nq] int64, position of the best-ranked relevant item
    last: np.ndarray  # [Nq] int64, position of the worst-ranked relevant item
    average_precision: np.ndarray  # [Nq] float64 in (0, 1]
    inverse_negative_penalty: np.ndarray  # [Nq] float64, m / (last + 1)
    num_relevant: np.ndarray  # [Nq] int64


def to_pid_array(pids: ArrayLike, what: str) -> np.ndarray:
    """Person ids as a 1-D int64 numpy array (from a tensor on any device, an array or a list)."""
    if isinstance(pids, torch.Tensor):
        pids = pids.detach().cpu().numpy()
    array = np.asarray(pids)
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {tuple(array.shape)}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must hold integer person ids, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def relevance_index(query_pids: ArrayLike, gallery_pids: ArrayLike) -> RelevanceIndex:
    """Group gallery indices by person id and point every query at its group.

    Raises ``ValueError`` naming the queries whose person id has no gallery item (AP is undefined there).
    """
    q = to_pid_array(query_pids, "query_pids")
    g = to_pid_array(gallery_pids, "gallery_pids")
    members = np.argsort(g, kind="stable").astype(np.int64)
    groups, group_starts, group_counts = np.unique(g[members], return_index=True, return_counts=True)
    slot = np.clip(np.searchsorted(groups, q), 0, max(len(groups) - 1, 0))
    found = (groups[slot] == q) if len(groups) else np.zeros(len(q), dtype=bool)
    if not found.all():
        missing = np.flatnonzero(~found)
        shown = ", ".join(f"query {i} (person {q[i]})" for i in missing[:5])
        raise ValueError(f"{len(missing)} of {len(q)} queries have no relevant gallery item: {shown}")
    return RelevanceIndex(members, group_starts[slot].astype(np.int64), group_counts[slot].astype(np.int64))


def query_ranks(
    similarity: torch.Tensor | np.ndarray,
    query_pids: ArrayLike,
    gallery_pids: ArrayLike,
    chunk_size: int = 1024,
    backend: Backend = "auto",
) -> QueryRanks:
    """Per-query ranks from a similarity matrix ``[Nq, Ng]`` (tensor on any device, or numpy array)."""
    sim = _as_tensor(similarity, "similarity")
    if sim.ndim != 2:
        raise ValueError(f"similarity must be 2-D [queries, gallery], got shape {tuple(sim.shape)}")
    return _ranks_by_chunk(lambda a, b: sim[a:b], sim.shape, sim.device, query_pids, gallery_pids,
                           chunk_size, backend)


def query_ranks_from_embeddings(
    query_emb: torch.Tensor | np.ndarray,
    gallery_emb: torch.Tensor | np.ndarray,
    query_pids: ArrayLike,
    gallery_pids: ArrayLike,
    chunk_size: int = 1024,
    backend: Backend = "auto",
    query_groups: ArrayLike | None = None,
    gallery_groups: ArrayLike | None = None,
) -> QueryRanks:
    """Per-query ranks with similarity ``query_emb [Nq, E] @ gallery_emb [Ng, E]^T`` made chunk by chunk.

    Only ``[chunk_size, Ng]`` scores exist at any time. Pass L2-normalised embeddings for cosine scores.
    ``query_groups [Nq]`` / ``gallery_groups [Ng]`` (both or neither) select the clothes-changing protocol
    (module docstring).
    """
    q = _as_tensor(query_emb, "query_emb")
    g = _as_tensor(gallery_emb, "gallery_emb")
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"embeddings must be [Nq, E] and [Ng, E], got {tuple(q.shape)} and {tuple(g.shape)}")
    if q.device != g.device:
        raise ValueError(f"query_emb is on {q.device} but gallery_emb on {g.device}")
    g_t = g.t()
    return _ranks_by_chunk(lambda a, b: q[a:b] @ g_t, (q.shape[0], g.shape[0]), q.device, query_pids,
                           gallery_pids, chunk_size, backend, _groups(query_groups, gallery_groups))


def metrics_from_ranks(ranks: QueryRanks, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """``{"R1": .., "R5": .., "R10": .., "mAP": .., "mINP": ..}`` in percent from per-query ranks."""
    if len(ranks.first) == 0:
        raise ValueError("no queries to score")
    metrics = {f"R{k}": float(np.mean(ranks.first < k) * 100.0) for k in ks}
    metrics["mAP"] = float(np.mean(ranks.average_precision) * 100.0)
    metrics["mINP"] = float(np.mean(ranks.inverse_negative_penalty) * 100.0)
    return metrics


def rank(
    similarity: torch.Tensor | np.ndarray,
    query_pids: ArrayLike,
    gallery_pids: ArrayLike,
    chunk_size: int = 1024,
    ks: Sequence[int] = DEFAULT_KS,
    backend: Backend = "auto",
) -> dict[str, float]:
    """R@K, mAP and mINP (percent) of a similarity matrix ``[Nq, Ng]``; see the module docstring."""
    return metrics_from_ranks(query_ranks(similarity, query_pids, gallery_pids, chunk_size, backend), ks)


def rank_embeddings(
    query_emb: torch.Tensor | np.ndarray,
    gallery_emb: torch.Tensor | np.ndarray,
    query_pids: ArrayLike,
    gallery_pids: ArrayLike,
    chunk_size: int = 1024,
    ks: Sequence[int] = DEFAULT_KS,
    backend: Backend = "auto",
) -> dict[str, float]:
    """:func:`rank` of ``query_emb @ gallery_emb^T`` without ever holding the whole matrix."""
    ranks = query_ranks_from_embeddings(query_emb, gallery_emb, query_pids, gallery_pids, chunk_size, backend)
    return metrics_from_ranks(ranks, ks)


def _as_tensor(value: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
    elif isinstance(value, np.ndarray):
        tensor = torch.from_numpy(value)
    else:
        raise TypeError(f"{what} must be a torch tensor or a numpy array, got {type(value).__name__}")
    if not tensor.is_floating_point():
        tensor = tensor.float()
    return tensor


def _groups(query_groups: ArrayLike | None, gallery_groups: ArrayLike | None) -> tuple[np.ndarray, np.ndarray] | None:
    if (query_groups is None) != (gallery_groups is None):
        raise ValueError("query_groups and gallery_groups go together (the clothes-changing protocol needs both)")
    if query_groups is None:
        return None
    return to_pid_array(query_groups, "query_groups"), to_pid_array(gallery_groups, "gallery_groups")


def _ranks_by_chunk(
    chunk_fn: Callable[[int, int], torch.Tensor], shape: tuple[int, int], device: torch.device,
    query_pids: ArrayLike, gallery_pids: ArrayLike, chunk_size: int, backend: Backend,
    groups: tuple[np.ndarray, np.ndarray] | None = None,
) -> QueryRanks:
    """Rank queries ``[start, stop)`` at a time on ``chunk_fn(start, stop)`` -> scores ``[stop - start, Ng]``;
    with ``groups`` (query, gallery), each query's same-person same-group items are left out."""
    n_queries, n_gallery = shape
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    q_pids = to_pid_array(query_pids, "query_pids")
    g_pids = to_pid_array(gallery_pids, "gallery_pids")
    if len(q_pids) != n_queries or len(g_pids) != n_gallery:
        raise ValueError(f"similarity is [{n_queries}, {n_gallery}] but there are {len(q_pids)} query ids "
                         f"and {len(g_pids)} gallery ids")
    if groups is not None and (len(groups[0]) != n_queries or len(groups[1]) != n_gallery):
        raise ValueError(f"groups must be [{n_queries}] and [{n_gallery}], got {len(groups[0])} and {len(groups[1])}")
    index = relevance_index(q_pids, g_pids)
    use = _pick_backend(backend, device)
    parts = []
    for start in range(0, n_queries, chunk_size):
        stop = min(start + chunk_size, n_queries)
        chunk = chunk_fn(start, stop)
        if groups is None:
            parts.append(_chunk_ranks(chunk, index, start, stop, use))
        else:
            parts.append(_chunk_ranks_leaving_out(chunk, index, start, stop, use, q_pids, g_pids, *groups))
    logger.debug("ranked %d queries against %d gallery items (%s backend)", n_queries, n_gallery, use)
    return QueryRanks(*(np.concatenate(values) for values in zip(*parts, strict=True)))


def _pick_backend(backend: Backend, device: torch.device) -> str:
    if backend == "auto":
        return "numba" if device.type == "cpu" else "torch"
    if backend == "numba" and device.type != "cpu":
        raise ValueError(f"the numba backend needs CPU data, got {device}")
    if backend not in ("numba", "torch"):
        raise ValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
    return backend


def _reject_nan(nan_rows: np.ndarray, offset: int) -> None:
    bad = np.flatnonzero(nan_rows)
    if len(bad):
        raise ValueError(f"similarity row {offset + int(bad[0])} holds NaN; scores must be ordered numbers")


def _chunk_ranks(chunk: torch.Tensor, index: RelevanceIndex, start: int, stop: int, backend: str) -> tuple:
    return _reduce(*_pair_ranks(chunk, index, start, stop, backend), chunk.shape[1])


def _chunk_ranks_leaving_out(chunk: torch.Tensor, index: RelevanceIndex, start: int, stop: int, backend: str,
                             q_pids: np.ndarray, g_pids: np.ndarray, q_groups: np.ndarray,
                             g_groups: np.ndarray) -> tuple:
    """:func:`_chunk_ranks` with each query's same-person same-group gallery items left out: their scores
    go to -inf (nothing ranks below them, so no kept item moves) and their pairs are dropped."""
    rows = slice(start, stop)
    same = (q_pids[rows, None] == g_pids[None, :]) & (q_groups[rows, None] == g_groups[None, :])
    chunk = chunk.masked_fill(torch.from_numpy(same).to(chunk.device), float("-inf"))
    ranks, counts = _pair_ranks(chunk, index, start, stop, backend)
    owner = np.repeat(np.arange(stop - start), counts)
    items = index.members[np.concatenate([np.arange(a, a + n) for a, n in
                                          zip(index.starts[rows], counts, strict=True)])]
    keep = ~same[owner, items]
    kept = np.bincount(owner[keep], minlength=stop - start)
    if (kept == 0).any():
        q = start + int(np.flatnonzero(kept == 0)[0])
        raise ValueError(f"clothes-changing protocol: query {q} (person {q_pids[q]}) has no gallery image of its "
                         "person in other clothes")
    return _reduce(ranks[keep], kept, chunk.shape[1])


def _pair_ranks(chunk: torch.Tensor, index: RelevanceIndex, start: int, stop: int,
                backend: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``[sum(counts)]`` of each query's relevant items (query by query) and the counts ``[C]``."""
    starts, counts = index.starts[start:stop], index.counts[start:stop]
    if backend == "numba":
        if chunk.dtype not in (torch.float32, torch.float64):
            chunk = chunk.float()
        ranks, nan_rows = pair_ranks_numba(chunk.contiguous().numpy(), starts, counts, index.members)
        _reject_nan(nan_rows, start)
    else:
        _reject_nan(torch.isnan(chunk).any(dim=1).cpu().numpy(), start)
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        pair_pos = np.repeat(starts - offsets, counts) + np.arange(int(counts.sum()))
        rows = torch.from_numpy(np.repeat(np.arange(len(counts)), counts)).to(chunk.device)
        items = torch.from_numpy(index.members[pair_pos]).to(chunk.device)
        ranks = pair_ranks_torch(chunk, rows, items).cpu().numpy()
    return ranks, counts


def _reduce(ranks: np.ndarray, counts: np.ndarray, n_gallery: int) -> tuple:
    """Per-query (first, last, AP, INP, m) from the pair ranks of a chunk, grouped by query."""
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    ranks = np.sort(owner * (n_gallery + 1) + ranks) - owner * (n_gallery + 1)  # ascending within each query
    group_start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    position = np.arange(len(ranks)) - group_start[owner] + 1  # 1-based index among the relevant items
    ap = np.add.reduceat(position / (ranks + 1.0), group_start) / counts
    last = ranks[group_start + counts - 1]
    return ranks[group_start], last, ap, counts / (last + 1.0), counts.copy()
