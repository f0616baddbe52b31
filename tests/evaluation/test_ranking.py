"""rank / rank_embeddings against a naive per-query loop and a hand-computed matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reid.evaluation.ranking import (
    metrics_from_ranks,
    query_ranks,
    query_ranks_from_embeddings,
    rank,
    rank_embeddings,
    relevance_index,
)


def naive_rank(sim: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """IRRA's definitions, one query at a time, over a stable sort of -score (ties: lower index first)."""
    r_at = {1: [], 5: [], 10: []}
    aps, inps, firsts = [], [], []
    for i in range(sim.shape[0]):
        order = np.argsort(-sim[i].astype(np.float64), kind="stable")
        matches = g_pids[order] == q_pids[i]
        hits = np.flatnonzero(matches)
        for k in r_at:
            r_at[k].append(float(matches[:k].any()))
        cum = np.cumsum(matches)
        aps.append(sum(cum[h] / (h + 1.0) for h in hits) / len(hits))
        inps.append(cum[hits[-1]] / (hits[-1] + 1.0))
        firsts.append(hits[0])
    metrics = {f"R{k}": 100 * np.mean(v) for k, v in r_at.items()}
    metrics["mAP"] = 100 * np.mean(aps)
    metrics["mINP"] = 100 * np.mean(inps)
    return metrics, np.array(firsts)


def random_case(seed: int, n_q: int, n_g: int, n_ids: int, ties: bool):
    rng = np.random.default_rng(seed)
    g_pids = rng.integers(0, n_ids, n_g)
    q_pids = rng.choice(np.unique(g_pids), n_q)
    if ties:  # few distinct values: many exact ties inside every row
        sim = rng.integers(-3, 4, (n_q, n_g)).astype(np.float32) / 4
    else:
        sim = rng.standard_normal((n_q, n_g)).astype(np.float32)
    return sim, q_pids, g_pids


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_rank_matches_naive_loop(backend: str, ties: bool, seed: int) -> None:
    sim, q_pids, g_pids = random_case(seed, n_q=53, n_g=71, n_ids=12, ties=ties)
    expected, firsts = naive_rank(sim, q_pids, g_pids)
    got = rank(sim, q_pids, g_pids, chunk_size=7, backend=backend)  # 7 does not divide 53
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key
    ranks = query_ranks(torch.from_numpy(sim), torch.from_numpy(q_pids), g_pids.tolist(), 7, backend)
    np.testing.assert_array_equal(ranks.first, firsts)


def test_queries_with_a_single_relevant_image() -> None:
    rng = np.random.default_rng(3)
    g_pids = np.arange(40)  # every person has exactly one gallery image
    q_pids = rng.integers(0, 40, 25)
    sim = rng.standard_normal((25, 40)).astype(np.float32)
    expected, _ = naive_rank(sim, q_pids, g_pids)
    got = rank(sim, q_pids, g_pids, chunk_size=4)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9)
    ranks = query_ranks(sim, q_pids, g_pids)
    np.testing.assert_array_equal(ranks.first, ranks.last)  # one relevant: first == last, AP == INP
    np.testing.assert_allclose(ranks.average_precision, ranks.inverse_negative_penalty)


