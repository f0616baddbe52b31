"""The rule-based describer: caption clauses split into identity and clothing phrases by the lexicon."""

from __future__ import annotations

from reid.describe.rules import RuleDescriber, split_caption
from reid.describe.validation import ValidationRules
from reid.describe.vocabulary import load_vocabulary

VOCAB = load_vocabulary()
DESCRIBER = RuleDescriber(VOCAB, ValidationRules())


def test_split_puts_colour_garment_phrases_in_clothing_and_body_phrases_in_identity() -> None:
    caption = ("A young woman with long black hair is wearing a white t-shirt and a blue skirt. "
               "She is slim and carries a brown handbag, wearing black sneakers.")
    identity, clothing, parts = DESCRIBER.split([caption])
    assert identity == "a young woman with long black hair, she is slim"
    assert clothing == "wearing a white t-shirt and a blue skirt, carries a brown handbag, wearing black sneakers"
    assert parts == {"hair": "with long black hair", "clothes": "wearing a white t-shirt", "skirt": "a blue skirt",
                     "bag": "carries a brown handbag", "shoes": "wearing black sneakers"}
    for word in ("t-shirt", "skirt", "handbag", "sneakers", "white", "blue", "brown"):
        assert word not in identity
    for word in ("woman", "hair", "slim", "young"):
        assert word not in clothing


def test_mixed_clause_is_cut_at_and_with() -> None:
    kinds = [(c.text, c.kind) for c in split_caption("The heavy man has grey hair and a red coat", VOCAB)]
    assert kinds == [("the heavy man", "identity"), ("has grey hair", "identity"), ("a red coat", "clothing")]


def test_describe_returns_rules_provenance_and_validates() -> None:
    row = DESCRIBER.describe({"image_id": "a.jpg", "captions": [
        "The tall slim man has short brown hair, wearing a red jacket with black pants."]}, style_id=3)
    assert (row.provenance, row.model, row.style_id, row.quarantined) == ("rules", "lexicon", 3, False)
    assert row.identity == "the tall slim man has short brown hair"
    assert row.clothing == "wearing a red jacket with black pants"
    assert row.prompt_version.startswith("rules-")


def test_caption_without_identity_attributes_is_quarantined_with_reason() -> None:
    row = DESCRIBER.describe({"image_id": "b.jpg", "captions": ["The man is wearing a black jacket."]})
    assert row.quarantined and row.identity == "the man" and "characters" in row.reason


def test_several_captions_are_merged_without_duplicates() -> None:
    captions = ["A tall man with short hair wearing a red coat.", "A tall man with short hair in blue jeans."]
    identity, clothing, _ = DESCRIBER.split(captions)
    assert identity == "a tall man with short hair"
    assert clothing == "wearing a red coat, in blue jeans"
