"""Exact top-k against a full stable sort (ties included) and chunk sizes; the FAISS indexes' recall."""

from __future__ import annotations

import numpy as np
import pytest

from reid.evaluation.topk import ApproxIndex, exact_topk, recall_at_k


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("chunk", [7, 64, 100_000])
def test_exact_topk_equals_a_stable_full_sort(chunk: int) -> None:
    rng = np.random.default_rng(0)
    gallery = rng.integers(-2, 3, (300, 8)).astype(np.float32)  # small integers: exact sums, many exact ties
    query = rng.integers(-2, 3, (5, 8)).astype(np.float32)
    scores, index = exact_topk(query, gallery, 10, chunk=chunk)
    full = query @ gallery.T
    for q in range(5):
        order = np.argsort(-full[q], kind="stable")[:10]
        assert index[q].tolist() == order.tolist()
        np.testing.assert_allclose(scores[q], full[q][order], rtol=1e-6)
    assert exact_topk(query, gallery[:3], 10)[1].shape == (5, 3)  # k capped at the gallery size


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_find_the_exact_neighbours(kind: str) -> None:
    rng = np.random.default_rng(1)
    centres = _unit(rng, 50, 32)
    gallery = centres[rng.integers(0, 50, 20_000)] + 0.3 * rng.standard_normal((20_000, 32)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    query = gallery[rng.integers(0, 20_000, 200)] + 0.05 * rng.standard_normal((200, 32)).astype(np.float32)
    index = ApproxIndex.build(gallery, kind, nprobe=128)
    approx = index.search(query, 10)[1]
    exact = exact_topk(query, gallery, 10)[1]
    assert recall_at_k(approx, exact) >= 0.95
    assert recall_at_k(exact, exact) == 1.0 and recall_at_k(exact[:, ::-1], exact) == 1.0
    with pytest.raises(ValueError, match="'ivf' or 'hnsw'"):
        ApproxIndex.build(gallery, "lsh")