def test_hand_computed_matrix() -> None:
    # Query 0 (person 1): scores rank the gallery 2,0,3,1,4,5 -> pids 2,1,2,1,3,3 -> relevant at positions 1, 3.
    #   R1 0, R5 1; AP = (1/2 + 2/4) / 2 = 0.5; INP = 2 / 4 = 0.5.
    # Query 1 (person 3): the tie 0.9 between gallery 0 (person 1) and 5 (person 3) keeps index order,
    #   so the ranking is 0, 5, 4, 3, 2, 1 -> relevant at positions 1, 2 -> R1 0; AP = (1/2 + 2/3) / 2;
    #   INP = 2 / 3.
    # Query 2 (person 2): ranking 1,5,4,0,3,2 -> pids 1,3,3,1,2,2 -> positions 4, 5 -> R1 0, R5 1 (pos 4 < 5);
    #   AP = (1/5 + 2/6) / 2 = 0.2666..; INP = 2 / 6.
    sim = np.array(
        [
            [0.8, 0.4, 0.9, 0.5, 0.1, 0.0],
            [0.9, 0.1, 0.2, 0.3, 0.5, 0.9],
            [0.3, 0.9, 0.0, 0.2, 0.6, 0.7],
        ]
    )
    g_pids = np.array([1, 1, 2, 2, 3, 3])
    q_pids = np.array([1, 3, 2])
    got = rank(sim, q_pids, g_pids, chunk_size=2)
    assert got["R1"] == 0.0
    assert got["R5"] == pytest.approx(100.0)
    assert got["R10"] == pytest.approx(100.0)
    assert got["mAP"] == pytest.approx(100 * (0.5 + (1 / 2 + 2 / 3) / 2 + (1 / 5 + 2 / 6) / 2) / 3)
    assert got["mINP"] == pytest.approx(100 * (0.5 + 2 / 3 + 2 / 6) / 3)
    ranks = query_ranks(sim, q_pids, g_pids)
    np.testing.assert_array_equal(ranks.first, [1, 1, 4])
    np.testing.assert_array_equal(ranks.last, [3, 2, 5])


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_embeddings_variant_equals_matrix_variant(backend: str) -> None:
    rng = np.random.default_rng(5)
    g_pids = rng.integers(0, 9, 60)
    q_pids = rng.choice(np.unique(g_pids), 45)
    q = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((45, 16))).float(), dim=1)
    g = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((60, 16))).float(), dim=1)
    full = rank(q @ g.t(), q_pids, g_pids, backend=backend)
    chunked = rank_embeddings(q, g, q_pids, g_pids, chunk_size=8, backend=backend)
    for key in full:
        assert chunked[key] == pytest.approx(full[key], abs=1e-6)
    expected, _ = naive_rank((q @ g.t()).numpy(), q_pids, g_pids)
    for key in expected:
        assert chunked[key] == pytest.approx(expected[key], abs=1e-6)


def test_half_precision_and_integer_inputs_are_accepted() -> None:
    sim, q_pids, g_pids = random_case(7, n_q=20, n_g=30, n_ids=5, ties=True)
    expected, _ = naive_rank(sim, q_pids, g_pids)  # the tie values are exact in float16
    got = rank(torch.from_numpy(sim).half(), q_pids, g_pids, chunk_size=6)
    assert got["mAP"] == pytest.approx(expected["mAP"], abs=1e-9)
    got_int = rank((sim * 4).astype(np.int64), q_pids, g_pids)
    assert got_int["mINP"] == pytest.approx(expected["mINP"], abs=1e-9)


def test_metrics_are_ordered_and_bounded() -> None:
    sim, q_pids, g_pids = random_case(11, n_q=30, n_g=50, n_ids=6, ties=False)
    got = rank(sim, q_pids, g_pids)
    assert 0 <= got["R1"] <= got["R5"] <= got["R10"] <= 100
    assert 0 < got["mINP"] <= got["mAP"] <= 100  # INP <= AP for every query


def test_errors_name_the_problem() -> None:
    sim = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"1 of 2 queries have no relevant gallery item: query 1 \(person 9\)"):
        rank(sim, [0, 9], [0, 1, 1])
    with pytest.raises(ValueError, match="2 query ids and 2 gallery ids"):
        rank(sim, [0, 1], [0, 1])
    sim[1, 2] = np.nan
    for backend in ("numba", "torch"):
        with pytest.raises(ValueError, match="row 1 holds NaN"):
            rank(sim, [0, 1], [0, 1, 1], backend=backend)
    with pytest.raises(ValueError, match="chunk_size"):
        rank(np.zeros((2, 3)), [0, 1], [0, 1, 1], chunk_size=0)
    with pytest.raises(ValueError, match="embeddings must be"):
        rank_embeddings(np.zeros((2, 4)), np.zeros((3, 5)), [0, 1], [0, 1, 1])


def test_relevance_index_groups_by_person() -> None:
    index = relevance_index([5, 2], [2, 5, 2, 7, 5])
    assert index.members[index.starts[0]:index.starts[0] + index.counts[0]].tolist() == [1, 4]
    assert index.members[index.starts[1]:index.starts[1] + index.counts[1]].tolist() == [0, 2]


def test_metrics_from_ranks_empty_is_an_error() -> None:
    ranks = query_ranks_from_embeddings(np.ones((1, 2)), np.ones((1, 2)), [0], [0])
    assert metrics_from_ranks(ranks)["R1"] == 100.0
    empty = type(ranks)(*(a[:0] for a in (ranks.first, ranks.last, ranks.average_precision,
                                         ranks.inverse_negative_penalty, ranks.num_relevant)))
    with pytest.raises(ValueError, match="no queries"):
        metrics_from_ranks(empty)
