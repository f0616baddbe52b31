"""Sampling of a synthetic person's identity, outfits and per-image nuisance (pose, background, light)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from reid.data.synth import vocab


@dataclass(frozen=True)
class Identity:
    """Attributes fixed per person. ``*_factor`` and ``*_rgb`` are the exact drawn values of the classes."""

    gender: str
    height: str
    build: str
    skin: str
    hair_style: str
    hair_colour: str | None
    height_factor: float
    build_factor: float
    skin_rgb: tuple[int, int, int]
    hair_rgb: tuple[int, int, int]

    def categories(self) -> tuple[str | None, ...]:
        """The categorical attributes (what captions and descriptions can say)."""
        return tuple(getattr(self, name) for name in vocab.IDENTITY_VALUES)

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Outfit:
    """Clothing fixed per outfit; ``clothes_id`` is unique over the whole generated dataset."""

    clothes_id: int
    upper_type: str
    upper_colour: str
    upper_pattern: str
    lower_type: str
    lower_colour: str
    shoes_colour: str
    bag: str
    bag_colour: str | None
    hat: str
    hat_colour: str | None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("clothes_id")
        return data


@dataclass(frozen=True)
class Nuisance:
    """Per-image variation that is neither identity nor clothing."""

    facing: str
    stride: float
    arm_swing: float
    background_rgb: tuple[int, int, int]
    ground_rgb: tuple[int, int, int]
    clutter: int
    clutter_seed: int
    brightness: float
    contrast: float
    scale: float
    dx: float
    dy: float

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


FACINGS = ("front", "back", "left", "right")
_HAIR_BY_GENDER = {
    "male": (0.40, 0.05, 0.02, 0.25, 0.03, 0.25),
    "female": (0.12, 0.38, 0.20, 0.16, 0.14, 0.0),
}
_LOWER_BY_GENDER = {"male": (0.62, 0.35, 0.03), "female": (0.40, 0.25, 0.35)}


def _pick(rng: np.random.Generator, values: tuple[str, ...], p: tuple[float, ...] | None = None) -> str:
    return str(values[int(rng.choice(len(values), p=p))])


def _jitter_rgb(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    shift = rng.integers(-amount, amount + 1, size=3)
    return tuple(int(np.clip(c + s, 0, 255)) for c, s in zip(rgb, shift, strict=True))  # type: ignore[return-value]


def sample_identity(rng: np.random.Generator) -> Identity:
    """One person's body: gender presentation, height, build, skin tone, hair style and colour."""
    gender = _pick(rng, vocab.GENDERS)
    height = _pick(rng, vocab.HEIGHTS)
    build = _pick(rng, vocab.BUILDS)
    skin = _pick(rng, tuple(vocab.SKIN_TONES))
    hair_style = _pick(rng, vocab.HAIR_STYLES, _HAIR_BY_GENDER[gender])
    hair_colour = None if hair_style == "bald" else _pick(rng, tuple(vocab.HAIR_COLOURS))
    lo, hi = vocab.HEIGHT_FACTORS[height]
    height_factor = round(float(rng.uniform(lo, hi)), 4)
    lo, hi = vocab.BUILD_FACTORS[build]
    build_factor = round(float(rng.uniform(lo, hi)), 4)
    skin_rgb = _jitter_rgb(rng, vocab.SKIN_TONES[skin], 8)
    hair_rgb = _jitter_rgb(rng, vocab.HAIR_COLOURS[hair_colour] if hair_colour else vocab.SKIN_TONES[skin], 10)
    return Identity(gender, height, build, skin, hair_style, hair_colour, height_factor, build_factor,
                    skin_rgb, hair_rgb)


def sample_outfit(rng: np.random.Generator, identity: Identity, clothes_id: int,
                  others: tuple[Outfit, ...] = ()) -> Outfit:
    """One outfit; its upper and lower colours differ from each other and from those of every outfit in
    ``others`` (so outfits of one person are told apart by colour)."""
    used_upper = {o.upper_colour for o in others}
    used_lower = {o.lower_colour for o in others}
    colours = tuple(vocab.COLOURS)
    upper_colour = _pick(rng, tuple(c for c in colours if c not in used_upper))
    lower_colour = _pick(rng, tuple(c for c in colours if c not in used_lower and c != upper_colour))
    bag = _pick(rng, vocab.BAGS, (0.5, 0.3, 0.2))
    hat = _pick(rng, vocab.HATS, (0.75, 0.15, 0.10))
    return Outfit(
        clothes_id=clothes_id,
        upper_type=_pick(rng, vocab.UPPER_TYPES),
        upper_colour=upper_colour,
        upper_pattern=_pick(rng, vocab.PATTERNS, (0.6, 0.25, 0.15)),
        lower_type=_pick(rng, vocab.LOWER_TYPES, _LOWER_BY_GENDER[identity.gender]),
        lower_colour=lower_colour,
        shoes_colour=_pick(rng, vocab.SHOE_COLOURS),
        bag=bag,
        bag_colour=None if bag == "none" else _pick(rng, colours),
        hat=hat,
        hat_colour=None if hat == "none" else _pick(rng, colours),
    )


def sample_nuisance(rng: np.random.Generator) -> Nuisance:
    """Pose, background, clutter, light and framing of one image."""
    facing = _pick(rng, FACINGS, (0.4, 0.3, 0.15, 0.15))
    side = facing in ("left", "right")
    stride = float(rng.uniform(8, 22) if side else rng.uniform(0, 7))
    background = tuple(int(v) for v in rng.integers(70, 200, size=3))
    ground = tuple(int(v * 0.7) for v in rng.integers(60, 190, size=3))
    return Nuisance(
        facing=facing,
        stride=round(stride, 3),
        arm_swing=round(float(rng.uniform(0, 1)) * stride, 3),
        background_rgb=background,  # type: ignore[arg-type]
        ground_rgb=ground,  # type: ignore[arg-type]
        clutter=int(rng.integers(0, 7)),
        clutter_seed=int(rng.integers(0, 2**31 - 1)),
        brightness=round(float(rng.uniform(0.78, 1.2)), 4),
        contrast=round(float(rng.uniform(0.8, 1.2)), 4),
        scale=round(float(rng.uniform(0.96, 1.04)), 4),
        dx=round(float(rng.uniform(-0.08, 0.08)), 4),
        dy=round(float(rng.uniform(-0.02, 0.02)), 4),
    )
