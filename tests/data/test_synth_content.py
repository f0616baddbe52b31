"""What synthetic captions say and what the drawings show: styles, colours, identity cues in pixels."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from reid.data.synth import STYLE_NAMES, generate, vocab
from reid.data.synth.attributes import Identity, Nuisance, Outfit, sample_identity, sample_nuisance, sample_outfit
from reid.data.synth.captions import write_caption
from reid.data.synth.draw import render_person
from reid.data.synth.phrases import tokenize

STYLE_MARKERS = {
    "attribute_list": lambda c: ", " in c and " is " not in c and ":" not in c,
    "narrative": lambda c: " is wearing " in c and c.count(".") >= 2,
    "photo_template": lambda c: re.match(r"^(A photo of|A picture of|An image of) ", c) is not None,
    "clothing_first": lambda c: c.startswith("Dressed in ") or ", worn by " in c,
    "police_report": lambda c: "Height: " in c and "Upper: " in c,
}


def _people(n: int) -> list[tuple[Identity, Outfit, Nuisance, np.random.Generator]]:
    out = []
    for i in range(n):
        rng = np.random.default_rng([99, i])
        identity = sample_identity(rng)
        out.append((identity, sample_outfit(rng, identity, i), sample_nuisance(rng), rng))
    return out


def _gender_words(gender: str) -> set[str]:
    return {w for noun in vocab.GENDER_NOUNS[gender] for w in noun.split()} - {"young"} | {gender}


def test_styles_are_recorded_distinct_and_recognisable(tmp_path: Path) -> None:
    generate(tmp_path, identities=10, images_per_identity=4, seed=5, progress=False)
    records = json.loads((tmp_path / "reid_raw.json").read_text())
    truth = json.loads((tmp_path / "synth_attributes.json").read_text())
    used = set()
    for r in records:
        styles = truth[r["file_path"]]["caption_styles"]
        assert len(styles) == len(r["captions"]) == len(set(styles))
        for style, caption in zip(styles, r["captions"], strict=True):
            used.add(style)
            assert STYLE_MARKERS[STYLE_NAMES[style]](caption), (STYLE_NAMES[style], caption)
    assert len(used) >= 4


@pytest.mark.parametrize("style", range(len(STYLE_NAMES)))
def test_every_style_names_the_drawn_colours_gender_and_hair(style: int) -> None:
    others = {name: set(words) for name, words in vocab.COLOUR_WORDS.items()}
    for identity, outfit, nuisance, rng in _people(150):
        caption = write_caption(rng, style, identity, outfit, nuisance)
        tokens = set(tokenize(caption))
        assert tokens & others[outfit.upper_colour], caption
        assert tokens & others[outfit.lower_colour], caption
        assert tokens & _gender_words(identity.gender), caption
        other_gender = "female" if identity.gender == "male" else "male"
        assert not tokens & _gender_words(other_gender), caption
        hair = "bald" if identity.hair_style == "bald" else identity.hair_colour
        assert hair in tokens, caption
    assert STYLE_MARKERS[STYLE_NAMES[style]](caption)


def test_word_choice_varies_within_a_style() -> None:
    identity, outfit, nuisance, _ = _people(1)[0]
    captions = {write_caption(np.random.default_rng(i), 1, identity, outfit, nuisance) for i in range(30)}
    assert len(captions) >= 10


def _plain_scene(facing: str = "front") -> Nuisance:
    return Nuisance(facing=facing, stride=0.0, arm_swing=0.0, background_rgb=(0, 255, 0), ground_rgb=(0, 255, 0),
                    clutter=0, clutter_seed=0, brightness=1.0, contrast=1.0, scale=1.0, dx=0.0, dy=0.0)


def _figure_mask(image: np.ndarray) -> np.ndarray:
    return np.abs(image.astype(int) - np.array([0, 255, 0])).sum(-1) > 60


BASE = Identity("male", "medium", "average", "light", "short", "black", 0.92, 1.0, (226, 184, 150), (20, 18, 16))
OUTFIT = Outfit(0, "shirt", "red", "plain", "trousers", "blue", "black", "none", None, "none", None)


def test_height_and_build_are_visible_in_the_drawing() -> None:
    def box(identity: Identity) -> tuple[int, int]:
        mask = _figure_mask(np.asarray(render_person(identity, OUTFIT, _plain_scene(), (256, 128))))
        rows, cols = np.nonzero(mask)
        torso_row = mask[int(rows.min() + 0.35 * (rows.max() - rows.min()))]
        return int(rows.max() - rows.min()), int(torso_row.sum())

    short, _ = box(replace(BASE, height="short", height_factor=0.85))
    tall, _ = box(replace(BASE, height="tall", height_factor=0.99))
    _, slim = box(replace(BASE, build="slim", build_factor=0.8))
    _, heavy = box(replace(BASE, build="heavy", build_factor=1.3))
    assert tall > short * 1.1
    assert heavy > slim * 1.3


def test_skin_hair_and_garment_colours_are_drawn() -> None:
    image = np.asarray(render_person(BASE, OUTFIT, _plain_scene(), (256, 128))).astype(int)
    mask = _figure_mask(image)
    rows, cols = np.nonzero(mask)
    top, bottom, cx = rows.min(), rows.max(), int(cols.mean())
    ph = bottom - top

    def colour_at(fraction: float, dx: float = 0.0) -> np.ndarray:
        return image[int(top + fraction * ph), int(cx + dx * ph)]

    assert np.abs(colour_at(0.02) - BASE.hair_rgb).max() < 25
    assert np.abs(colour_at(0.11) - BASE.skin_rgb).max() < 25
    assert np.abs(colour_at(0.35, 0.05) - vocab.COLOURS["red"]).max() < 25
    assert np.abs(colour_at(0.8, 0.03) - vocab.COLOURS["blue"]).max() < 25
    dark = replace(BASE, skin="dark", skin_rgb=vocab.SKIN_TONES["dark"])
    other = np.asarray(render_person(dark, OUTFIT, _plain_scene(), (256, 128))).astype(int)
    assert np.abs(other[int(top + 0.11 * ph), cx] - vocab.SKIN_TONES["dark"]).max() < 25
