"""The analysis pictures: what they plot, their PNG size, and input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid.evaluation.figures import plot_gate_histograms, plot_modality_weights, plot_tsne
from reid.evaluation.rank_grid import RIGHT, UNKNOWN, WRONG, plot_rank_grid


def test_gate_histograms_put_identity_and_clothing_weights_where_they_are(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gate = rng.uniform(0.62, 0.68, (40, 8))  # [B, D]
    out = plot_gate_histograms(gate, str(tmp_path / "gate.png"), bins=10)
    assert out["identity"].sum() == out["clothing"].sum() == 320
    assert out["identity"][6] == 320  # bin [0.6, 0.7)
    assert out["clothing"][3] == 320  # 1 - g in [0.32, 0.38] -> bin [0.3, 0.4)
    assert Image.open(tmp_path / "gate.png").size == (600, 400)  # 6 x 4 inches at 100 dpi
    with pytest.raises(ValueError, match=r"identity_weights must lie in \[0, 1\]"):
        plot_gate_histograms(np.array([0.5, 1.5]), str(tmp_path / "bad.png"))


def test_modality_weights_take_explicit_text_weights(tmp_path: Path) -> None:
    image = np.array([0.9, 0.85, 1.0, 1.0])  # 1.0: images without a description (w_img = 1)
    out = plot_modality_weights(image, str(tmp_path / "w.png"), text_weights=np.array([0.1, 0.15, 0.0, 0.0]),
                                bins=5)
    assert out["image"].tolist() == [0, 0, 0, 0, 4]
    assert out["text"].tolist() == [4, 0, 0, 0, 0]
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"


def test_tsne_separates_persons_in_identity_features_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pids = np.repeat(np.arange(6), 8)  # 48 points; only the first 4 persons are drawn
    centres = rng.normal(0, 6, (6, 16))
    identity = centres[pids] + rng.normal(0, 0.5, (48, 16))
    clothing = rng.normal(0, 1, (48, 16))  # no person structure
    out = plot_tsne(identity, clothing, pids, str(tmp_path / "tsne.png"), max_identities=4)
    assert out["person_ids"].tolist() == np.repeat(np.arange(4), 8).tolist()
    assert out["identity"].shape == out["clothing"].shape == (32, 2)
    assert nearest_neighbour_accuracy(out["identity"], out["person_ids"]) == 1.0
    assert nearest_neighbour_accuracy(out["clothing"], out["person_ids"]) < 0.7
    assert Image.open(tmp_path / "tsne.png").size == (1000, 450)
    three = plot_tsne(identity, clothing, pids, str(tmp_path / "t3.png"), max_identities=4,
                      gallery_embeddings=identity * 2)
    assert three["gallery"].shape == (32, 2) and Image.open(tmp_path / "t3.png").size == (1500, 450)
    with pytest.raises(ValueError, match="person_ids"):
        plot_tsne(identity, clothing, pids[:-1], str(tmp_path / "x.png"))


def nearest_neighbour_accuracy(points: np.ndarray, labels: np.ndarray) -> float:
    dist = ((points[:, None] - points[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    return float(np.mean(labels[dist.argmin(1)] == labels))


def test_rank_grid_size_and_frame_colours(tmp_path: Path) -> None:
    thumbs = [[np.full((3, 24, 12), 40 * (i + j), dtype=np.uint8) for j in range(3)] for i in range(2)]
    correct = np.array([[True, False, True], [False, False, True]])
    colours = plot_rank_grid(["a man in a red coat", "a woman with a bag " * 5], thumbs, str(tmp_path / "g.png"),
                             correct=correct, scores=np.ones((2, 3)), dpi=50)
    assert colours == [[RIGHT, WRONG, RIGHT], [WRONG, WRONG, RIGHT]]
    assert Image.open(tmp_path / "g.png").size == (285, 180)  # (3 + 0.9*3) x (1.8*2) inches at 50 dpi
    grey = plot_rank_grid(["q"], [thumbs[0][:1]], str(tmp_path / "h.png"))
    assert grey == [[UNKNOWN]]
    with pytest.raises(ValueError, match=r"correct must be \[2, 3\]"):
        plot_rank_grid(["a", "b"], thumbs, str(tmp_path / "x.png"), correct=np.ones((2, 2), bool))


def test_modality_weights_leave_out_images_without_a_description(tmp_path: Path) -> None:
    image = np.array([0.1, 0.3, 1.0, 1.0])
    out = plot_modality_weights(image, str(tmp_path / "w.png"), bins=5,
                                has_description=np.array([True, True, False, False]))
    assert out["image"].tolist() == [1, 1, 0, 0, 0]  # the two image-only rows (w_img = 1) are not drawn
    assert Image.open(tmp_path / "w.png").size == (600, 400)


def test_a_long_query_stays_in_its_column() -> None:
    from reid.evaluation.rank_grid import MAX_LINES, WRAP, wrap_query

    wrapped = wrap_query("a " * 300 + "unbreakablewordthatislongerthanthecolumnwidthbyfar")
    lines = wrapped.splitlines()
    assert len(lines) == MAX_LINES and all(len(line) <= WRAP for line in lines) and lines[-1].endswith("...")
    assert wrap_query("short query") == "short query"
