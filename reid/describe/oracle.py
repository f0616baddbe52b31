"""The "oracle" describer: image-grounded identity and clothing descriptions written from a synthetic image's
ground-truth attributes, with the attribute noise a real MLLM makes (dropped and wrong attributes)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from reid.data.synth.phrases import article
from reid.data.synth.vocab import CLOTHING_VALUES, CONDITIONAL, IDENTITY_VALUES
from reid.describe.schema import Description

PROVENANCE = "oracle"
MODEL = "oracle"
PROMPT_VERSION = "oracle-v1"
Attributes = dict[str, str | None]


class OracleInputError(ValueError):
    """The ground-truth attributes of an image are missing or malformed."""


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"oracle {name} must lie in [0, 1], got {value}")
    return float(value)


def _image_seed(seed: int, image_id: str) -> list[int]:
    digest = hashlib.blake2b(image_id.encode("utf-8"), digest_size=8).digest()
    return [seed, int.from_bytes(digest, "little")]


def parse_attributes(image_id: str, attributes: Mapping[str, Any] | str) -> tuple[Attributes, Attributes]:
    """``(identity, clothing)`` categorical attributes from a ``synth_attributes.json`` entry or its JSON text."""
    if isinstance(attributes, str):
        try:
            attributes = json.loads(attributes) if attributes else {}
        except json.JSONDecodeError as exc:
            raise OracleInputError(f"image '{image_id}': attributes are not valid JSON ({exc})") from exc
    parsed = []
    for group, values in (("identity", IDENTITY_VALUES), ("clothing", CLOTHING_VALUES)):
        section = attributes.get(group) if isinstance(attributes, Mapping) else None
        if not isinstance(section, Mapping):
            raise OracleInputError(f"image '{image_id}': ground-truth attributes lack the '{group}' mapping "
                                   "(the oracle needs synthetic data written by `reid synth`)")
        missing = [name for name in values if name not in section]
        if missing:
            raise OracleInputError(f"image '{image_id}': '{group}' attributes lack {missing}")
        parsed.append({name: section[name] for name in values})
    return parsed[0], parsed[1]


@dataclass(frozen=True)
class OracleDescriber:
    """Writes :class:`Description` rows from ground truth; noise is a function of ``(seed, image_id)`` only.

    Each categorical attribute with a value is independently dropped with probability ``drop_prob``; a
    kept one is replaced by a different value of its vocabulary with probability ``wrong_prob``. A colour
    whose garment became "none" is dropped with it; a garment that appeared wrongly gets a random colour.
    """

    drop_prob: float = 0.0
    wrong_prob: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_probability("drop_prob", self.drop_prob)
        _check_probability("wrong_prob", self.wrong_prob)

    def noisy_attributes(self, image_id: str, attributes: Mapping[str, Any] | str) -> tuple[Attributes, Attributes]:
        """``(identity, clothing)`` as the oracle "sees" them; a dropped attribute is absent from the dict."""
        identity, clothing = parse_attributes(image_id, attributes)
        rng = np.random.default_rng(_image_seed(self.seed, image_id))
        return self._perturb(rng, identity, IDENTITY_VALUES), self._perturb(rng, clothing, CLOTHING_VALUES)

    def _perturb(self, rng: np.random.Generator, truth: Attributes,
                 values: Mapping[str, tuple[str, ...]]) -> Attributes:
        seen: Attributes = {}
        for name, vocabulary in values.items():
            drop, wrong, pick = rng.random(), rng.random(), int(rng.integers(0, len(vocabulary) - 1))
            value = truth[name]
            if value is None:
                seen[name] = None
            elif drop < self.drop_prob:
                continue
            elif wrong < self.wrong_prob:
                others = [v for v in vocabulary if v != value]
                seen[name] = others[pick % len(others)]
            else:
                seen[name] = value
        for child, (parent, empty) in CONDITIONAL.items():
            if child not in values:
                continue
            if seen.get(parent) == empty:
                seen[child] = None
            elif parent in seen and seen.get(child, "") is None:
                vocabulary = values[child]
                seen[child] = vocabulary[int(rng.integers(0, len(vocabulary)))]
        return seen

    def describe(self, image_id: str, attributes: Mapping[str, Any] | str) -> Description:
        """The identity and clothing descriptions of one image (provenance ``oracle``)."""
        identity, clothing = self.noisy_attributes(image_id, attributes)
        return Description(
            image_id=image_id,
            identity=identity_text(identity),
            clothing=clothing_text(clothing),
            provenance=PROVENANCE,
            model=MODEL,
            prompt_version=PROMPT_VERSION,
            parts=parts_of(identity, clothing),
        )


def _words(*items: str | None) -> str:
    return " ".join(i for i in items if i)


def hair_phrase(identity: Attributes) -> str:
    """"short black hair", "black hair in a ponytail", "a bald head", or "" when nothing is known."""
    style, colour = identity.get("hair_style"), identity.get("hair_colour")
    if style == "bald":
        return "a bald head"
    if style in ("ponytail", "bun"):
        return _words(colour, "hair in a", style)
    if style is None:
        return _words(colour, "hair") if colour else ""
    return _words(style, colour, "hair")


def identity_text(identity: Attributes) -> str:
    """E.g. "A tall slim man with light skin and short black hair." (no clothing words)."""
    noun = {"male": "man", "female": "woman"}.get(identity.get("gender") or "", "person")
    height = {"medium": "medium-height"}.get(identity.get("height") or "", identity.get("height"))
    build = {"average": "average-build", "heavy": "heavyset"}.get(identity.get("build") or "", identity.get("build"))
    features = [f"{identity['skin']} skin" if identity.get("skin") else "", hair_phrase(identity)]
    features = [f for f in features if f]
    text = article(_words(height, build, noun))
    if features:
        text += " with " + " and ".join(features)
    return text[:1].upper() + text[1:] + "."


def _garment(colour: str | None, name: str | None, fallback: str) -> str:
    return _words(colour, name or fallback)


def upper_phrase(clothing: Attributes) -> str:
    pattern = {"stripes": "striped", "checks": "checked"}.get(clothing.get("upper_pattern") or "")
    return _words(clothing.get("upper_colour"), pattern, clothing.get("upper_type") or "top")


def clothing_text(clothing: Attributes) -> str:
    """E.g. "A red striped t-shirt, blue trousers and white shoes, with a black backpack." (no body words)."""
    items = [upper_phrase(clothing),
             _garment(clothing.get("lower_colour"), clothing.get("lower_type"), "bottoms"),
             _garment(clothing.get("shoes_colour"), "shoes", "shoes")]
    items[0] = article(items[0])
    text = ", ".join(items[:-1]) + " and " + items[-1]
    extras = [article(_words(clothing.get(colour), clothing[name])) for name, colour in
              (("bag", "bag_colour"), ("hat", "hat_colour")) if clothing.get(name) not in (None, "none")]
    if extras:
        text += ", with " + " and ".join(extras)
    return text[:1].upper() + text[1:] + "."


def parts_of(identity: Attributes, clothing: Attributes) -> dict[str, str]:
    """Phrases per semantic part (:data:`reid.data.parts.PARTS`); absent parts are left out."""
    parts = {"clothes": upper_phrase(clothing),
             "shoes": _garment(clothing.get("shoes_colour"), "shoes", "shoes")}
    hair = hair_phrase(identity)
    if hair:
        parts["hair"] = hair
    lower = clothing.get("lower_type")
    if lower is not None:
        parts["skirt" if lower == "skirt" else "pants"] = _garment(clothing.get("lower_colour"), lower, "bottoms")
    for name, colour in (("bag", "bag_colour"), ("hat", "hat_colour")):
        if clothing.get(name) not in (None, "none"):
            parts[name] = _words(clothing.get(colour), clothing[name])
    return parts


def describe_oracle(image_id: str, attributes: Mapping[str, Any] | str, drop_prob: float = 0.0,
                    wrong_prob: float = 0.0, seed: int = 0) -> Description:
    """One-shot :meth:`OracleDescriber.describe`."""
    return OracleDescriber(drop_prob, wrong_prob, seed).describe(image_id, attributes)
