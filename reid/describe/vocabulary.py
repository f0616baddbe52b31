"""Attribute vocabularies (data files under ``reid/describe/vocab``) and whole-word term matching."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

CATEGORIES = ("gender", "identity", "garments", "colours", "clothing_attributes")
_WORD = re.compile(r"[a-z]+")


def tokenize(text: str) -> tuple[str, ...]:
    """Lower-case letter runs: ``"T-shirt, blue"`` -> ``("t", "shirt", "blue")``."""
    return tuple(_WORD.findall(text.lower()))


def _variants(term: tuple[str, ...]) -> set[tuple[str, ...]]:
    """A term and its regular plurals (last word + ``s`` / ``es``)."""
    *head, last = term
    return {term, (*head, last + "s"), (*head, last + "es")}


@dataclass(frozen=True)
class TermSet:
    """Terms as token tuples (plurals included); :meth:`find` matches whole words only."""

    terms: frozenset[tuple[str, ...]]
    max_len: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_len", max((len(t) for t in self.terms), default=0))

    @classmethod
    def from_terms(cls, terms: Iterable[str]) -> TermSet:
        out: set[tuple[str, ...]] = set()
        for term in terms:
            tokens = tokenize(term)
            if tokens:
                out |= _variants(tokens)
        return cls(frozenset(out))

    def spans(self, tokens: tuple[str, ...]) -> list[tuple[int, int]]:
        """``(start, end)`` token spans of every match, longest first at each position, no overlaps."""
        found, i, longest = [], 0, self.max_len
        while i < len(tokens):
            for n in range(min(longest, len(tokens) - i), 0, -1):
                if tokens[i:i + n] in self.terms:
                    found.append((i, i + n))
                    i += n
                    break
            else:
                i += 1
        return found

    def find(self, text: str) -> list[str]:
        """The distinct matched terms of ``text`` in order of appearance."""
        tokens = tokenize(text)
        out: list[str] = []
        for start, end in self.spans(tokens):
            term = " ".join(tokens[start:end])
            if term not in out:
                out.append(term)
        return out


@dataclass(frozen=True)
class Vocabulary:
    """The word lists validation, the rule describer and style masking share.

    ``clothing_words`` = garments + clothing attributes (what an identity description may not mention);
    colours are separate because hair and skin have colours too.
    """

    gender: TermSet
    identity: TermSet
    garments: TermSet
    colours: TermSet
    clothing_attributes: TermSet
    parts: dict[str, TermSet]
    clothing_words: TermSet = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "clothing_words", TermSet(self.garments.terms | self.clothing_attributes.terms))


def _read_lines(text: str, source: str) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    terms = [line for line in lines if line]
    if not terms:
        raise ValueError(f"vocabulary file '{source}' holds no terms")
    return terms


def _read_file(directory: str | None, name: str) -> tuple[str, str]:
    if directory is None:
        return resources.files("reid.describe").joinpath("vocab", name).read_text(), f"reid/describe/vocab/{name}"
    path = Path(directory) / name
    if not path.is_file():
        raise ValueError(f"vocabulary file '{path}' not found")
    return path.read_text(), str(path)


def _parse_parts(text: str, source: str) -> dict[str, TermSet]:
    parts: dict[str, TermSet] = {}
    for i, line in enumerate(_read_lines(text, source), start=1):
        name, sep, terms = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"{source}: entry {i} must look like 'part: term, term', got {line!r}")
        parts[name.strip()] = TermSet.from_terms(t for t in terms.split(",") if t.strip())
    return parts


@lru_cache(maxsize=8)
def load_vocabulary(directory: str | None = None) -> Vocabulary:
    """Read the vocabulary files from ``directory`` (None: the packaged ``reid/describe/vocab``)."""
    sets = {}
    for name in CATEGORIES:
        text, source = _read_file(directory, f"{name}.txt")
        sets[name] = TermSet.from_terms(_read_lines(text, source))
    text, source = _read_file(directory, "parts.txt")
    return Vocabulary(**sets, parts=_parse_parts(text, source))
