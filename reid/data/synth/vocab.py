"""The closed vocabularies of synthetic pedestrians: attribute values, their colours and their words."""

from __future__ import annotations

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 32, 36),
    "blue": (34, 70, 200),
    "green": (36, 140, 60),
    "yellow": (235, 205, 40),
    "black": (24, 24, 28),
    "white": (238, 238, 234),
    "grey": (128, 128, 132),
    "purple": (118, 44, 150),
    "orange": (240, 128, 24),
    "pink": (242, 150, 184),
    "brown": (112, 72, 36),
}
"""Clothing colours: name -> RGB as drawn."""

SHOE_COLOURS = ("black", "white", "brown", "grey", "red", "blue")

SKIN_TONES: dict[str, tuple[int, int, int]] = {
    "pale": (244, 212, 190),
    "light": (226, 184, 150),
    "olive": (196, 150, 104),
    "tan": (164, 114, 74),
    "dark": (96, 64, 44),
}

HAIR_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (20, 18, 16),
    "brown": (96, 58, 30),
    "blond": (226, 196, 110),
    "grey": (170, 170, 170),
    "auburn": (150, 52, 24),
}

GENDERS = ("male", "female")
HEIGHTS = ("short", "medium", "tall")
BUILDS = ("slim", "average", "heavy")
HAIR_STYLES = ("short", "long", "ponytail", "curly", "bun", "bald")

HEIGHT_FACTORS: dict[str, tuple[float, float]] = {"short": (0.84, 0.88), "medium": (0.90, 0.94), "tall": (0.96, 1.0)}
"""Figure height as a fraction of the tallest figure, per height class (drawn, so visible)."""

BUILD_FACTORS: dict[str, tuple[float, float]] = {"slim": (0.78, 0.88), "average": (0.96, 1.06), "heavy": (1.18, 1.32)}
"""Body width multiplier per build class."""

UPPER_TYPES = ("t-shirt", "shirt", "jacket", "sweater", "coat")
PATTERNS = ("plain", "stripes", "checks")
LOWER_TYPES = ("trousers", "shorts", "skirt")
BAGS = ("none", "backpack", "handbag")
HATS = ("none", "cap", "beanie")

IDENTITY_VALUES: dict[str, tuple[str, ...]] = {
    "gender": GENDERS,
    "height": HEIGHTS,
    "build": BUILDS,
    "skin": tuple(SKIN_TONES),
    "hair_style": HAIR_STYLES,
    "hair_colour": tuple(HAIR_COLOURS),
}
"""Categorical identity attributes (fixed per person) and their values."""

CLOTHING_VALUES: dict[str, tuple[str, ...]] = {
    "upper_type": UPPER_TYPES,
    "upper_colour": tuple(COLOURS),
    "upper_pattern": PATTERNS,
    "lower_type": LOWER_TYPES,
    "lower_colour": tuple(COLOURS),
    "shoes_colour": SHOE_COLOURS,
    "bag": BAGS,
    "bag_colour": tuple(COLOURS),
    "hat": HATS,
    "hat_colour": tuple(COLOURS),
}
"""Categorical clothing attributes (fixed per outfit) and their values."""

CONDITIONAL: dict[str, tuple[str, str]] = {
    "hair_colour": ("hair_style", "bald"),
    "bag_colour": ("bag", "none"),
    "hat_colour": ("hat", "none"),
}
"""``attribute: (parent, value)``: the attribute is None exactly when ``parent == value``."""

GENDER_NOUNS = {"male": ("man", "guy", "gentleman", "young man"), "female": ("woman", "lady", "girl", "young woman")}
PRONOUNS = {"male": "he", "female": "she"}

UPPER_WORDS: dict[str, tuple[str, ...]] = {
    "t-shirt": ("t-shirt", "tee", "short-sleeved t-shirt"),
    "shirt": ("shirt", "button-up shirt", "long-sleeved shirt"),
    "jacket": ("jacket", "zip-up jacket"),
    "sweater": ("sweater", "jumper", "pullover"),
    "coat": ("coat", "overcoat", "long coat"),
}
LOWER_WORDS: dict[str, tuple[str, ...]] = {
    "trousers": ("trousers", "pants", "slacks"),
    "shorts": ("shorts",),
    "skirt": ("skirt",),
}
SHOE_WORDS = ("shoes", "sneakers", "trainers")
BAG_WORDS = {"backpack": ("backpack", "rucksack"), "handbag": ("handbag", "purse", "shoulder bag")}
HAT_WORDS = {"cap": ("cap", "baseball cap"), "beanie": ("beanie", "woolly hat")}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {name: (name,) for name in COLOURS} | {"grey": ("grey", "gray")}
"""The words a caption may use for each colour (each synonym names exactly one colour)."""

CLOTHING_WORDS = frozenset(
    {"t-shirt", "tee", "shirt", "jacket", "sweater", "jumper", "pullover", "coat", "overcoat", "top",
     "trousers", "pants", "slacks", "shorts", "skirt", "shoes", "sneakers", "trainers", "footwear",
     "backpack", "rucksack", "handbag", "purse", "bag", "cap", "beanie", "hat", "striped", "stripes",
     "checked", "checks", "plaid", "plain", "wearing", "wears", "worn", "carrying", "carries", "outfit",
     "clothes", "clothing", "sleeves", "sleeved", "zip-up", "button-up", "woolly"}
)
"""Words that speak of clothing; an identity description must use none of them."""

IDENTITY_WORDS = frozenset(
    {"man", "woman", "male", "female", "guy", "gentleman", "lady", "girl", "boy", "he", "she", "his", "her",
     "him", "person", "tall", "short", "height", "medium", "build", "slim", "thin", "slender", "average",
     "heavy", "heavyset", "stocky", "skin", "skinned", "complexion", "pale", "light", "olive", "tan",
     "dark", "hair", "haired", "bald", "ponytail", "curly", "bun", "long", "blond", "auburn", "body"}
)
"""Words that speak of the person's body; a clothing description must use none of them."""
