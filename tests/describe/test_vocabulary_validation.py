"""Vocabulary matching and the attribute-coverage validation of description pairs."""

from __future__ import annotations

import pytest

from reid.describe.validation import ValidationRules, validate_description
from reid.describe.vocabulary import TermSet, load_vocabulary

VOCAB = load_vocabulary()
RULES = ValidationRules(min_chars=10, max_chars=120, min_identity_attributes=2)
GOOD_ID = "a young man of slim build with short black hair"
GOOD_CLO = "a red jacket over a white shirt and blue jeans"


def test_termset_matches_whole_words_plurals_and_longest_phrases() -> None:
    terms = TermSet.from_terms(["shirt", "t shirt", "tank top", "cap"])
    assert terms.find("A T-shirt, two shirts and a tank top") == ["t shirt", "shirts", "tank top"]
    assert terms.find("capital letters on a landscape") == []  # no matches inside words


def test_vocabulary_files_are_packaged_and_parsed() -> None:
    assert VOCAB.gender.find("she is a woman") == ["she", "woman"]
    assert VOCAB.colours.find("grey and navy") == ["grey", "navy"]
    assert set(VOCAB.parts) == {"hat", "hair", "glasses", "clothes", "skirt", "pants", "dress", "shoes", "bag"}
    assert VOCAB.parts["bag"].find("a black backpack") == ["backpack"]


def test_valid_pair_passes() -> None:
    assert validate_description(GOOD_ID, GOOD_CLO, VOCAB, RULES) is None


@pytest.mark.parametrize(("identity", "clothing", "expected"), [
    ("", GOOD_CLO, "identity description is empty"),
    (GOOD_ID, "   ", "clothing description is empty"),
    ("a man", GOOD_CLO, "has 5 characters"),
    (GOOD_ID, "red " * 40, "has 159 characters"),
    ("a young person with short black hair", GOOD_CLO, "does not state the person's gender"),
    ("a woman standing near the wall", GOOD_CLO, "names 0 identity attribute(s)"),
    ("a young slim man in a red jacket", GOOD_CLO, "mentions clothing or accessories (jacket)"),
    ("a young slim man with glasses", GOOD_CLO, "mentions clothing or accessories (glasses)"),
    (GOOD_ID, "something red and something blue", "names no garment"),
    (GOOD_ID, "a plain jacket and jeans", "names no colour"),
])
def test_each_failure_has_its_reason(identity: str, clothing: str, expected: str) -> None:
    reason = validate_description(identity, clothing, VOCAB, RULES)
    assert reason is not None and expected in reason


def test_identity_attribute_count_is_distinct_terms() -> None:
    rules = ValidationRules(min_identity_attributes=3)
    assert validate_description("a tall man, a tall man", GOOD_CLO, VOCAB, rules) is not None
    assert validate_description("a tall slim man with hair", GOOD_CLO, VOCAB, rules) is None


def test_custom_vocabulary_directory_is_used(tmp_path) -> None:
    for name, text in {"gender": "robot", "identity": "shiny\nsquare", "garments": "panel",
                       "colours": "chrome", "clothing_attributes": "antenna", "parts": "hat: antenna"}.items():
        (tmp_path / f"{name}.txt").write_text(text + "\n")
    vocab = load_vocabulary(str(tmp_path))
    assert validate_description("a shiny square robot", "a chrome panel", vocab, RULES) is None
    assert "gender" in validate_description("a shiny square thing", "a chrome panel", vocab, RULES)


def test_missing_or_empty_vocabulary_file_is_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="gender.txt' not found"):
        load_vocabulary(str(tmp_path))
    (tmp_path / "gender.txt").write_text("# only a comment\n")
    with pytest.raises(ValueError, match="gender.txt' holds no terms"):
        load_vocabulary(str(tmp_path))
