"""Rule-based describer: splits human captions into identity and clothing phrases with the vocabulary.

Caption-derived (provenance ``rules``): such descriptions may supervise training only, never a gallery.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reid.data.parts import PARTS
from reid.describe.schema import Description
from reid.describe.validation import ValidationRules, valid_parts, validate_description
from reid.describe.vocabulary import Vocabulary, tokenize

RULES_MODEL = "lexicon"
_SENTENCES = re.compile(r"[.;!?\n]+")
# Primary clause boundaries; the boundary word stays with the phrase it opens ("wearing a red coat").
_PRIMARY = re.compile(
    r",|\s+(?=(?:wearing|wears|carrying|carries|holding|holds|dressed|who|while|in|on|walking|walks|standing|"
    r"stands|looking|looks|appears|seems|riding|rides|going|goes)\s)"
)
_SECONDARY = re.compile(r"\s+(?=(?:and|with|has|have|is|her|his)\s)")
_LEADING = re.compile(r"^(?:and|also|but|then|while|who|which)\s+")
_TRAILING = re.compile(r"\s+(?:and|is|are|has|have|with|who|while|also|that)$")
_PRONOUNS = frozenset({"he", "she", "his", "her", "him", "they", "the", "person"})


@dataclass(frozen=True)
class Clause:
    """One phrase of a caption and the kind of words it holds."""

    text: str
    kind: str  # "identity", "clothing" or "other"


def _kind(text: str, vocab: Vocabulary) -> str:
    clothing = vocab.clothing_words.find(text)
    # a pronoun alone ("on her back") says nothing about the person
    identity = [t for t in vocab.gender.find(text) if t not in _PRONOUNS] or vocab.identity.find(text)
    if clothing and identity:
        return "mixed"
    if clothing:
        return "clothing"
    return "identity" if identity else "other"


def split_caption(caption: str, vocab: Vocabulary) -> list[Clause]:
    """Cut a caption into identity, clothing and other clauses.

    Sentences are cut at clause words (``wearing``, ``carrying``, ``in``, commas...); a clause that still
    mixes identity and clothing words is cut again at ``and``/``with``/``has``/``is``; what stays mixed
    counts as clothing, so an identity phrase never holds a clothing word.
    """
    clauses: list[Clause] = []
    for sentence in _SENTENCES.split(caption):
        for piece in _PRIMARY.split(sentence):
            pieces = [piece]
            if _kind(piece, vocab) == "mixed":
                pieces = _SECONDARY.split(piece)
            for text in pieces:
                text = _clean(text)
                if text and not set(tokenize(text)) <= _PRONOUNS:
                    kind = _kind(text, vocab)
                    clauses.append(Clause(text, "clothing" if kind == "mixed" else kind))
    return clauses


def _clean(text: str) -> str:
    text = _LEADING.sub("", " ".join(text.split()).strip(" ,").lower())
    previous = None
    while previous != text:
        previous, text = text, _TRAILING.sub("", text)
    return text


def _join(phrases: Sequence[str], max_chars: int) -> str:
    out: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for phrase in phrases:
        key = tokenize(phrase)
        if key in seen:
            continue
        candidate = ", ".join([*out, phrase])
        if out and len(candidate) > max_chars:
            break
        seen.add(key)
        out.append(phrase)
    return ", ".join(out)


def extract_parts(clauses: Sequence[Clause], vocab: Vocabulary) -> dict[str, str]:
    """Per-part phrases (SAP-SAM Table 3): the first sub-phrase naming each part, if any (``RuleDescriber.split``
    keeps those that pass :func:`reid.describe.validation.validate_part_phrase`: a whole clause is no phrase)."""
    parts: dict[str, str] = {}
    for clause in clauses:
        for sub in map(_clean, _SECONDARY.split(clause.text)):
            for part in PARTS:
                terms = vocab.parts.get(part)
                if part not in parts and terms is not None and terms.find(sub):
                    parts[part] = sub
    return parts


def rules_version(vocab: Vocabulary) -> str:
    """``rules-<12 hex>``: a digest of the vocabulary's terms, sorted, so the same word lists give the same
    version in every process (a digest of set reprs changed with Python's per-process string hashing, so no
    rerun ever found its finished images)."""
    def terms(value: object) -> object:
        if isinstance(value, dict):
            return {key: terms(v) for key, v in sorted(value.items())}
        return sorted(value.terms)

    canonical = json.dumps({name: terms(getattr(vocab, name)) for name in sorted(vars(vocab))}, sort_keys=True)
    return "rules-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


class RuleDescriber:
    """Describes an image from its human captions; same schema and validation as the MLLM describer."""

    provenance = "rules"
    model = RULES_MODEL

    def __init__(self, vocab: Vocabulary, rules: ValidationRules) -> None:
        self.vocab = vocab
        self.rules = rules
        self.prompt_version = rules_version(vocab)

    def split(self, captions: Sequence[str]) -> tuple[str, str, dict[str, str]]:
        """``(identity, clothing, parts)`` from the captions; identity phrases with a gender come first."""
        clauses = [c for caption in captions for c in split_caption(caption, self.vocab)]
        identity = [c.text for c in clauses if c.kind == "identity"]
        identity.sort(key=lambda text: not self.vocab.gender.find(text))
        clothing = [c.text for c in clauses if c.kind == "clothing"]
        limit = self.rules.max_chars
        return _join(identity, limit), _join(clothing, limit), valid_parts(extract_parts(clauses, self.vocab))[0]

    def describe(self, record: Mapping[str, Any], style_id: int = -1) -> Description:
        """One :class:`Description` for an image record (``image_id``, ``captions``); quarantined if invalid."""
        identity, clothing, parts = self.split(record["captions"])
        reason = validate_description(identity, clothing, self.vocab, self.rules)
        return Description(
            image_id=record["image_id"], identity=identity, clothing=clothing, provenance=self.provenance,
            model=self.model, prompt_version=self.prompt_version, parts=parts, style_id=style_id,
            quarantined=reason is not None, reason=reason or "",
        )
