"""Noun phrases for identity and clothing attributes, with random word choice (shared by captions)."""

from __future__ import annotations

import re

import numpy as np

from reid.data.synth import vocab
from reid.data.synth.attributes import Identity, Outfit

_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (hyphenated words kept whole), as in CUHK-PEDES ``processed_tokens``."""
    return _TOKEN.findall(text.lower())


def choose(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return str(options[int(rng.integers(0, len(options)))])


def article(phrase: str) -> str:
    """``phrase`` with "a" or "an" in front."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def colour(rng: np.random.Generator, name: str) -> str:
    return choose(rng, vocab.COLOUR_WORDS[name])


def person_noun(rng: np.random.Generator, identity: Identity) -> str:
    return choose(rng, vocab.GENDER_NOUNS[identity.gender])


def height_word(rng: np.random.Generator, identity: Identity) -> str:
    return {"short": "short", "medium": choose(rng, ("average-height", "medium-height")), "tall": "tall"}[
        identity.height]


def build_word(rng: np.random.Generator, identity: Identity) -> str:
    options = {"slim": ("slim", "thin", "slender"), "average": ("average-build",),
               "heavy": ("heavyset", "stocky", "heavy")}
    return choose(rng, options[identity.build])


def skin_phrase(rng: np.random.Generator, identity: Identity) -> str:
    return choose(rng, (f"{identity.skin} skin", f"a {identity.skin} complexion"))


def hair_phrase(rng: np.random.Generator, identity: Identity) -> str:
    """E.g. "short black hair", "a brown ponytail", "a bald head"."""
    style, col = identity.hair_style, identity.hair_colour
    if style == "bald":
        return choose(rng, ("a bald head", "a shaved, bald head"))
    options = {
        "short": (f"short {col} hair", f"cropped {col} hair"),
        "long": (f"long {col} hair", f"long, loose {col} hair"),
        "ponytail": (f"{col} hair in a ponytail", f"a {col} ponytail"),
        "curly": (f"curly {col} hair", f"a mop of curly {col} hair"),
        "bun": (f"{col} hair tied in a bun", f"a {col} bun"),
    }
    return choose(rng, options[style])


def upper_phrase(rng: np.random.Generator, outfit: Outfit) -> str:
    """E.g. "red striped t-shirt", "blue jacket with a check pattern" (no article)."""
    name = choose(rng, vocab.UPPER_WORDS[outfit.upper_type])
    col = colour(rng, outfit.upper_colour)
    if outfit.upper_pattern == "stripes":
        return choose(rng, (f"{col} striped {name}", f"{col} {name} with stripes"))
    if outfit.upper_pattern == "checks":
        return choose(rng, (f"{col} checked {name}", f"{col} plaid {name}", f"{col} {name} with a check pattern"))
    return choose(rng, (f"{col} {name}", f"plain {col} {name}")) if rng.random() < 0.5 else f"{col} {name}"


def lower_phrase(rng: np.random.Generator, outfit: Outfit) -> str:
    """E.g. "blue trousers", "a black skirt" (article only for the skirt)."""
    phrase = f"{colour(rng, outfit.lower_colour)} {choose(rng, vocab.LOWER_WORDS[outfit.lower_type])}"
    return article(phrase) if outfit.lower_type == "skirt" else phrase


def shoes_phrase(rng: np.random.Generator, outfit: Outfit) -> str:
    return f"{colour(rng, outfit.shoes_colour)} {choose(rng, vocab.SHOE_WORDS)}"


def bag_phrase(rng: np.random.Generator, outfit: Outfit) -> str | None:
    """E.g. "a black backpack"; None without a bag."""
    if outfit.bag == "none" or outfit.bag_colour is None:
        return None
    return article(f"{colour(rng, outfit.bag_colour)} {choose(rng, vocab.BAG_WORDS[outfit.bag])}")


def hat_phrase(rng: np.random.Generator, outfit: Outfit) -> str | None:
    """E.g. "a red cap"; None without a hat."""
    if outfit.hat == "none" or outfit.hat_colour is None:
        return None
    return article(f"{colour(rng, outfit.hat_colour)} {choose(rng, vocab.HAT_WORDS[outfit.hat])}")


def join(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
