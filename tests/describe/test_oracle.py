"""The noisy oracle describer: exact at noise 0, noisy at the configured rates, deterministic, separated words."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reid.data.parts import PARTS
from reid.data.synth import vocab
from reid.data.synth.attributes import sample_identity, sample_outfit
from reid.data.synth.phrases import tokenize
from reid.describe.oracle import OracleDescriber, OracleInputError, describe_oracle
from reid.describe.vocabulary import load_vocabulary


def _truth(n: int, seed: int = 0) -> dict[str, dict]:
    """Ground-truth entries shaped like ``synth_attributes.json`` (no drawing needed)."""
    out = {}
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        identity = sample_identity(rng)
        outfit = sample_outfit(rng, identity, i)
        out[f"synth/{i:05d}/{i:05d}_000.jpg"] = {"identity": identity.to_json(), "clothing": outfit.to_json(),
                                                  "clothes_id": i}
    return out


TRUTH = _truth(600)


def _categorical(entry: dict) -> tuple[dict, dict]:
    return ({k: entry["identity"][k] for k in vocab.IDENTITY_VALUES},
            {k: entry["clothing"][k] for k in vocab.CLOTHING_VALUES})


def test_noise_zero_gives_exactly_the_ground_truth() -> None:
    oracle = OracleDescriber(0.0, 0.0, seed=3)
    for image_id, entry in list(TRUTH.items())[:200]:
        assert oracle.noisy_attributes(image_id, entry) == _categorical(entry)
        d = oracle.describe(image_id, entry)
        ident, cloth = set(tokenize(d.identity)), set(tokenize(d.clothing))
        truth_id, truth_clo = _categorical(entry)
        assert {"male": "man", "female": "woman"}[truth_id["gender"]] in ident
        assert truth_id["skin"] in ident and (truth_id["hair_colour"] or "bald") in ident
        assert {truth_clo["upper_colour"], truth_clo["upper_type"], truth_clo["lower_colour"],
                truth_clo["lower_type"]} <= cloth
        if truth_clo["bag"] != "none":
            assert {truth_clo["bag"], truth_clo["bag_colour"]} <= cloth
        else:
            assert not cloth & {"backpack", "handbag"}


def test_description_row_metadata_and_parts() -> None:
    image_id, entry = next(iter(TRUTH.items()))
    d = describe_oracle(image_id, json.dumps(entry), 0.2, 0.1, seed=1)
    assert (d.provenance, d.model, d.prompt_version, d.image_id) == ("oracle", "oracle", "oracle-v1", image_id)
    assert d == OracleDescriber(0.2, 0.1, seed=1).describe(image_id, entry)
    assert set(d.parts) <= set(PARTS) and "clothes" in d.parts and "shoes" in d.parts


def test_deterministic_per_seed_and_image_independent_of_order() -> None:
    items = list(TRUTH.items())[:100]
    first = [OracleDescriber(0.3, 0.3, seed=5).describe(i, e) for i, e in items]
    again = [OracleDescriber(0.3, 0.3, seed=5).describe(i, e) for i, e in reversed(items)][::-1]
    other = [OracleDescriber(0.3, 0.3, seed=6).describe(i, e) for i, e in items]
    assert first == again
    assert sum(a != b for a, b in zip(first, other, strict=True)) > 50


def test_noise_rates_match_the_configured_probabilities() -> None:
    drop_p, wrong_p = 0.2, 0.3
    oracle = OracleDescriber(drop_p, wrong_p, seed=11)
    dropped = wrong = kept = total = 0
    unconditional = [k for k in (*vocab.IDENTITY_VALUES, *vocab.CLOTHING_VALUES) if k not in vocab.CONDITIONAL]
    for image_id, entry in TRUTH.items():
        seen_id, seen_clo = oracle.noisy_attributes(image_id, entry)
        truth_id, truth_clo = _categorical(entry)
        seen, truth = seen_id | seen_clo, truth_id | truth_clo
        for name in unconditional:
            total += 1
            if name not in seen:
                dropped += 1
                continue
            kept += 1
            assert seen[name] in (vocab.IDENTITY_VALUES | vocab.CLOTHING_VALUES)[name]
            wrong += seen[name] != truth[name]
    # 600 images x 13 attributes: binomial standard errors are ~0.005; allow ~5 of them.
    assert abs(dropped / total - drop_p) < 0.025
    assert abs(wrong / kept - wrong_p) < 0.03


def test_dependent_colours_follow_their_garment() -> None:
    oracle = OracleDescriber(0.3, 0.5, seed=2)
    for image_id, entry in TRUTH.items():
        ident, cloth = oracle.noisy_attributes(image_id, entry)
        for child, (parent, empty) in vocab.CONDITIONAL.items():
            seen = ident | cloth
            if seen.get(parent) == empty:
                assert seen[child] is None
            elif parent in seen and child in seen:
                assert seen[child] is not None


@pytest.mark.parametrize("noise", [(0.0, 0.0), (0.4, 0.4)])
def test_identity_text_has_no_clothing_words_and_clothing_text_no_identity_words(noise: tuple[float, float]) -> None:
    oracle = OracleDescriber(*noise, seed=4)
    project = load_vocabulary()
    for image_id, entry in TRUTH.items():
        d = oracle.describe(image_id, entry)
        assert not set(tokenize(d.identity)) & vocab.CLOTHING_WORDS, d.identity
        assert not set(tokenize(d.clothing)) & vocab.IDENTITY_WORDS, d.clothing
        assert project.clothing_words.find(d.identity) == [], d.identity
        assert project.garments.find(d.clothing), d.clothing


def test_bad_input_names_the_image_and_what_is_missing() -> None:
    oracle = OracleDescriber()
    with pytest.raises(OracleInputError, match="img/1.jpg.*'identity'"):
        oracle.describe("img/1.jpg", {"clothing": {}})
    with pytest.raises(OracleInputError, match="img/2.jpg.*not valid JSON"):
        oracle.describe("img/2.jpg", "{broken")
    entry = dict(next(iter(TRUTH.values())))
    entry["clothing"] = {k: v for k, v in entry["clothing"].items() if k != "upper_colour"}
    with pytest.raises(OracleInputError, match="upper_colour"):
        oracle.describe("img/3.jpg", entry)
    with pytest.raises(ValueError, match="drop_prob"):
        OracleDescriber(drop_prob=1.5)
