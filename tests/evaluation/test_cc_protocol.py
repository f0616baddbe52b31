"""The clothes-changing protocol: each query's same-person same-outfit gallery images are left out; ranks
equal the standard metrics computed on a per-query gallery with those images removed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reid.evaluation.ranking import metrics_from_ranks, query_ranks_from_embeddings

sys.path.insert(0, str(Path(__file__).parent))
from test_ranking import naive_rank  # noqa: E402


def cc_case(seed: int, n_q: int = 41, n_g: int = 60, n_ids: int = 8):
    """Persons with 2-3 outfits each; every query's person also appears in another outfit."""
    rng = np.random.default_rng(seed)
    g_pids = np.repeat(np.arange(n_ids), n_g // n_ids)
    g_groups = rng.integers(0, 3, len(g_pids))
    g_groups[::2] = g_pids[::2] % 2  # make sure every person wears at least two outfits
    g_groups[1::2] = 2
    picks = rng.integers(0, len(g_pids), n_q)
    q_pids, q_groups = g_pids[picks], g_groups[picks]
    q = rng.standard_normal((n_q, 5)).astype(np.float32)
    g = rng.standard_normal((len(g_pids), 5)).astype(np.float32)
    return q, g, q_pids, g_pids, q_groups, g_groups


def naive_cc(sim: np.ndarray, q_pids, g_pids, q_groups, g_groups) -> dict[str, float]:
    """Each query alone against its own gallery (same person and outfit removed), then averaged."""
    rows = []
    for i in range(sim.shape[0]):
        keep = ~((g_pids == q_pids[i]) & (g_groups == q_groups[i]))
        rows.append(naive_rank(sim[i:i + 1, keep], q_pids[i:i + 1], g_pids[keep])[0])
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cc_protocol_matches_a_per_query_gallery(backend: str, seed: int) -> None:
    q, g, q_pids, g_pids, q_groups, g_groups = cc_case(seed)
    expected = naive_cc(q @ g.T, q_pids, g_pids, q_groups, g_groups)
    ranks = query_ranks_from_embeddings(torch.from_numpy(q), torch.from_numpy(g), q_pids, g_pids, chunk_size=9,
                                        backend=backend, query_groups=q_groups, gallery_groups=g_groups)
    got = metrics_from_ranks(ranks)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key
    standard = metrics_from_ranks(query_ranks_from_embeddings(q, g, q_pids, g_pids, backend=backend))
    assert standard != got


def test_same_outfit_images_cannot_be_hits_under_cc() -> None:
    """A query whose only same-outfit image is its best match: under cc the first hit is its other outfit."""
    g = np.eye(3, dtype=np.float32)
    q = np.array([[1.0, 0.7, 0.5]], dtype=np.float32)  # image 0 (its own outfit), then 1 (another person), 2
    pids, groups = np.array([0, 1, 0]), np.array([7, 3, 8])
    ranks = query_ranks_from_embeddings(q, g, [0], pids, query_groups=[7], gallery_groups=groups)
    assert ranks.first.tolist() == [1] and ranks.num_relevant.tolist() == [1]  # image 2 behind image 1
    standard = query_ranks_from_embeddings(q, g, [0], pids)
    assert standard.first.tolist() == [0] and standard.num_relevant.tolist() == [2]


def test_a_query_without_another_outfit_is_refused() -> None:
    g = np.eye(2, dtype=np.float32)
    with pytest.raises(ValueError, match="no gallery image of its person in other clothes"):
        query_ranks_from_embeddings(g[:1], g, [0], [0, 1], query_groups=[4], gallery_groups=[4, 4])
    with pytest.raises(ValueError, match="go together"):
        query_ranks_from_embeddings(g[:1], g, [0], [0, 1], query_groups=[4])
