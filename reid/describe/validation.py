"""Attribute-coverage validation of an identity/clothing description pair (paper 3.3 "syntax checks")."""

from __future__ import annotations

from dataclasses import dataclass

from reid.describe.vocabulary import Vocabulary


@dataclass(frozen=True)
class ValidationRules:
    """Length bounds (characters, per part) and the minimum count of identity attributes."""

    min_chars: int = 10
    max_chars: int = 400
    min_identity_attributes: int = 2


MAX_PART_WORDS = 12
"""A part phrase is one noun phrase: at most this many words (local alignment reads 16 tokens of it)."""


def validate_part_phrase(part: str, phrase: str) -> str | None:
    """``None`` when ``phrase`` is a usable phrase for ``part``, else the reason as a sentence the model can act
    on: empty, or longer than :data:`MAX_PART_WORDS` words (a sentence, not a phrase)."""
    words = phrase.split() if isinstance(phrase, str) else []
    if not words:
        return f"the {part} phrase is empty"
    if len(words) > MAX_PART_WORDS:
        return f"the {part} phrase has {len(words)} words; give a short phrase of at most {MAX_PART_WORDS} words"
    return None


def valid_parts(parts: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``(kept, rejected)``: the phrases that pass :func:`validate_part_phrase`, and the others' reasons."""
    kept, rejected = {}, {}
    for part, phrase in parts.items():
        reason = validate_part_phrase(part, phrase)
        if reason is None:
            kept[part] = phrase
        else:
            rejected[part] = reason
    return kept, rejected


def validate_description(identity: str, clothing: str, vocab: Vocabulary, rules: ValidationRules) -> str | None:
    """``None`` when the pair passes, else the first failure as a sentence the model can act on.

    Checks, in order: both parts non-empty and within ``[min_chars, max_chars]``; the identity part states
    a gender, names >= ``min_identity_attributes`` distinct identity attributes and no garment/accessory
    words; the clothing part names >= 1 garment and >= 1 colour.
    """
    for name, text in (("identity", identity), ("clothing", clothing)):
        if not isinstance(text, str) or not text.strip():
            return f"the {name} description is empty"
        length = len(text.strip())
        if length < rules.min_chars or length > rules.max_chars:
            return (f"the {name} description has {length} characters; "
                    f"it must have between {rules.min_chars} and {rules.max_chars}")
    if not vocab.gender.find(identity):
        return "the identity description does not state the person's gender"
    attributes = vocab.identity.find(identity)
    if len(attributes) < rules.min_identity_attributes:
        return (f"the identity description names {len(attributes)} identity attribute(s) {attributes}; "
                f"it needs at least {rules.min_identity_attributes} (age, build, height, hair, skin tone)")
    leaked = vocab.clothing_words.find(identity)
    if leaked:
        return f"the identity description mentions clothing or accessories ({', '.join(leaked)}); remove them"
    if not vocab.garments.find(clothing):
        return "the clothing description names no garment"
    if not vocab.colours.find(clothing):
        return "the clothing description names no colour"
    return None
