"""Which identities go to which split, how many outfits each person has and which image wears which.

Clothes-changing guarantee: in clothes-changing mode every test identity has ``m >= 2`` outfits (needs
``images_per_identity >= 2``) and its images take outfits round-robin in a shuffled order, so each outfit
is worn on at least ``floor(K / m) >= 1`` and at most ``ceil(K / m) <= ceil(K / 2)`` of its ``K`` images.
Hence for every test caption (which describes the outfit of its own image) the test gallery holds at least
one image of the same person in a different outfit (another ``clothes_id``); at least ``floor(K / 2)`` of
that person's ``K`` gallery images wear clothes other than those the caption describes. Dropping same-``clothes_id``
gallery images per query (the clothes-changing protocol) leaves every query a positive.
In normal mode a person has ``min(m, max(1, K // 2))`` outfits with ``m`` in 1..3, so each outfit is worn
on at least two images whenever ``K >= 2``: a caption's outfit appears elsewhere in the gallery.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SPLITS = ("train", "val", "test")


def split_counts(identities: int, fractions: Sequence[float]) -> dict[str, int]:
    """Identities per split by largest remainder; a split with a positive fraction gets at least one
    identity when there are enough identities to go round."""
    if len(fractions) != len(SPLITS) or any(f < 0 for f in fractions):
        raise ValueError(f"splits must be three non-negative fractions (train, val, test), got {tuple(fractions)}")
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must sum to 1, got {tuple(fractions)} (sum {sum(fractions)})")
    raw = [identities * f for f in fractions]
    counts = [math.floor(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (-round(raw[i] - counts[i], 9), i))
    for i in by_remainder[: identities - sum(counts)]:
        counts[i] += 1
    for i, fraction in enumerate(fractions):
        donor = max(range(len(counts)), key=lambda k: counts[k])
        if fraction > 0 and counts[i] == 0 and counts[donor] > 1:
            counts[donor] -= 1
            counts[i] += 1
    return dict(zip(SPLITS, counts, strict=True))


def split_of_ids(counts: dict[str, int]) -> list[str]:
    """The split of each 1-based id in order: train ids first, then val, then test."""
    return [split for split in SPLITS for _ in range(counts[split])]


def outfit_count(rng: np.random.Generator, split: str, images: int, clothes_changing: bool) -> int:
    """How many outfits a person wears over ``images`` images (see the module docstring)."""
    if clothes_changing and split == "test":
        if images < 2:
            raise ValueError("clothes-changing mode needs images_per_identity >= 2")
        return int(rng.integers(2, min(3, images) + 1))
    return max(1, min(int(rng.integers(1, 4)), images // 2))


def outfit_schedule(rng: np.random.Generator, images: int, outfits: int) -> list[int]:
    """The outfit index of each image: round-robin over ``outfits``, then shuffled."""
    base = np.arange(images) % outfits
    return [int(v) for v in rng.permutation(base)]
