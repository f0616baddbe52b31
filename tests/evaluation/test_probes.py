"""Linear attribute probes: a feature that encodes an attribute group decodes it, one that does not sits at
chance; labels come from synthetic ground truth; run on a model, the probes report every group x feature."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reid.config import load_config
from reid.evaluation.probes import GROUPS, attribute_labels, probe_accuracy, probe_report


def _labels(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {name: rng.integers(0, 3, n).astype(str) for names in GROUPS.values() for name in names}


def _encode(labels: dict[str, np.ndarray], names: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """One-hot codes of ``names`` plus noise dimensions: linearly decodable for those attributes only."""
    parts = [np.eye(3)[labels[n].astype(int)] for n in names]
    noise = rng.standard_normal((len(labels[names[0]]), 6))
    return np.concatenate(parts + [noise], axis=1) + 0.05 * rng.standard_normal((len(noise), 3 * len(names) + 6))


def test_a_probe_decodes_what_a_feature_encodes_and_nothing_else() -> None:
    rng = np.random.default_rng(0)
    fit, score = _labels(rng, 400), _labels(rng, 200)
    features = {"id": (_encode(fit, GROUPS["id"], rng), _encode(score, GROUPS["id"], rng)),
                "clo": (_encode(fit, GROUPS["clo"], rng), _encode(score, GROUPS["clo"], rng))}
    report = probe_report(features, fit, score)
    assert set(report) == {"probe/id_from_id", "probe/id_from_clo", "probe/clo_from_id", "probe/clo_from_clo",
                           "probe/chance_id", "probe/chance_clo"}
    assert report["probe/id_from_id"] > 95 and report["probe/clo_from_clo"] > 95
    assert report["probe/clo_from_id"] < 50 and report["probe/id_from_clo"] < 50  # three values: chance ~33
    assert 25 < report["probe/chance_id"] < 45


def test_chance_is_the_fitting_splits_majority_value() -> None:
    x = np.zeros((6, 2))
    acc, chance = probe_accuracy(x, np.array(["a", "a", "a", "a", "b", "b"]), x[:4], np.array(["a", "b", "b", "b"]))
    assert chance == 0.25 and acc == 0.25  # constant features: the probe answers the majority too


def test_attribute_labels_read_synthetic_ground_truth_and_refuse_none() -> None:
    record = {"identity": {"gender": "female", "height": "tall", "build": "slim", "skin": "pale",
                           "hair_style": "bun"},
              "clothing": {"upper_type": "coat", "upper_colour": "red", "upper_pattern": "plain",
                           "lower_type": "skirt", "lower_colour": "blue", "shoes_colour": "black", "bag": "none",
                           "hat": "cap"}}
    labels = attribute_labels([json.dumps(record)] * 2)
    assert labels is not None and labels["hat"].tolist() == ["cap", "cap"] and labels["gender"][0] == "female"
    assert attribute_labels(["", json.dumps(record)]) is None
    assert attribute_labels(["not json"]) is None


@pytest.mark.usefixtures("ray_local")
def test_probes_of_a_model_on_a_synthetic_dataset(tmp_path: Path) -> None:
    from reid.data.synth import generate
    from reid.distributed.prepare_job import prepare_dataset
    from reid.models.factory import create_model
    from reid.training.probing import run_probes

    generate(str(tmp_path / "raw"), identities=20, images_per_identity=4, seed=3, progress=False)
    data = prepare_dataset("cuhk-pedes", str(tmp_path / "raw"), str(tmp_path / "ds")).uri
    for bdam, features in ((True, ("id", "clo")), (False, ("pooled",))):
        config = load_config("pkg://tiny", [f"data.uri={data}", f"model.bdam.enabled={str(bdam).lower()}",
                                            "data.image_size=[128,64]"])
        torch.manual_seed(0)
        model = create_model(config)
        report = run_probes(model, config, torch.device("cpu"), "train", "test")
        expected = {f"probe/{g}_from_{f}" for g in GROUPS for f in features} | {"probe/chance_id", "probe/chance_clo"}
        assert set(report) == expected
        assert all(0.0 <= v <= 100.0 for v in report.values())
