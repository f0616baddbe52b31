"""Style clustering of unit-norm caption embeddings: DBSCAN (paper 3.3) and the Table 4 alternatives.

Every algorithm's labels then go through the same two steps: noise points (-1) join the cluster whose
centroid is most cosine-similar, and clusters smaller than a threshold are merged, smallest first,
into the nearest other cluster. Ids are finally renumbered 0..K-1 by decreasing size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import DBSCAN, HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture

ALGORITHMS = ("dbscan", "random", "kmeans", "gmm", "agglomerative", "hdbscan")


@dataclass(frozen=True)
class Clustering:
    """Final labels ``[N]`` in 0..K-1 and what the post-processing did."""

    labels: np.ndarray
    raw_clusters: int
    noise_reassigned: int
    merged: int


def centroids(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [K], unit centroids [K, D])`` of the non-noise clusters of ``x [N, D]``."""
    ids = np.unique(labels[labels >= 0])
    cents = np.stack([x[labels == k].mean(0) for k in ids]) if len(ids) else np.zeros((0, x.shape[1]))
    norms = np.linalg.norm(cents, axis=1, keepdims=True)
    return ids, cents / np.maximum(norms, 1e-12)


def reassign_noise(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels with every -1 moved to the most cosine-similar centroid (all noise: one cluster 0)."""
    labels = labels.copy()
    noise = labels < 0
    ids, cents = centroids(x, labels)
    if not noise.any():
        return labels
    if len(ids) == 0:
        return np.zeros_like(labels)
    labels[noise] = ids[np.argmax(x[noise] @ cents.T, axis=1)]
    return labels


def merge_small_clusters(x: np.ndarray, labels: np.ndarray, threshold: int) -> tuple[np.ndarray, int]:
    """Merge the smallest cluster under ``threshold`` points into the nearest centroid, until none is left.

    Stops at one cluster. Returns the labels and how many clusters were merged away.
    """
    labels, merged = labels.copy(), 0
    while True:
        ids, cents = centroids(x, labels)
        sizes = np.array([(labels == k).sum() for k in ids])
        if len(ids) < 2 or sizes.min() >= threshold:
            return labels, merged
        small = int(np.argmin(sizes))
        similarity = cents @ cents[small]
        similarity[small] = -np.inf
        labels[labels == ids[small]] = ids[int(np.argmax(similarity))]
        merged += 1


def renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """Ids 0..K-1, 0 the largest cluster (ties: smaller old id first)."""
    ids, counts = np.unique(labels, return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    mapping = {int(old): new for new, old in enumerate(order)}
    return np.array([mapping[int(v)] for v in labels], dtype=np.int64)


def raw_labels(x: np.ndarray, algorithm: str, *, eps: float, min_samples: int, n_clusters: int,
               seed: int) -> np.ndarray:
    """Labels straight from ``algorithm`` on unit vectors ``x [N, D]`` (-1 marks noise)."""
    n = len(x)
    k = max(1, min(n_clusters, n))
    if algorithm == "dbscan":
        return DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit_predict(x)
    if algorithm == "hdbscan":  # euclidean on unit vectors orders pairs as cosine does
        return HDBSCAN(min_cluster_size=max(2, min_samples), min_samples=min_samples, copy=True).fit_predict(x)
    if algorithm == "random":
        return np.random.default_rng(seed).integers(0, k, size=n)
    if algorithm == "kmeans":
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    if algorithm == "gmm":
        return GaussianMixture(n_components=k, covariance_type="diag", random_state=seed).fit_predict(x)
    if algorithm == "agglomerative":
        if n < 2:
            return np.zeros(n, dtype=np.int64)
        return AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(x)
    raise ValueError(f"unknown clustering algorithm '{algorithm}' (known: {', '.join(ALGORITHMS)})")


def cluster_styles(x: np.ndarray, algorithm: str = "dbscan", *, eps: float = 0.3, min_samples: int = 5,
                   n_clusters: int = 4, merge_threshold: int = 10, seed: int = 0) -> Clustering:
    """Cluster unit embeddings ``x [N, D]``; every point ends in a cluster of >= ``merge_threshold`` points
    (unless only one cluster is left)."""
    if x.ndim != 2:
        raise ValueError(f"embeddings must be [N, D], got shape {x.shape}")
    if len(x) == 0:
        return Clustering(np.zeros(0, dtype=np.int64), 0, 0, 0)
    raw = np.asarray(raw_labels(x, algorithm, eps=eps, min_samples=min_samples, n_clusters=n_clusters,
                                seed=seed), dtype=np.int64)
    labels = reassign_noise(x, raw)
    labels, merged = merge_small_clusters(x, labels, merge_threshold)
    return Clustering(renumber_by_size(labels), len(np.unique(raw[raw >= 0])), int((raw < 0).sum()), merged)


def cosine_silhouette(x: np.ndarray, labels: np.ndarray, sample: int = 5000, seed: int = 0) -> float | None:
    """Mean cosine silhouette (on at most ``sample`` points); None with fewer than 2 or N clusters."""
    k = len(np.unique(labels))
    if k < 2 or k >= len(x):
        return None
    size = min(sample, len(x))
    return float(silhouette_score(x, labels, metric="cosine", sample_size=size, random_state=seed))


def exemplars(x: np.ndarray, labels: np.ndarray, texts: Sequence[str], k: int) -> dict[int, list[str]]:
    """Per cluster, up to ``k`` distinct texts closest (cosine) to its centroid."""
    ids, cents = centroids(x, labels)
    out: dict[int, list[str]] = {}
    for cid, cent in zip(ids, cents, strict=True):
        members = np.flatnonzero(labels == cid)
        chosen: list[str] = []
        for i in members[np.argsort(-(x[members] @ cent), kind="stable")]:
            if texts[i] not in chosen:
                chosen.append(texts[i])
            if len(chosen) == k:
                break
        out[int(cid)] = chosen
    return out
