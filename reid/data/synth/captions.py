"""Human-like captions of a synthetic person in five distinct writing styles (style id = index in STYLES)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from reid.data.synth import phrases as P
from reid.data.synth.attributes import Identity, Nuisance, Outfit

Rng = np.random.Generator

_HEADING = {"front": "towards the camera", "back": "away from the camera", "left": "to the left",
            "right": "to the right"}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def attribute_list(rng: Rng, who: Identity, fit: Outfit, pose: Nuisance) -> str:
    """Terse, comma-separated attributes: "tall slim man, short black hair, light skin, red t-shirt, ..."."""
    person = [f"{P.height_word(rng, who)} {P.build_word(rng, who)} {P.person_noun(rng, who)}",
              P.hair_phrase(rng, who).removeprefix("a "), P.skin_phrase(rng, who).removeprefix("a ")]
    clothes = [P.upper_phrase(rng, fit), P.lower_phrase(rng, fit).removeprefix("a "), P.shoes_phrase(rng, fit)]
    extras = [p.removeprefix("a ").removeprefix("an ") for p in (P.bag_phrase(rng, fit), P.hat_phrase(rng, fit))
              if p and rng.random() < 0.8]
    return ", ".join(person + clothes + extras) + ("" if rng.random() < 0.5 else ".")


def narrative(rng: Rng, who: Identity, fit: Outfit, pose: Nuisance) -> str:
    """Several full sentences in the third person, the way a careful annotator writes."""
    pron = {"male": "he", "female": "she"}[who.gender]
    poss = {"male": "his", "female": "her"}[who.gender]
    noun = P.person_noun(rng, who)
    opener = P.choose(rng, (f"The {noun} in this picture is", f"This {noun} is", f"The {noun} we see here is"))
    text = [f"{opener} {P.height_word(rng, who)} and {P.build_word(rng, who)}, with "
            f"{P.skin_phrase(rng, who)} and {P.hair_phrase(rng, who)}."]
    text.append(f"{_cap(pron)} is wearing {P.article(P.upper_phrase(rng, fit))} and {P.lower_phrase(rng, fit)}, "
                f"together with {P.shoes_phrase(rng, fit)}.")
    bag = P.bag_phrase(rng, fit)
    if bag:
        where = f"on {poss} back" if fit.bag == "backpack" else f"over {poss} shoulder"
        text.append(f"{_cap(pron)} carries {bag} {where}.")
    hat = P.hat_phrase(rng, fit)
    if hat:
        text.append(f"On {poss} head {pron} has {hat}.")
    if rng.random() < 0.6:
        text.append(f"{_cap(pron)} is walking {_HEADING[pose.facing]}.")
    return " ".join(text)


def photo_template(rng: Rng, who: Identity, fit: Outfit, pose: Nuisance) -> str:
    """One CLIP-like sentence: "A photo of a tall man with ..., wearing ..."."""
    lead = P.choose(rng, ("A photo of", "A picture of", "An image of"))
    person = P.article(f"{P.height_word(rng, who)} {P.build_word(rng, who)} {P.person_noun(rng, who)}")
    items = [P.article(P.upper_phrase(rng, fit)), P.lower_phrase(rng, fit), P.shoes_phrase(rng, fit)]
    text = f"{lead} {person} with {P.hair_phrase(rng, who)}, wearing {P.join(items)}"
    bag = P.bag_phrase(rng, fit)
    if bag:
        text += f", carrying {bag}"
    return text + "."


def clothing_first(rng: Rng, who: Identity, fit: Outfit, pose: Nuisance) -> str:
    """The outfit first, then who wears it."""
    items = [P.article(P.upper_phrase(rng, fit)), P.lower_phrase(rng, fit), P.shoes_phrase(rng, fit)]
    items += [p for p in (P.bag_phrase(rng, fit), P.hat_phrase(rng, fit)) if p]
    person = f"{P.height_word(rng, who)} {P.person_noun(rng, who)}"
    if rng.random() < 0.5:
        return (f"{_cap(P.join(items))}, worn by {P.article(person)} of {who.build} build with "
                f"{P.hair_phrase(rng, who)} and {P.skin_phrase(rng, who)}.")
    person = f"{P.height_word(rng, who)}, {P.build_word(rng, who)} {P.person_noun(rng, who)}"
    return f"Dressed in {P.join(items)}, this {person} has {P.hair_phrase(rng, who)} and {P.skin_phrase(rng, who)}."


def police_report(rng: Rng, who: Identity, fit: Outfit, pose: Nuisance) -> str:
    """Field: value records, like a witness statement."""
    subject = P.choose(rng, ("Subject", "Suspect", "Individual"))
    hair = "bald" if who.hair_style == "bald" else f"{who.hair_colour}, {who.hair_style}"
    fields = [f"{subject}: {who.gender}", f"Height: {who.height}", f"Build: {who.build}",
              f"Skin: {who.skin}", f"Hair: {hair}", f"Upper: {P.upper_phrase(rng, fit)}",
              f"Lower: {P.lower_phrase(rng, fit).removeprefix('a ')}", f"Footwear: {P.shoes_phrase(rng, fit)}",
              f"Bag: {(P.bag_phrase(rng, fit) or 'none').removeprefix('a ').removeprefix('an ')}",
              f"Headwear: {(P.hat_phrase(rng, fit) or 'none').removeprefix('a ').removeprefix('an ')}"]
    if rng.random() < 0.5:
        fields.append(f"Last seen walking {_HEADING[pose.facing]}")
    return ". ".join(fields) + "."


STYLES: tuple[tuple[str, Callable[[Rng, Identity, Outfit, Nuisance], str]], ...] = (
    ("attribute_list", attribute_list),
    ("narrative", narrative),
    ("photo_template", photo_template),
    ("clothing_first", clothing_first),
    ("police_report", police_report),
)
STYLE_NAMES = tuple(name for name, _ in STYLES)


def write_caption(rng: Rng, style: int, identity: Identity, outfit: Outfit, nuisance: Nuisance) -> str:
    """A caption of the person in ``style`` (an index of :data:`STYLES`); always names the upper and lower
    garment colours, the identity's gender presentation, height, build and hair."""
    if not 0 <= style < len(STYLES):
        raise ValueError(f"caption style {style} out of range 0..{len(STYLES) - 1}")
    return STYLES[style][1](rng, identity, outfit, nuisance)
